//! `precond train` end to end: the accuracy targets of the training command (logistic regression on
//! standardized breast_cancer ≥ 97% training accuracy; an MLP with BatchNorm or LayerNorm ≥ 95%
//! test accuracy on digits with an 80/20 split), CSV input, outputs, and argument errors.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn precond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_precond"))
        .args(args)
        .output()
        .expect("precond runs")
}

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("precond-train-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn last_epoch(dir: &std::path::Path) -> Value {
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("history.json")).expect("history.json"),
    )
    .expect("parses");
    j["epochs"]
        .as_array()
        .expect("epochs")
        .last()
        .expect("one epoch")
        .clone()
}

#[test]
fn logistic_regression_on_standardized_breast_cancer_reaches_97_percent() {
    let dir = out_dir("logreg");
    let out = precond(&[
        "train",
        "--data",
        "breast_cancer",
        "--model",
        "logreg",
        "--norm",
        "standardize",
        "--opt",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "50",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acc = last_epoch(&dir)["train_accuracy"]
        .as_f64()
        .expect("accuracy");
    assert!(acc >= 0.97, "training accuracy {acc}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("train accuracy"), "{stdout}");
    for f in ["loss.svg", "accuracy.svg"] {
        let svg = std::fs::read_to_string(dir.join(f)).expect("svg");
        roxmltree::Document::parse(&svg).expect("well-formed SVG");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mlp_with_batchnorm_or_layernorm_reaches_95_percent_on_digits() {
    for norm in ["batchnorm", "layernorm"] {
        let dir = out_dir(norm);
        let out = precond(&[
            "train",
            "--data",
            "digits",
            "--model",
            "mlp:64",
            "--norm",
            norm,
            "--test-fraction",
            "0.2",
            "--epochs",
            "20",
            "--seed",
            "1",
            "--out",
            dir.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "{norm}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let acc = last_epoch(&dir)["test_accuracy"]
            .as_f64()
            .expect("accuracy");
        assert!(acc >= 0.95, "{norm}: test accuracy {acc}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn csv_input_with_target_column_and_optimizer_json_file() {
    let dir = out_dir("csv");
    std::fs::create_dir_all(&dir).expect("dir");
    // Two well separated classes on very different feature scales.
    let mut csv = String::from("size,weight,label\n");
    for i in 0..60 {
        let c = i % 2;
        let t = f64::from(i) / 60.0;
        csv.push_str(&format!(
            "{},{},{}\n",
            1000.0 * (c as f64) + 100.0 * t,
            0.01 * (c as f64) - 0.005 * t,
            c
        ));
    }
    let data = dir.join("two.csv");
    std::fs::write(&data, csv).expect("csv");
    let cfg = dir.join("opt.json");
    std::fs::write(
        &cfg,
        r#"{"optimizer": "adamw", "lr": 0.05, "weight_decay": 0.001}"#,
    )
    .expect("json");
    let opt_arg = format!("@{}", cfg.display());
    let out_path = dir.join("out");
    let out = precond(&[
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "--target",
        "label",
        "--model",
        "logreg",
        "--optimizer",
        &opt_arg,
        "--epochs",
        "30",
        "--batch-size",
        "8",
        "--out",
        out_path.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(out_path.join("history.json")).expect("history"),
    )
    .expect("parses");
    assert_eq!(j["optimizer"]["optimizer"], "adamw");
    let epochs = j["epochs"].as_array().expect("epochs");
    assert_eq!(epochs.len(), 31, "epoch 0 plus 30");
    let first = epochs[0]["train_loss"].as_f64().expect("loss");
    let last = epochs[30]["train_loss"].as_f64().expect("loss");
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert!(epochs[30]["test_accuracy"].as_f64().expect("acc") >= 0.99);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_give_one_line_errors() {
    let dir = out_dir("errors");
    let d = dir.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "train",
                "--data",
                "iris",
                "--optimizer",
                r#"{"optimizer": "adam", "lr": -1}"#,
                "--out",
                d,
            ],
            "error: invalid argument --optimizer: ",
        ),
        (
            &["train", "--data", "missing.csv", "--out", d],
            "error: invalid argument --target: 'missing.csv' is not a bundled data set",
        ),
        (
            &["train", "--data", "iris", "--norm", "batchnorm", "--out", d],
            "error: invalid argument --norm: batchnorm and layernorm normalize hidden layers",
        ),
        (
            &["train", "--data", "iris", "--model", "mlp:64,x", "--out", d],
            "error: invalid argument --model: bad hidden widths",
        ),
        (
            &["train", "--data", "iris", "--model", "linreg", "--out", d],
            "error: invalid argument --model: linreg needs a real-valued target",
        ),
    ];
    for (args, want) in cases {
        let out = precond(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: a rejected value is a usage error"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bnp_trains_raw_inputs_at_any_batch_size_including_one() {
    // (data, model, batch size, optimizer, lr, epochs, test accuracy at least)
    for (data, model, batch, opt, lr, epochs, target) in [
        ("digits", "mlp:64", "32", "adam", "0.001", "20", 0.9),
        ("iris", "mlp:16", "1", "sgd", "0.01", "10", 0.9),
    ] {
        let dir = out_dir(&format!("bnp-{data}"));
        let out = precond(&[
            "train",
            "--data",
            data,
            "--model",
            model,
            "--norm",
            "bnp",
            "--batch-size",
            batch,
            "--opt",
            opt,
            "--lr",
            lr,
            "--epochs",
            epochs,
            "--test-fraction",
            "0.2",
            "--seed",
            "1",
            "--out",
            dir.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "{data}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = last_epoch(&dir);
        let acc = last["test_accuracy"].as_f64().expect("accuracy");
        assert!(acc >= target, "{data}, batch {batch}: test accuracy {acc}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("norm Bnp"), "{stdout}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
