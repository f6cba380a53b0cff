//! `ffi-examples/mpi/logreg_zero1.c`: data-parallel logistic regression with ZeRO stage 1 (the
//! optimizer state sharded by `precond_optimizer_new_shard`, MPI doing every transfer), built
//! with `mpicc` against the static library of this test run and run with `mpirun -np P` for
//! P = 1, 2, 3, 4. Every run must print the loss and parameters of the same training done in one
//! Rust process (AdamW on the full-batch mean gradient) to 1e-9 relative, identical replicas,
//! and an assembled shard state of the unsharded state's size and step count.
//!
//! The Julia twin `ffi-examples/mpi/logreg_zero1.jl` (MPI.jl through the `Precond` package, whose
//! `ccall`s `tests/julia_ccall.rs` checks against the header) runs at P = 1..4 when `julia` is on
//! PATH and must print the same lines; without Julia that test says it is skipped.
//!
//! Skipped with a message when `mpicc` or `mpirun` is missing, unless `PRECOND_REQUIRE_MPI=1`
//! (set by `.ci/run`, which installs Open MPI), then it fails. Runs as root need
//! `OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`, which the test sets for its
//! child processes; `--oversubscribe` lets four ranks share two cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use precond_optim::OptimizerConfig;

const CONFIG: &str = r#"{"optimizer": "adamw", "lr": 0.05, "weight_decay": 0.01}"#;
const STEPS: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `libprecond_ffi.so` of this build (for Julia's `PRECOND_LIB`).
fn shared_lib() -> PathBuf {
    static_lib().with_extension("so")
}

/// The printed `key value` lines of one run, checked against the one-process reference.
fn check_output(stdout: &str, p: usize, want_loss: f64, want_theta: &[f64]) {
    let kv: HashMap<&str, f64> = stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k, v.trim().parse().ok()?)))
        .collect();
    let num = |k: &str| {
        *kv.get(k)
            .unwrap_or_else(|| panic!("no `{k}` in:\n{stdout}"))
    };
    // integers printed by the program (exact in f64)
    let int = |k: &str| num(k) as u64;
    assert_eq!(int("world"), p as u64);
    assert_eq!(int("steps"), STEPS as u64);
    close(&format!("loss at P = {p}"), num("loss"), want_loss, 1e-9);
    close(
        &format!("theta[0] at P = {p}"),
        num("theta0"),
        want_theta[0],
        1e-9,
    );
    close(
        &format!("theta[last] at P = {p}"),
        num("theta_last"),
        want_theta[want_theta.len() - 1],
        1e-9,
    );
    assert_eq!(int("replicas_identical"), 1, "P = {p}: replicas differ");
    assert_eq!(
        int("assembled_state_bytes"),
        int("unsharded_state_bytes"),
        "P = {p}"
    );
    assert_eq!(int("assembled_state_steps"), STEPS as u64, "P = {p}");
    // the training did something: far below log 2 from theta = 0
    assert!(num("loss") < 0.1 && num("accuracy") > 0.97, "{stdout}");
}

/// `libprecond_ffi.a` of this build (cargo builds every crate type of the lib next to the
/// test binary).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    for dir in [deps.clone(), deps.join("..")] {
        let lib = dir.join("libprecond_ffi.a");
        if lib.exists() {
            return lib;
        }
    }
    panic!("libprecond_ffi.a not found next to {}", exe.display());
}

struct Data {
    n: usize,
    d: usize,
    x: Vec<f64>,
    y: Vec<f64>,
}

/// The bundled CSV, standardized with the population variance (as the C program does).
fn data() -> Data {
    let path = root().join("crates/precond-nn/data/breast_cancer.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let d = lines.next().unwrap().split(',').count() - 1;
    let (mut x, mut y, mut n) = (Vec::new(), Vec::new(), 0);
    for line in lines.filter(|l| !l.is_empty()) {
        for (j, f) in line.split(',').enumerate() {
            let v: f64 = f.parse().unwrap();
            if j < d { x.push(v) } else { y.push(v) }
        }
        n += 1;
    }
    for j in 0..d {
        let mean = (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64;
        let var = (0..n).map(|i| (x[i * d + j] - mean).powi(2)).sum::<f64>() / n as f64;
        let sd = var.sqrt();
        for i in 0..n {
            x[i * d + j] = (x[i * d + j] - mean) / sd;
        }
    }
    Data { n, d, x, y }
}

/// Mean cross-entropy and its mean gradient with respect to `[b; w]`.
fn loss_grad(data: &Data, theta: &[f64], g: &mut [f64]) -> f64 {
    let (n, d) = (data.n, data.d);
    g.fill(0.0);
    let mut loss = 0.0;
    for i in 0..n {
        let row = &data.x[i * d..(i + 1) * d];
        let z = theta[0] + row.iter().zip(&theta[1..]).map(|(a, b)| a * b).sum::<f64>();
        let softplus = if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        };
        loss += softplus - data.y[i] * z;
        let p = if z >= 0.0 {
            1.0 / (1.0 + (-z).exp())
        } else {
            z.exp() / (1.0 + z.exp())
        };
        let r = p - data.y[i];
        g[0] += r;
        for (gj, xj) in g[1..].iter_mut().zip(row) {
            *gj += r * xj;
        }
    }
    for v in g.iter_mut() {
        *v /= n as f64;
    }
    loss / n as f64
}

/// The same training in one process: (final loss, theta).
fn reference() -> (f64, Vec<f64>) {
    let data = data();
    let mut opt = OptimizerConfig::from_json(CONFIG)
        .unwrap()
        .build(data.d + 1)
        .unwrap();
    let mut theta = vec![0.0; data.d + 1];
    let mut g = vec![0.0; data.d + 1];
    for _ in 0..STEPS {
        loss_grad(&data, &theta, &mut g);
        opt.step_f64(&mut theta, &g).unwrap();
    }
    (loss_grad(&data, &theta, &mut g), theta)
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE),
        "{what}: got {got:e}, want {want:e} (relative tolerance {rel:e})"
    );
}

#[test]
fn zero1_logistic_regression_over_1_to_4_ranks_matches_one_process() {
    if !(have("mpicc") && have("mpirun")) {
        assert!(
            std::env::var_os("PRECOND_REQUIRE_MPI").is_none_or(|v| v != "1"),
            "PRECOND_REQUIRE_MPI=1 but mpicc/mpirun are not installed (apt-get install \
             openmpi-bin libopenmpi-dev)"
        );
        eprintln!("skipped: mpicc/mpirun not found (apt-get install openmpi-bin libopenmpi-dev)");
        return;
    }
    let out_dir = root().join("target/tmp/ffi-examples-mpi");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join("logreg_zero1");
    let cc = Command::new("mpicc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-g"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join("ffi-examples/mpi/logreg_zero1.c"))
        .arg("-o")
        .arg(&exe)
        .arg(static_lib())
        .args(["-lm", "-lpthread", "-ldl"])
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "mpicc failed:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let (want_loss, want_theta) = reference();
    let csv = root().join("crates/precond-nn/data/breast_cancer.csv");
    for p in 1..=4 {
        let out = Command::new("mpirun")
            .args(["--oversubscribe", "-np", &p.to_string()])
            .arg(&exe)
            .arg(&csv)
            .arg(STEPS.to_string())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("RAYON_NUM_THREADS", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "mpirun -np {p} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        check_output(&stdout, p, want_loss, &want_theta);
    }
}

#[test]
fn julia_zero1_twin_matches_one_process_when_julia_is_installed() {
    if !have("julia") {
        eprintln!(
            "skipped: `julia` is not on PATH (ffi-examples/mpi/logreg_zero1.jl needs Julia with \
             MPI.jl; its calls go through the Precond package, checked by tests/julia_ccall.rs)"
        );
        return;
    }
    let project = root().join("ffi-examples/mpi");
    let setup = Command::new("julia")
        .arg(format!("--project={}", project.display()))
        .arg("-e")
        .arg(format!(
            "using Pkg; Pkg.develop(path=\"{}\"); Pkg.instantiate()",
            root().join("ffi-examples/julia/Precond").display()
        ))
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "julia setup failed:\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let (want_loss, want_theta) = reference();
    let csv = root().join("crates/precond-nn/data/breast_cancer.csv");
    for p in 1..=4 {
        // MPI.jl's own launcher (its bundled MPI or the one MPIPreferences selected)
        let launch = format!(
            "using MPI; run(`$(MPI.mpiexec()) -n {p} $(Base.julia_cmd()) --project={proj} {script} {csv} {STEPS}`)",
            proj = project.display(),
            script = project.join("logreg_zero1.jl").display(),
            csv = csv.display(),
        );
        let out = Command::new("julia")
            .arg(format!("--project={}", project.display()))
            .arg("-e")
            .arg(launch)
            .env("PRECOND_LIB", shared_lib())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "julia logreg_zero1.jl at P = {p} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_output(&stdout, p, want_loss, &want_theta);
    }
}
