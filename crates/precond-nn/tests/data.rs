//! Data loading (bundled sets, CSV with error positions), seeded splits, mini-batches and the
//! synthetic generators.

use faer::Mat;
use precond_nn::data::{self, minibatches, teacher_targets};
use precond_nn::*;

#[test]
fn bundled_data_sets_load_with_expected_shapes() {
    let expect = [
        ("breast_cancer", 30, 569, Some(2)),
        ("diabetes", 10, 442, None),
        ("wine", 13, 178, Some(3)),
        ("digits", 64, 1797, Some(10)),
        ("iris", 4, 150, Some(3)),
    ];
    for (name, d, n, classes) in expect {
        let ds = Dataset::builtin(name).expect("builtin");
        assert_eq!((ds.n_features(), ds.n_samples()), (d, n), "{name}");
        assert_eq!(ds.feature_names.len(), d);
        match (&ds.targets, classes) {
            (Targets::Classes { labels, n_classes }, Some(k)) => {
                assert_eq!(*n_classes, k);
                assert_eq!(labels.len(), n);
                for c in 0..k {
                    assert!(labels.contains(&c), "{name}: class {c} present");
                }
            }
            (Targets::Values(y), None) => {
                assert_eq!((y.nrows(), y.ncols()), (1, n));
                assert!((y[(0, 0)] - 151.0).abs() < 1e-12, "first diabetes response");
            }
            _ => panic!("{name}: wrong target kind"),
        }
    }
    let bc = Dataset::builtin("breast_cancer").expect("bc");
    assert_eq!(bc.feature_names[0], "mean_radius");
    assert!((bc.x[(0, 0)] - 17.99).abs() < 1e-12);
    assert_eq!(
        Dataset::builtin("mnist"),
        Err(NnError::UnknownDataset {
            name: "mnist".into()
        })
    );
}

#[test]
fn csv_with_named_target_column() {
    let text = "a, y ,b\n1,0,2.5\n3,1,-4e-1\n\n";
    let ds = Dataset::from_csv_str("t", text, "y").expect("parse");
    assert_eq!(ds.feature_names, vec!["a", "b"]);
    assert_eq!((ds.x[(1, 1)], ds.x[(0, 1)]), (-0.4, 3.0));
    let ds = ds.into_classes().expect("labels");
    assert_eq!(
        ds.targets,
        Targets::Classes {
            labels: vec![0, 1],
            n_classes: 2
        }
    );
}

fn csv_err(text: &str, target: &str) -> (usize, usize) {
    match Dataset::from_csv_str("t", text, target) {
        Err(NnError::Csv { line, column, .. }) => (line, column),
        other => panic!("expected a CSV error, got {other:?}"),
    }
}

#[test]
fn malformed_csv_errors_name_line_and_column() {
    assert_eq!(csv_err("", "y"), (1, 0));
    assert_eq!(csv_err("a,y\n", "y"), (2, 0));
    assert_eq!(csv_err("a,y\n1,2\n3,x\n", "y"), (3, 2));
    assert_eq!(csv_err("a,y\n1,2\n3\n", "y"), (3, 2));
    assert_eq!(csv_err("a,y\n1,2\n3,4,5\n", "y"), (3, 3));
    assert_eq!(csv_err("a,y\n1,nan\n", "y"), (2, 2));
    assert_eq!(csv_err("a,y\n1,inf\n", "y"), (2, 2));
    assert_eq!(csv_err("a,y\n1,2\n\n3,4\n", "y"), (3, 0));
    assert_eq!(csv_err("a,,y\n1,2,3\n", "y"), (1, 2));
    assert_eq!(csv_err("a,y,a\n1,2,3\n", "y"), (1, 3));
    assert_eq!(csv_err("a,b\n1,2\n", "y"), (1, 0));
    assert!(matches!(
        Dataset::from_csv_str("t", "a,y\n1,0.5\n", "y").and_then(Dataset::into_classes),
        Err(NnError::InvalidLabel { index: 0, .. })
    ));
}

#[test]
fn csv_files() {
    let dir = std::env::temp_dir().join(format!("precond-nn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("small.csv");
    std::fs::write(&path, "x1,x2,label\n1,2,0\n3,4,1\n5,6,2\n").expect("write");
    let ds = Dataset::from_csv_path(&path, "label")
        .expect("load")
        .into_classes()
        .expect("classes");
    assert_eq!(ds.name, "small");
    assert_eq!(ds.n_samples(), 3);
    assert!(matches!(
        Dataset::from_csv_path(dir.join("missing.csv"), "label"),
        Err(NnError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn seeded_split_and_minibatches() {
    let ds = Dataset::builtin("iris").expect("iris");
    let (tr, te) = ds.split(0.2, 7).expect("split");
    assert_eq!((tr.n_samples(), te.n_samples()), (120, 30));
    let (tr2, te2) = ds.split(0.2, 7).expect("split");
    assert_eq!(
        (tr.clone(), te.clone()),
        (tr2, te2),
        "deterministic for a seed"
    );
    let (tr3, _) = ds.split(0.2, 8).expect("split");
    assert_ne!(tr.x, tr3.x);
    // the split is a partition: every sample appears exactly once (match by feature column)
    let mut seen = 0;
    for c in 0..ds.n_samples() {
        let col = ds.x.col(c);
        let count = (0..tr.n_samples()).filter(|&k| tr.x.col(k) == col).count()
            + (0..te.n_samples()).filter(|&k| te.x.col(k) == col).count();
        assert!(count >= 1);
        seen += 1;
    }
    assert_eq!(seen, 150);
    assert!(ds.split(0.0, 1).is_err() && ds.split(1.0, 1).is_err() && ds.split(0.001, 1).is_err());

    let b = minibatches(10, 4, true, 3).expect("batches");
    assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
    let mut all: Vec<usize> = b.concat();
    assert_ne!(all, (0..10).collect::<Vec<_>>(), "shuffled");
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(b, minibatches(10, 4, true, 3).expect("batches"));
    assert_eq!(
        minibatches(5, 2, false, 0).expect("b"),
        vec![vec![0, 1], vec![2, 3], vec![4]]
    );
    assert!(minibatches(5, 0, false, 0).is_err());
}

#[test]
fn gaussian_generator_has_requested_scales_and_correlation() {
    let spec = GaussianSpec {
        n_samples: 20_000,
        scales: vec![0.1, 1.0, 30.0],
        means: vec![5.0, 0.0, -2.0],
        correlation: 0.6,
        seed: 9,
    };
    let x = spec.sample().expect("sample");
    assert_eq!(x, spec.sample().expect("again"), "seeded");
    let n = x.ncols() as f64;
    let stats = NormStats::of_batch(x.as_ref());
    for j in 0..3 {
        let sd = stats.var[j].sqrt();
        // standard error of a sample sd ≈ s/sqrt(2N); allow 5 of them
        assert!(
            (sd / spec.scales[j] - 1.0).abs() <= 5.0 / (2.0 * n).sqrt(),
            "sd {j}: {sd}"
        );
        assert!((stats.mean[j] - spec.means[j]).abs() <= 5.0 * spec.scales[j] / n.sqrt());
    }
    let corr = |a: usize, b: usize| {
        (0..x.ncols())
            .map(|c| (x[(a, c)] - stats.mean[a]) * (x[(b, c)] - stats.mean[b]))
            .sum::<f64>()
            / n
            / (stats.var[a] * stats.var[b]).sqrt()
    };
    // standard error of a correlation ≈ (1 − ρ²)/sqrt(N)
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        assert!(
            (corr(a, b) - 0.6).abs() <= 5.0 * 0.64 / n.sqrt(),
            "corr {a},{b}: {}",
            corr(a, b)
        );
    }
    // κ of the extended data matrix is a dial: it grows with the spread of the scales
    let k: Vec<f64> = [1.0, 10.0, 1000.0]
        .iter()
        .map(|&r| {
            kappa(
                extended(
                    GaussianSpec::log_spaced(500, 5, r, 0.0, 3)
                        .sample()
                        .expect("s")
                        .as_ref(),
                )
                .as_ref(),
            )
            .expect("k")
        })
        .collect();
    assert!(k[0] < k[1] && k[1] < k[2] && k[2] > 100.0, "{k:?}");
    assert!(
        GaussianSpec {
            correlation: 1.0,
            ..spec.clone()
        }
        .sample()
        .is_err()
    );
    assert!(
        GaussianSpec {
            scales: vec![1.0, -1.0],
            ..spec.clone()
        }
        .sample()
        .is_err()
    );
}

#[test]
fn teacher_targets_are_seeded_and_match_the_teacher() {
    let x = GaussianSpec::log_spaced(50, 4, 10.0, 0.2, 1)
        .sample()
        .expect("x");
    let teacher = Mlp::new(MlpConfig::feedforward(
        4,
        &[8],
        Activation::Tanh,
        Normalization::None,
        2,
        Loss::Mse,
    ))
    .expect("t");
    let p = teacher.init_params(5);
    let out = teacher.predict(&p, x.as_ref()).expect("predict");
    assert_eq!(
        teacher_targets(&teacher, &p, x.as_ref(), 0.0, 1).expect("t"),
        Targets::Values(out.clone())
    );
    let noisy = teacher_targets(&teacher, &p, x.as_ref(), 0.1, 1).expect("t");
    assert_eq!(
        noisy,
        teacher_targets(&teacher, &p, x.as_ref(), 0.1, 1).expect("t")
    );
    let Targets::Values(y) = noisy else {
        panic!("values")
    };
    let diff: Mat<f64> = &y - &out;
    assert!(diff.norm_max() > 0.0 && diff.norm_max() < 0.6);
    let cls = Mlp::new(MlpConfig::feedforward(
        4,
        &[8],
        Activation::Tanh,
        Normalization::None,
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("c");
    let t = teacher_targets(&cls, &cls.init_params(2), x.as_ref(), 0.0, 1).expect("t");
    assert!(matches!(t, Targets::Classes { n_classes: 3, .. }));
    assert!(teacher_targets(&teacher, &p, x.as_ref(), -1.0, 1).is_err());
}

fn parse_err(text: &str, header: data::CsvHeader) -> (usize, usize, String) {
    let opts = data::CsvOptions {
        header,
        ..Default::default()
    };
    match data::parse_csv_with(text, &opts) {
        Err(NnError::Csv {
            line,
            column,
            reason,
        }) => (line, column, reason),
        other => panic!("expected a CSV error, got {other:?}"),
    }
}

#[test]
fn csv_header_rule_first_row_of_numbers_is_data() {
    use data::CsvHeader::{Absent, Auto, Present};
    // every spelling Rust's f64 parser accepts makes the first row data, so a non-finite value
    // there is reported on line 1 instead of the row being dropped as a header
    for first in [
        "nan,1,2",
        "inf,1,2",
        "-inf,1,2",
        "NaN,+1,1e3",
        "infinity,.5,1.",
    ] {
        let (line, column, reason) = parse_err(&format!("{first}\n3,4,5\n"), Auto);
        assert_eq!((line, column), (1, 1), "{first}: {reason}");
        assert!(reason.contains("non-finite"), "{first}: {reason}");
    }
    // an empty field does not make a header: it is an error naming line 1 column 2
    let (line, column, reason) = parse_err("1,,3\n4,5,6\n", Auto);
    assert_eq!((line, column), (1, 2));
    assert!(reason.contains("empty field"), "{reason}");
    // and in a later data row too
    let (line, column, _) = parse_err("a,b,c\n1,2,3\n4,5,\n", Auto);
    assert_eq!((line, column), (3, 3));
    // a row with a word is a header
    let t = data::parse_csv("a,b,c\n1,2,3\n").expect("header");
    assert_eq!(t.columns, ["a", "b", "c"]);
    assert_eq!(
        (t.header_line, t.nrows(), t.row(0)),
        (Some(1), 1, &[1.0, 2.0, 3.0][..])
    );
    // --header forces the first row to be a header, --no-header to be data
    let opts = |header| data::CsvOptions {
        header,
        ..Default::default()
    };
    let t = data::parse_csv_with("1,2,3\n4,5,6\n", &opts(Present)).expect("forced header");
    assert_eq!(
        (t.columns.clone(), t.nrows()),
        (vec!["1".to_string(), "2".into(), "3".into()], 1)
    );
    let t = data::parse_csv_with("1,2,3\n4,5,6\n", &opts(Auto)).expect("guessed: data");
    assert_eq!((t.header_line, t.nrows()), (None, 2));
    assert_eq!(t.columns, ["1", "2", "3"], "columns named by number");
    let (line, column, _) = parse_err("a,b\n1,2\n", Absent);
    assert_eq!((line, column), (1, 1));
}

#[test]
fn csv_dialect_and_limits() {
    // byte-order mark, comments, semicolons, spaces, quoted header names, trailing blank lines
    let t = data::parse_csv("\u{feff}# made by hand\n\"x\" ; y\n1 ; 2\n# mid\n3;4\n\n")
        .expect("dialect");
    assert_eq!(t.columns, ["x", "y"]);
    assert_eq!(t.values, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t.header_line, Some(2));
    // lines count every line of the text, comments included
    assert_eq!(parse_err("# c\na,b\n1,x\n", data::CsvHeader::Auto).0, 3);
    // the value cap stops the reading
    let opts = data::CsvOptions {
        max_values: 3,
        ..Default::default()
    };
    match data::parse_csv_with("1,2\n3,4\n", &opts) {
        Err(NnError::Csv {
            line,
            column,
            reason,
        }) => {
            assert_eq!((line, column), (2, 2));
            assert!(reason.contains("more than 3 values"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // without a header, the target is named by its column number
    let ds =
        data::Dataset::from_csv_str_with("t", "1,2,0\n3,4,1\n", "3", &data::CsvOptions::default())
            .expect("numbered target");
    assert_eq!(ds.feature_names, ["1", "2"]);
    assert_eq!(ds.n_samples(), 2);
}
