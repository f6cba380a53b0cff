//! Shared pieces of the cargo-fuzz targets: the optimizers the state target loads into, the
//! seed inputs of every target (written by `cargo run --example seeds`), and small decoders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use precond_optim::{
    FixedPreconditioner, MatrixShape, Optimizer, OptimizerConfig, OptimizerKind,
};

/// Number of parameters of the optimizers behind the `state_load` target and its seeds.
pub const STATE_N: usize = 4;

/// The config of `kind` the state seeds are saved from: torch's defaults, momentum on where the
/// kind has it (0.9; GD keeps 0), a diagonal preconditioner where the kind needs one, a 2 × n/2
/// shape for the matrix optimizers.
pub fn state_config(kind: OptimizerKind, n: usize) -> OptimizerConfig {
    let mut c = OptimizerConfig::new(kind);
    if kind.keys().contains(&"momentum") && kind != OptimizerKind::Gd {
        c.momentum = 0.9;
    }
    if kind.keys().contains(&"preconditioner") {
        c.preconditioner = Some(FixedPreconditioner::Diagonal(vec![0.5; n]));
    }
    if kind.is_matrix() {
        c.shape = Some(MatrixShape::new(2, n / 2));
    }
    c
}

/// A finite gradient for step `s` of an `n`-parameter problem.
pub fn gradient(n: usize, s: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 - 1.5) * (s + 1) as f64 * 0.25)
        .collect()
}

/// An optimizer of `kind` over [`STATE_N`] parameters after `steps` steps in `f64`
/// (`f32 == false`) or `f32`.
pub fn stepped(kind: OptimizerKind, steps: usize, f32_store: bool) -> Optimizer {
    let mut opt = state_config(kind, STATE_N).build(STATE_N).unwrap();
    if f32_store {
        let mut x = vec![1.0f32; STATE_N];
        for s in 0..steps {
            let g: Vec<f32> = gradient(STATE_N, s).iter().map(|&v| v as f32).collect();
            opt.step(&mut x, &g).unwrap();
        }
    } else {
        let mut x = vec![1.0f64; STATE_N];
        for s in 0..steps {
            opt.step_f64(&mut x, &gradient(STATE_N, s)).unwrap();
        }
    }
    opt
}

/// Valid saved states of every kind: fresh (empty), three `f64` steps, two `f32` steps.
pub fn state_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for &k in OptimizerKind::ALL {
        out.push((format!("{k}_empty"), stepped(k, 0, false).save_state()));
        out.push((format!("{k}_f64"), stepped(k, 3, false).save_state()));
        out.push((format!("{k}_f32"), stepped(k, 2, true).save_state()));
    }
    out
}

/// Valid JSON configurations of every kind (torch's defaults, and the state seeds' configs).
pub fn config_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for &k in OptimizerKind::ALL {
        if !k.keys().contains(&"preconditioner") {
            out.push((
                format!("{k}_default"),
                OptimizerConfig::new(k).to_json().into_bytes(),
            ));
        }
        out.push((
            format!("{k}_n4"),
            state_config(k, STATE_N).to_json().into_bytes(),
        ));
    }
    // BNP groups (docs/THEORY.md §6): a 1 × 1 layer (weight, bias) under the top level's Adam,
    // a 1 × 3 layer with its own SGD
    for (name, json) in BNP_SEEDS {
        out.push((name.to_string(), json.as_bytes().to_vec()));
    }
    out
}

/// The `config_json` seeds with a `"bnp"` group.
const BNP_SEEDS: [(&str, &str); 2] = [
    (
        "bnp_adam",
        r#"{"optimizer": "adam", "groups": [{"start": 0, "end": 2, "shape": [1, 1], "bnp": true}]}"#,
    ),
    (
        "bnp_sgd_own",
        r#"{"optimizer": "adamw", "groups": [{"start": 0, "end": 4, "shape": [1, 3], "bnp": {"momentum": 0.5, "eps": 0.001}, "optimizer": "sgd", "momentum": 0.9}]}"#,
    ),
];

/// The matrix formats of the `matrix_parsers` target, selected by the input's first byte.
pub const MATRIX_SELECTORS: usize = 6;

/// Seeds of `matrix_parsers`: a selector byte (see the target) followed by a small file.
pub fn matrix_seeds() -> Vec<(String, Vec<u8>)> {
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
    let mut h = header.as_bytes().to_vec();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
    npy.extend_from_slice(&h);
    for v in [2.0f64, 1.0, 1.0, 3.0] {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    let files: Vec<(&str, u8, Vec<u8>)> = vec![
        (
            "mtx_array",
            0,
            b"%%MatrixMarket matrix array real general\n2 2\n1.0\n2.0\n3.0\n4.0\n".to_vec(),
        ),
        (
            "mtx_coord_sym",
            0,
            b"%%MatrixMarket matrix coordinate real symmetric\n% c\n3 3 4\n1 1 4.0\n2 1 1.0\n2 2 3.0\n3 3 1e-300\n"
                .to_vec(),
        ),
        ("npy_f8", 1, npy),
        ("csv_header", 2, b"a,b\n1,2\n3,4.5e-3\n".to_vec()),
        ("csv_plain", 3, b"1;2\n3;4\n".to_vec()),
        ("csv_data", 4, b"\xef\xbb\xbfx,y,label\n# c\n0.5,1,0\n-1,2e3,1\n".to_vec()),
        ("csv_tab", 5, b"1\t2\t3\n4\t5\t6\n".to_vec()),
    ];
    files
        .into_iter()
        .map(|(name, sel, body)| {
            let mut b = vec![sel];
            b.extend_from_slice(&body);
            (name.to_string(), b)
        })
        .collect()
}

/// A small matrix and a binary exponent decoded from fuzz bytes: byte 0 gives the shape
/// (`rows, cols ≤ 6`), bytes 1–2 the exponent `k` (an `i16`, reduced to `[-1100, 1100]`),
/// then 8 bytes per entry (little-endian `f64`; missing bytes are zero). `None` when the
/// entries are not all finite.
pub fn decode_matrix(data: &[u8]) -> Option<(usize, usize, i32, Vec<f64>)> {
    let (&shape, rest) = data.split_first()?;
    let m = 1 + (shape & 7) as usize % 6;
    let n = 1 + ((shape >> 3) & 7) as usize % 6;
    let k = if rest.len() >= 2 {
        i32::from(i16::from_le_bytes([rest[0], rest[1]])) % 1101
    } else {
        0
    };
    let body = rest.get(2..).unwrap_or(&[]);
    let mut a = vec![0.0f64; m * n];
    for (i, v) in a.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = body.get(i * 8 + j).copied().unwrap_or(0);
        }
        *v = f64::from_le_bytes(b);
    }
    a.iter().all(|v| v.is_finite()).then_some((m, n, k, a))
}

/// Seeds of `diagnostics_scale`: well-, ill- and un-conditioned matrices at moderate,
/// tiny and huge scales.
pub fn diagnostics_seeds() -> Vec<(String, Vec<u8>)> {
    let enc = |m: usize, n: usize, k: i16, a: &[f64]| {
        let mut b = vec![((m - 1) | ((n - 1) << 3)) as u8];
        b.extend_from_slice(&k.to_le_bytes());
        for v in a {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    };
    vec![
        (
            "identity3".into(),
            enc(3, 3, 0, &[1., 0., 0., 0., 1., 0., 0., 0., 1.]),
        ),
        ("spd2_tiny".into(), enc(2, 2, -1000, &[2., 1., 1., 3.])),
        ("spd2_huge".into(), enc(2, 2, 1000, &[2., 1., 1., 3.])),
        ("subnormal".into(), enc(2, 2, 5, &[1e-310, 0., 0., 3e-320])),
        (
            "graded".into(),
            enc(3, 3, -7, &[1e150, 0., 0., 0., 1., 0., 0., 0., 1e-150]),
        ),
        ("singular".into(), enc(2, 2, 9, &[1., 2., 2., 4.])),
        ("rect".into(), enc(2, 3, -300, &[1., 2., 3., 4., 5., 6.5])),
        ("indef".into(), enc(2, 2, 1, &[1., 5., 5., -2.])),
    ]
}
