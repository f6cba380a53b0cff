//! The program the MPI tests run under `mpirun -np P`: data-parallel training of a fixed
//! problem (standardized iris, 80/20 split with seed 5, a 4-12-8-3 tanh MLP with LayerNorm,
//! softmax cross-entropy, Adam with lr 0.01 and weight decay 0.001, batches of 25, seed 9).
//!
//! `precond-mpi-check --epochs N --out DIR [--save DIR] [--resume DIR] [--sleep-ms MS]
//! [--width W] [--batch B] [--timings] [--data NAME]`:
//! `--data` picks another bundled classification set (e.g. `digits`: 64 features, 10
//! classes); the network is then `d-W-W-k` (`d` features, `k` classes, default `W` = 12,8).
//! every rank writes its pid to `DIR/pid.R` at the start and its final parameters (f64
//! little-endian) to `DIR/params.R`; rank 0 writes `DIR/history.json` (the history and
//! `world_size`). `--sleep-ms` pauses after every epoch (to kill a rank mid-run).
//! Exit status 0 on success, 1 on an error (printed with the rank).

use precond_mpi::{Communicator, DpOptions, MpiComm, read_checkpoint, train_data_parallel};
use precond_nn::{
    Activation, Control, Dataset, InputScaling, InputTransform, LayerNormSpec, Loss, Mlp,
    MlpConfig, Normalization, TrainConfig,
};
use precond_optim::OptimizerConfig;
use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    epochs: usize,
    out: PathBuf,
    save: Option<PathBuf>,
    resume: Option<PathBuf>,
    sleep_ms: u64,
    width: usize,
    batch: usize,
    timings: bool,
    data: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        epochs: 3,
        out: PathBuf::from("."),
        save: None,
        resume: None,
        sleep_ms: 0,
        width: 0,
        batch: 25,
        timings: false,
        data: "iris".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--epochs" => a.epochs = v()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--out" => a.out = PathBuf::from(v()?),
            "--save" => a.save = Some(PathBuf::from(v()?)),
            "--resume" => a.resume = Some(PathBuf::from(v()?)),
            "--sleep-ms" => a.sleep_ms = v()?.parse().map_err(|e| format!("--sleep-ms: {e}"))?,
            "--width" => a.width = v()?.parse().map_err(|e| format!("--width: {e}"))?,
            "--batch" => a.batch = v()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--timings" => a.timings = true,
            "--data" => a.data = v()?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    Ok(a)
}

fn run(comm: &MpiComm, a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let rank = comm.rank();
    std::fs::create_dir_all(&a.out)?;
    std::fs::write(
        a.out.join(format!("pid.{rank}")),
        std::process::id().to_string(),
    )?;
    let data = Dataset::builtin(&a.data)?;
    let n_classes = match &data.targets {
        precond_nn::Targets::Classes { n_classes, .. } => *n_classes,
        _ => return Err(format!("--data {}: not a classification set", a.data).into()),
    };
    let (tr, te) = data.split(0.2, 5)?;
    let t = InputTransform::fit(tr.x.as_ref(), InputScaling::Standardize)?;
    let tr = tr.map_features(|x| t.apply(x))?;
    let te = te.map_features(|x| t.apply(x))?;
    let ln = Normalization::LayerNorm(LayerNormSpec::default());
    let mut mlp = Mlp::new(MlpConfig::feedforward(
        data.n_features(),
        &if a.width > 0 {
            vec![a.width, a.width]
        } else {
            vec![12, 8]
        },
        Activation::Tanh,
        ln,
        n_classes,
        Loss::SoftmaxCrossEntropy,
    ))?;
    let mut params = mlp.init_params(1);
    let opt =
        OptimizerConfig::from_json(r#"{"optimizer": "adam", "lr": 0.01, "weight_decay": 0.001}"#)?;
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch,
        seed: 9,
        ..TrainConfig::default()
    };
    let ck = match &a.resume {
        Some(d) => Some(read_checkpoint(d)?),
        None => None,
    };
    let sleep = std::time::Duration::from_millis(a.sleep_ms);
    let r = train_data_parallel(
        comm,
        &mut mlp,
        &mut params,
        &opt,
        &tr,
        Some(&te),
        &config,
        DpOptions {
            save: a.save.as_deref(),
            resume: ck.as_ref(),
        },
        |_| {
            std::thread::sleep(sleep);
            Control::Continue
        },
    )?;
    if a.timings {
        let t = &r.timings;
        println!(
            "{}",
            serde_json::json!({
                "rank": rank, "world": r.world_size, "n_params": params.len(),
                "shard": r.shard.len(), "state_values": r.state_len, "steps": t.steps,
                "compute_s": t.compute_s, "reduce_scatter_s": t.reduce_scatter_s,
                "step_s": t.step_s, "all_gather_s": t.all_gather_s,
                "values_sent": t.values_sent,
            })
        );
    }
    let bytes: Vec<u8> = params.iter().flat_map(|p| p.to_le_bytes()).collect();
    std::fs::write(a.out.join(format!("params.{rank}")), bytes)?;
    if rank == 0 {
        let v = serde_json::json!({ "world_size": r.world_size, "history": r.history });
        std::fs::write(a.out.join("history.json"), serde_json::to_vec_pretty(&v)?)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let comm = match MpiComm::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("precond-mpi-check: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = parse().map_err(|e| e.into()).and_then(|a| run(&comm, &a));
    match out {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("precond-mpi-check rank {}: {e}", comm.rank());
            ExitCode::FAILURE
        }
    }
}
