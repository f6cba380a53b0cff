//! Builds the C and C++ examples of `ffi-examples/` with their Makefile (`-Wall -Wextra -Werror
//! -pedantic`, C99 / C++17) against the library cargo built for this test run, runs them, checks
//! their printed numbers against the same computations done in Rust, and runs them under
//! valgrind memcheck (`--error-exitcode=1 --leak-check=full`) when valgrind is installed.
//!
//! Every example is also built a second time with gcc's AddressSanitizer and
//! UndefinedBehaviorSanitizer (`-fsanitize=address,undefined -fno-omit-frame-pointer
//! -fno-sanitize-recover=all`, linked against the same static or shared library) and run with
//! `ASAN_OPTIONS=detect_leaks=1` (LeakSanitizer works in this environment) and
//! `UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1`; any sanitizer report fails the test, and
//! the sanitized programs must print what the plain ones print. Without gcc's libasan/libubsan
//! the sanitizer tests fail with a message saying so, unless `PRECOND_SKIP_SANITIZERS=1`.
//!
//! The library: `cargo test` compiles the `precond_ffi` lib target once with all its crate
//! types, so `libprecond_ffi.a` and `libprecond_ffi.so` sit next to this test binary in
//! `target/<profile>/deps/` and are as fresh as the rlib linked into it; no nested cargo call
//! is needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use faer::MatRef;
use precond_linalg::{cond1, cond2, precond_cond_diag, row_equilibrate, sym_spectrum};
use precond_nn::DataConditioning;
use precond_optim::OptimizerConfig;

struct Built {
    build: PathBuf,
    libdir: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn include_dir() -> PathBuf {
    root().join("include")
}

/// The bundled data set the C++ example reads (shipped inside the `precond-nn` crate).
fn breast_cancer_csv() -> PathBuf {
    root().join("crates/precond-nn/data/breast_cancer.csv")
}

/// The directory holding `libprecond_ffi.{a,so}` of this build.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory").to_path_buf();
    for dir in [deps.clone(), deps.join("..")] {
        if dir.join("libprecond_ffi.a").exists() && dir.join("libprecond_ffi.so").exists() {
            return dir;
        }
    }
    panic!(
        "libprecond_ffi.a/.so not found next to {} (cargo builds every crate type of the lib)",
        exe.display()
    );
}

fn make(args: &[&str], build: &Path, libdir: &Path) -> Output {
    make_with(args, build, libdir, &[])
}

/// `make` with extra variable assignments (`("CC", "gcc")`, compiler flags).
fn make_with(args: &[&str], build: &Path, libdir: &Path, vars: &[(&str, &str)]) -> Output {
    let out = Command::new("make")
        .arg("-C")
        .arg(root().join("ffi-examples"))
        .arg(format!("BUILD={}", build.display()))
        .arg(format!("PRECOND_LIBDIR={}", libdir.display()))
        .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
        .args(args)
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds every example once per test binary.
fn built() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| {
        let build = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-examples");
        let libdir = lib_dir();
        make(&["-j2", "all"], &build, &libdir);
        Built { build, libdir }
    })
}

fn run(program: &str, args: &[&str]) -> String {
    let b = built();
    let out = Command::new(b.build.join(program))
        .args(args)
        .output()
        .expect("run example");
    assert!(
        out.status.success(),
        "{program} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn valgrind(program: &str, args: &[&str]) {
    if !valgrind_available() {
        eprintln!("valgrind not installed: skipping the memcheck run of {program}");
        return;
    }
    let b = built();
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,possible",
            "-q",
        ])
        .arg(format!(
            "--suppressions={}",
            root().join("ffi-examples/valgrind.supp").display()
        ))
        .arg(b.build.join(program))
        .args(args)
        .output()
        .expect("run valgrind");
    assert!(
        out.status.success(),
        "valgrind reported errors for {program}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ERROR SUMMARY") || stderr.contains("ERROR SUMMARY: 0 errors"),
        "{stderr}"
    );
}

fn parse(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(kv: &HashMap<String, String>, key: &str) -> f64 {
    let v = kv
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in the output"));
    v.parse()
        .unwrap_or_else(|_| panic!("`{key}` = {v} is not a number"))
}

/// `got` agrees with `want` to `rtol` relative to `max(|want|, floor)`; infinities must match.
fn close(key: &str, got: f64, want: f64, rtol: f64, floor: f64) {
    if want.is_infinite() || got.is_infinite() {
        assert!(
            got.is_infinite() && want.is_infinite(),
            "{key}: {got} vs {want}"
        );
        return;
    }
    let scale = want.abs().max(floor);
    assert!(
        (got - want).abs() <= rtol * scale,
        "{key}: printed {got:e}, Rust computes {want:e} (rtol {rtol:e})"
    );
}

// ---------------------------------------------------------------- the header alone

fn compile_header_only(compiler: &str, std: &str, lang: &str, include: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("header-only");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let src = dir.join(format!("include_{}.{lang}", std.replace('+', "p")));
    std::fs::write(
        &src,
        format!("#include \"{include}\"\nint main(void) {{ return PRECOND_OK; }}\n"),
    )
    .expect("write source");
    let out = Command::new(compiler)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .output()
        .expect("run compiler");
    assert!(
        out.status.success(),
        "{compiler} -std={std} rejects {include}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99_and_as_cpp() {
    compile_header_only("gcc", "c99", "c", "precond.h");
    compile_header_only("gcc", "c11", "c", "precond.h");
    compile_header_only("g++", "c++11", "cpp", "precond.h");
    compile_header_only("g++", "c++17", "cpp", "precond.hpp");
}

// ---------------------------------------------------------------- c/quadratic.c

const N: usize = 6;

/// `H = D K D`, `D = diag(3^i)`, `K_ij = 0.5^|i−j|`, exactly as the C program builds it.
fn quadratic_h() -> Vec<f64> {
    let mut d = [1.0f64; N];
    let mut k = [1.0f64; N];
    for i in 1..N {
        d[i] = 3.0 * d[i - 1];
        k[i] = 0.5 * k[i - 1];
    }
    let mut h = vec![0.0; N * N];
    for i in 0..N {
        for j in 0..N {
            h[i * N + j] = d[i] * d[j] * k[i.abs_diff(j)];
        }
    }
    h
}

/// `g = Hx − b`, returns `f = ½xᵀHx − bᵀx`, with the C program's operation order.
fn quad_grad(h: &[f64], b: &[f64], x: &[f64], g: &mut [f64]) -> f64 {
    let mut f = 0.0;
    for i in 0..N {
        let mut hx = 0.0;
        for j in 0..N {
            hx += h[i * N + j] * x[j];
        }
        g[i] = hx - b[i];
        f += 0.5 * x[i] * hx - b[i] * x[i];
    }
    f
}

#[test]
fn c_quadratic_prints_what_rust_computes() {
    let out = run("quadratic", &[]);
    let kv = parse(&out);
    assert_eq!(kv["version"], env!("CARGO_PKG_VERSION"));
    let h = quadratic_h();
    let hm = MatRef::from_row_major_slice(&h, N, N);
    let ones = [1.0; N];
    let mut b = vec![0.0; N];
    quad_grad(&h, &[0.0; N], &ones, &mut b);
    let mut g = vec![0.0; N];
    let f_star = quad_grad(&h, &b, &ones, &mut g);

    let spec = sym_spectrum(hm).expect("spectrum");
    let tight = 1e-10;
    close("kappa_H", num(&kv, "kappa_H"), spec.kappa, tight, 0.0);
    close(
        "lambda_min_H",
        num(&kv, "lambda_min_H"),
        spec.lambda_min,
        tight,
        0.0,
    );
    close(
        "lambda_max_H",
        num(&kv, "lambda_max_H"),
        spec.lambda_max,
        tight,
        0.0,
    );
    // independent: for SPD H the 2-norm condition number is λ_max/λ_min
    close("cond2_H", num(&kv, "cond2_H"), spec.kappa, 1e-8, 0.0);
    let c2 = cond2(hm).expect("cond2");
    close("cond2_H", num(&kv, "cond2_H"), c2.kappa, tight, 0.0);
    // the Hager–Higham estimate is a lower bound of the exact κ₁, within a factor 3
    let k1 = cond1(hm).expect("cond1");
    let est = num(&kv, "kappa1_estimate_H");
    assert!(
        est <= k1 * (1.0 + 1e-12) && est >= k1 / 3.0,
        "{est} vs κ₁ = {k1}"
    );
    let pj: Vec<f64> = (0..N).map(|i| 1.0 / h[i * N + i]).collect();
    let jac = precond_cond_diag(hm, &pj).expect("jacobi");
    close(
        "jacobi_kappa_precond",
        num(&kv, "jacobi_kappa_precond"),
        jac.spectral_kappa,
        tight,
        0.0,
    );
    let eq = row_equilibrate(hm).expect("equilibrate");
    let ce = cond2(eq.scaled.as_ref()).expect("cond2");
    close(
        "row_equilibrated_cond2",
        num(&kv, "row_equilibrated_cond2"),
        ce.kappa,
        tight,
        0.0,
    );

    for (name, json) in [
        ("adam", r#"{"optimizer": "adam", "lr": 0.05}"#),
        (
            "adamw",
            r#"{"optimizer": "adamw", "lr": 0.05, "weight_decay": 0.001}"#,
        ),
    ] {
        let mut opt = OptimizerConfig::from_json(json)
            .expect("config")
            .build(N)
            .expect("build");
        let mut x = vec![0.0; N];
        for _ in 0..3000 {
            quad_grad(&h, &b, &x, &mut g);
            opt.step_f64(&mut x, &g).expect("step");
        }
        let f = quad_grad(&h, &b, &x, &mut g);
        let dist = x.iter().map(|v| (v - 1.0) * (v - 1.0)).sum::<f64>().sqrt();
        let mut p = vec![0.0; N];
        opt.preconditioner(&mut p).expect("P");
        let pc = precond_cond_diag(hm, &p).expect("precond cond");
        assert_eq!(kv[&format!("{name}_steps")], "3000");
        close(
            "f - f*",
            num(&kv, &format!("{name}_f_minus_fstar")),
            f - f_star,
            1e-8,
            1e-12 * f_star.abs(),
        );
        close(
            "dist",
            num(&kv, &format!("{name}_dist_to_xstar")),
            dist,
            1e-8,
            1e-12,
        );
        for (i, pi) in p.iter().enumerate() {
            close(
                &format!("{name}_p{i}"),
                num(&kv, &format!("{name}_p{i}")),
                *pi,
                tight,
                0.0,
            );
        }
        close(
            "kappa_precond",
            num(&kv, &format!("{name}_kappa_precond")),
            pc.spectral_kappa,
            tight,
            0.0,
        );
        close(
            "row_scaled_kappa2",
            num(&kv, &format!("{name}_row_scaled_kappa2")),
            pc.row_scaled_kappa2,
            tight,
            0.0,
        );
        // THEORY.md §4: Adam's diagonal P undoes the row scaling D, so κ(P^{1/2}HP^{1/2}) is
        // orders of magnitude below κ(H) (here 8.4e4 → about 37)
        assert!(
            pc.spectral_kappa < spec.kappa / 1000.0,
            "{name}: {}",
            pc.spectral_kappa
        );
    }
    // Adam converges to x* = 1; AdamW's decoupled decay moves the minimizer by O(λ)
    assert!(num(&kv, "adam_dist_to_xstar") < 1e-8);
    let dw = num(&kv, "adamw_dist_to_xstar");
    assert!(dw > 1e-6 && dw < 1e-3, "{dw}");
}

#[test]
fn c_quadratic_links_dynamically_with_identical_output() {
    assert_eq!(run("quadratic_shared", &[]), run("quadratic", &[]));
}

// ---------------------------------------------------------------- c/errors.c

/// No `FAIL` line and a final `checks p/t` line with `p == t`; returns `t`.
fn all_checks_pass(out: &str) -> usize {
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "{fails:#?}");
    let last = out.lines().last().unwrap_or_default();
    let (passed, total) = last
        .strip_prefix("checks ")
        .and_then(|s| s.split_once('/'))
        .expect("a final `checks p/t` line");
    assert_eq!(passed, total);
    total.parse().expect("count")
}

#[test]
fn c_error_paths_all_pass() {
    let out = run("errors", &[]);
    let total = all_checks_pass(&out);
    assert!(total >= 80, "only {total} checks");
    // every status code except OK-only and panic appears among the checked failures
    for code in [
        "PRECOND_NULL_POINTER",
        "PRECOND_INVALID_ARGUMENT",
        "PRECOND_DIMENSION_MISMATCH",
        "PRECOND_NON_FINITE",
        "PRECOND_NUMERICAL_FAILURE",
        "PRECOND_PARSE_ERROR",
        "PRECOND_INVALID_STATE",
        "PRECOND_OUT_OF_MEMORY",
    ] {
        assert!(
            out.contains(&format!("[{code}]")),
            "no check returns {code}"
        );
    }
}

// ---------------------------------------------------------------- c/lifetimes.c

/// The returned strings are read only where the documented lifetime says they are valid; the
/// memory checkers (`valgrind_lifetimes`, `sanitizers_lifetimes`) catch a string freed early
/// (`precond_clear_last_error` used to free the thread-local message).
#[test]
fn c_returned_string_lifetimes_all_pass() {
    let out = run("lifetimes", &[]);
    let total = all_checks_pass(&out);
    assert!(total >= 35, "only {total} checks");
    for case in [
        "ok kept message after clearing",
        "ok kept message after successful calls and a second clearing",
        "ok kept message after a failure on another thread",
        "ok handle message after precond_clear_last_error",
        "ok handle message after failures elsewhere",
        "ok version",
        "ok status name",
    ] {
        assert!(out.contains(case), "no `{case}` in\n{out}");
    }
}

// ---------------------------------------------------------------- cpp/logistic.cpp

struct Data {
    n: usize,
    d: usize,
    x: Vec<f64>,
    y: Vec<f64>,
}

fn breast_cancer() -> Data {
    let text = std::fs::read_to_string(breast_cancer_csv()).expect("data");
    let mut lines = text.lines();
    let cols = lines.next().expect("header").split(',').count();
    let (mut x, mut y, mut n) = (Vec::new(), Vec::new(), 0);
    for line in lines.filter(|l| !l.is_empty()) {
        for (j, f) in line.split(',').enumerate() {
            let v: f64 = f.parse().expect("number");
            if j < cols - 1 {
                x.push(v);
            } else {
                y.push(v);
            }
        }
        n += 1;
    }
    Data {
        n,
        d: cols - 1,
        x,
        y,
    }
}

fn standardize(raw: &Data) -> Data {
    let (n, d) = (raw.n, raw.d);
    let mut x = raw.x.clone();
    for j in 0..d {
        let mut mean = 0.0;
        for i in 0..n {
            mean += raw.x[i * d + j];
        }
        mean /= n as f64;
        let mut var = 0.0;
        for i in 0..n {
            let c = raw.x[i * d + j] - mean;
            var += c * c;
        }
        var /= n as f64;
        let sd = var.sqrt();
        for i in 0..n {
            x[i * d + j] = (raw.x[i * d + j] - mean) / sd;
        }
    }
    Data {
        n,
        d,
        x,
        y: raw.y.clone(),
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        z.exp() / (1.0 + z.exp())
    }
}

#[allow(clippy::needless_range_loop)] // the C++ program's loops, same order
fn loss_grad(data: &Data, theta: &[f64], g: &mut [f64], p: &mut [f64]) -> f64 {
    let (n, d) = (data.n, data.d);
    g.fill(0.0);
    let mut loss = 0.0;
    for i in 0..n {
        let mut z = theta[0];
        for j in 0..d {
            z += theta[j + 1] * data.x[i * d + j];
        }
        let softplus = if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        };
        loss += softplus - data.y[i] * z;
        p[i] = sigmoid(z);
        let r = p[i] - data.y[i];
        g[0] += r;
        for j in 0..d {
            g[j + 1] += r * data.x[i * d + j];
        }
    }
    let inv = 1.0 / n as f64;
    for v in g.iter_mut() {
        *v *= inv;
    }
    loss * inv
}

#[allow(clippy::needless_range_loop)] // the C++ program's loops, same order
fn logistic_hessian(data: &Data, p: &[f64]) -> Vec<f64> {
    let d1 = data.d + 1;
    let mut h = vec![0.0; d1 * d1];
    let mut xb = vec![0.0; d1];
    for i in 0..data.n {
        xb[0] = 1.0;
        xb[1..].copy_from_slice(&data.x[i * data.d..(i + 1) * data.d]);
        let w = p[i] * (1.0 - p[i]);
        for a in 0..d1 {
            for b in 0..d1 {
                h[a * d1 + b] += w * xb[a] * xb[b];
            }
        }
    }
    for v in h.iter_mut() {
        *v /= data.n as f64;
    }
    h
}

const LOGISTIC_STEPS: usize = 300;

#[test]
fn cpp_logistic_prints_what_rust_computes() {
    let data_path = breast_cancer_csv();
    let steps = LOGISTIC_STEPS.to_string();
    let out = run("logistic", &[data_path.to_str().expect("path"), &steps]);
    let kv = parse(&out);
    let raw = breast_cancer();
    let std_data = standardize(&raw);
    assert_eq!(kv["n_samples"], raw.n.to_string());
    assert_eq!(kv["n_features"], raw.d.to_string());
    assert_eq!((raw.n, raw.d), (569, 30));

    // Theorem 6 numbers, from precond-nn on X as d × N (one column per sample)
    let xt = MatRef::from_row_major_slice(&raw.x, raw.n, raw.d).transpose();
    let c = DataConditioning::of(xt).expect("data conditioning");
    let tight = 1e-10;
    close(
        "data_kappa_raw",
        num(&kv, "data_kappa_raw"),
        c.raw,
        tight,
        0.0,
    );
    close(
        "data_kappa_centred",
        num(&kv, "data_kappa_centred"),
        c.centred,
        tight,
        0.0,
    );
    let ks = num(&kv, "data_kappa_standardized");
    close("data_kappa_standardized", ks, c.standardized, tight, 0.0);
    close(
        "data_kappa_min_max",
        num(&kv, "data_kappa_min_max"),
        c.min_max,
        tight,
        0.0,
    );
    let kv_dvs = num(&kv, "data_kappa_van_der_sluis");
    close(
        "data_kappa_van_der_sluis",
        kv_dvs,
        c.van_der_sluis,
        tight,
        0.0,
    );
    let s = num(&kv, "data_sqrt_d_plus_1");
    close("data_sqrt_d_plus_1", s, 31f64.sqrt(), 1e-15, 0.0);
    // Theorem 6 (23) with D = D_0, and standardization's gain on this data set
    assert!(ks <= s * kv_dvs * (1.0 + 1e-12), "{ks} > {s} * {kv_dvs}");
    assert!(ks * 1000.0 < num(&kv, "data_kappa_raw"));

    let adam = r#"{"optimizer": "adam", "lr": 0.01}"#;
    let adamw = r#"{"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01}"#;
    for (name, json, data) in [
        ("raw_adam", adam, &raw),
        ("raw_adamw", adamw, &raw),
        ("std_adam", adam, &std_data),
        ("std_adamw", adamw, &std_data),
    ] {
        let d1 = data.d + 1;
        let mut opt = OptimizerConfig::from_json(json)
            .expect("config")
            .build(d1)
            .expect("build");
        let mut theta = vec![0.0; d1];
        let mut g = vec![0.0; d1];
        let mut p = vec![0.0; data.n];
        for _ in 0..LOGISTIC_STEPS {
            loss_grad(data, &theta, &mut g, &mut p);
            opt.step_f64(&mut theta, &g).expect("step");
        }
        let loss = loss_grad(data, &theta, &mut g, &mut p);
        let correct = (0..data.n)
            .filter(|&i| (p[i] >= 0.5) == (data.y[i] >= 0.5))
            .count();
        let gnorm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let h = logistic_hessian(data, &p);
        let hm = MatRef::from_row_major_slice(&h, d1, d1);
        let spec = sym_spectrum(hm).expect("spectrum");
        let mut pk = vec![0.0; d1];
        opt.preconditioner(&mut pk).expect("P");
        let pc = precond_cond_diag(hm, &pk).expect("precond cond");
        let k = |f: &str| format!("{name}_{f}");
        close(&k("loss"), num(&kv, &k("loss")), loss, 1e-9, 0.0);
        close(
            &k("accuracy"),
            num(&kv, &k("accuracy")),
            correct as f64 / data.n as f64,
            1e-15,
            0.0,
        );
        close(&k("grad_norm"), num(&kv, &k("grad_norm")), gnorm, 1e-8, 0.0);
        close(
            &k("kappa_H"),
            num(&kv, &k("kappa_H")),
            spec.kappa,
            1e-6,
            0.0,
        );
        close(
            &k("kappa_precond"),
            num(&kv, &k("kappa_precond")),
            pc.spectral_kappa,
            1e-6,
            0.0,
        );
        assert_eq!(kv[&k("steps")], LOGISTIC_STEPS.to_string());
    }
    // standardized inputs: a far better conditioned Hessian and a lower loss in as many steps
    assert!(num(&kv, "std_adam_kappa_H") * 1000.0 < num(&kv, "raw_adam_kappa_H"));
    assert!(num(&kv, "std_adam_loss") < num(&kv, "raw_adam_loss"));
    assert!(num(&kv, "std_adam_accuracy") > 0.97);
    // the wrapper turns a failing call into an exception carrying the library's message
    assert_eq!(kv["exception_status"], "PRECOND_INVALID_ARGUMENT");
    assert!(kv["exception_message"].contains("`lr`"));
    assert!(!kv.contains_key("exception_missing"));
    assert_eq!(kv["handle_exception_status"], "PRECOND_NON_FINITE");
    assert!(kv["handle_exception_message"].contains("index 1"));
    assert_eq!(kv["handle_after_error_steps"], "1");
    assert_eq!(kv["moved_n_params"], "2");
    // "nonfinite": "propagate": the step succeeds, the NaN is in the parameters, and reported
    assert_eq!(kv["propagate_seen"], "1");
    assert_eq!(kv["propagate_index"], "1");
    assert_eq!(kv["propagate_param_is_nan"], "1");
    assert_eq!(kv["propagate_steps"], "1");
}

// ---------------------------------------------------------------- c/matrix_factorization.c

/// The configuration of `c/matrix_factorization.c` (Muon on U and V, AdamW on the bias).
const MF_CONFIG: &str = r#"{"optimizer": "adamw", "lr": 0.05, "weight_decay": 0.0,
    "schedule": {"kind": "cosine", "T_max": 1500},
    "groups": [
     {"start": 0, "end": 128, "shape": [32, 4], "optimizer": "muon", "lr": 0.02, "weight_decay": 0.0},
     {"start": 128, "end": 224, "shape": [24, 4], "optimizer": "muon", "lr": 0.02, "weight_decay": 0.0}]}"#;
const MF_M: usize = 32;
const MF_N: usize = 24;
const MF_K: usize = 4;
const MF_V: usize = MF_M * MF_K;
const MF_C: usize = MF_V + MF_N * MF_K;
const MF_PARAMS: usize = MF_C + MF_M;

/// `f = ½‖U Vᵀ + c 1ᵀ − M‖²` and its gradient, as the C example computes them.
fn mf_loss_grad(x: &[f64], m: &[f64], g: &mut [f64]) -> f64 {
    let (u, v, c) = (&x[..MF_V], &x[MF_V..MF_C], &x[MF_C..]);
    let mut r = vec![0.0; MF_M * MF_N];
    let mut f = 0.0;
    for i in 0..MF_M {
        for j in 0..MF_N {
            let mut p = c[i];
            for k in 0..MF_K {
                p += u[i * MF_K + k] * v[j * MF_K + k];
            }
            r[i * MF_N + j] = p - m[i * MF_N + j];
            f += 0.5 * r[i * MF_N + j] * r[i * MF_N + j];
        }
    }
    g.fill(0.0);
    for i in 0..MF_M {
        for j in 0..MF_N {
            let rij = r[i * MF_N + j];
            g[MF_C + i] += rij;
            for k in 0..MF_K {
                g[i * MF_K + k] += rij * v[j * MF_K + k];
                g[MF_V + j * MF_K + k] += rij * u[i * MF_K + k];
            }
        }
    }
    f
}

/// The training of the C example redone with `precond_optim` from Rust: the printed losses and
/// Muon's right multiplier of U agree, and the loss falls by more than the example's bound.
#[test]
fn c_matrix_factorization_prints_what_rust_computes() {
    let out = run("matrix_factorization", &[]);
    let kv = parse(&out);
    assert_eq!(
        kv.get("converged").map(String::as_str),
        Some("yes"),
        "{out}"
    );
    // the target, summed in the C example's order (offset first, then k = 0..3)
    let m: Vec<f64> = (0..MF_M * MF_N)
        .map(|idx| {
            let (i, j) = ((idx / MF_N) as f64, (idx % MF_N) as f64);
            let mut s = 0.1 * ((idx / MF_N) % 7) as f64 - 0.3;
            for k in 0..MF_K {
                let k = k as f64;
                s += (0.7 * i + 1.3 * k + 0.5).sin() * (0.4 * j - 0.9 * k).cos();
            }
            s
        })
        .collect();
    let mut x: Vec<f64> = (0..MF_PARAMS)
        .map(|i| {
            if i < MF_C {
                0.3 * (1.1 * i as f64 + 0.2).sin()
            } else {
                0.0
            }
        })
        .collect();
    let mut g = vec![0.0; MF_PARAMS];
    let mut opt = OptimizerConfig::from_json(MF_CONFIG)
        .expect("config")
        .build(MF_PARAMS)
        .expect("build");
    let f0 = mf_loss_grad(&x, &m, &mut g);
    // the same operations in the same order as the C code (each sum starts at 0 and runs over
    // the same index order; sin/cos from the same libm; no FMA contraction: gcc's ISO mode
    // -std=c99 implies -ffp-contract=off, and Rust never contracts), so the two runs agree to
    // rounding although the trajectory is sensitive (a change of M in the last bit moves the
    // loss after 300 steps by 6%)
    let tol = 1e-12;
    close("initial_loss", num(&kv, "initial_loss"), f0, tol, 1.0);
    for t in 0..1500 {
        let f = mf_loss_grad(&x, &m, &mut g);
        if t % 300 == 0 {
            close(
                &format!("loss_at_{t}"),
                num(&kv, &format!("loss_at_{t}")),
                f,
                1e-6,
                1e-9,
            );
        }
        opt.step_f64(&mut x, &g).expect("step");
    }
    let f = mf_loss_grad(&x, &m, &mut g);
    assert!(f < 1e-6 * f0, "Rust run: final loss {f} vs initial {f0}");
    close("final_loss", num(&kv, "final_loss"), f, 1e-9, 0.0);
    let p = opt.matrix_preconditioner(Some(0)).expect("group 0");
    assert_eq!(kv.get("u_blocks").map(String::as_str), Some("1"));
    assert_eq!(kv.get("u_block").map(String::as_str), Some("32 4 0 32 0 4"));
    assert_eq!(kv.get("u_left_len").map(String::as_str), Some("0"));
    assert!(p.blocks[0].left.is_none());
    let right = p.blocks[0]
        .right
        .as_ref()
        .expect("tall: a right multiplier");
    assert_eq!(kv.get("u_right_len"), Some(&(MF_K * MF_K).to_string()));
    let big = right.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for i in 0..MF_K {
        for j in 0..MF_K {
            let key = format!("u_right_{i}_{j}");
            close(&key, num(&kv, &key), right[i * MF_K + j], tol, big);
        }
    }
    assert!(num(&kv, "u_right_relative_asymmetry") < 1e-9);
    assert!(
        out.contains("short_buffer PRECOND_DIMENSION_MISMATCH") && out.contains("needs 16"),
        "{out}"
    );
}

// ---------------------------------------------------------------- cpp/muon.cpp

/// The C++ Muon example redone from Rust: same losses, same left multiplier, and the wrapper's
/// exceptions carry the statuses of the C calls.
#[test]
fn cpp_muon_prints_what_rust_computes() {
    let out = run("muon", &[]);
    let kv = parse(&out);
    assert_eq!(
        kv.get("converged").map(String::as_str),
        Some("yes"),
        "{out}"
    );
    let cfg = r#"{"optimizer": "muon", "lr": 0.05, "weight_decay": 0.0, "shape": [3, 5],
                  "schedule": {"kind": "cosine", "T_max": 400}}"#;
    let mut opt = OptimizerConfig::from_json(cfg)
        .expect("config")
        .build(15)
        .expect("build");
    let t: Vec<f64> = (0..15).map(|i| (0.9 * i as f64 + 0.3).sin()).collect();
    let mut x = vec![0.0; 15];
    let loss_grad = |x: &[f64], g: &mut [f64]| -> f64 {
        let mut f = 0.0;
        for i in 0..15 {
            g[i] = x[i] - t[i];
            f += 0.5 * g[i] * g[i];
        }
        f
    };
    let mut g = vec![0.0; 15];
    let f0 = loss_grad(&x, &mut g);
    // the same operations in the same order as the C++ code (see the C factorization test)
    close("initial_loss", num(&kv, "initial_loss"), f0, 1e-14, 0.0);
    for _ in 0..400 {
        loss_grad(&x, &mut g);
        opt.step_f64(&mut x, &g).expect("step");
    }
    let f = loss_grad(&x, &mut g);
    assert!(f < 1e-3 * f0, "Rust run: {f} vs {f0}");
    close("final_loss", num(&kv, "final_loss"), f, 1e-9, 0.0);
    let p = opt.matrix_preconditioner(None).expect("top level");
    let left = p.blocks[0].left.as_ref().expect("wide: a left multiplier");
    assert!(p.blocks[0].right.is_none());
    assert_eq!(kv.get("left_len").map(String::as_str), Some("9"));
    assert_eq!(kv.get("right_len").map(String::as_str), Some("0"));
    assert_eq!(kv.get("block").map(String::as_str), Some("3 5 0 3 0 5"));
    let big = left.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (i, want) in left.iter().enumerate() {
        let key = format!("left_{i}");
        close(&key, num(&kv, &key), *want, 1e-12, big);
    }
    assert_eq!(
        kv.get("bad_block").map(String::as_str),
        Some("PRECOND_DIMENSION_MISMATCH")
    );
    assert_eq!(
        kv.get("diagonal_of_muon").map(String::as_str),
        Some("PRECOND_INVALID_ARGUMENT")
    );
}

// ---------------------------------------------------------------- c/grad_norm.c

const GN_NS: usize = 200;
const GN_D: usize = 4;
const GN_NP: usize = GN_D + 1;
const GN_STEPS: usize = 400;
const GN_RHO: f64 = 0.05;

/// The synthetic data of `c/grad_norm.c` (features scaled by `3^j`, labels of a noisy linear
/// teacher), in the C program's operation order.
fn gn_data() -> Data {
    let mut x = vec![0.0; GN_NS * GN_D];
    let mut scale = 1.0;
    for j in 0..GN_D {
        for i in 0..GN_NS {
            x[i * GN_D + j] = scale * (0.37 * i as f64 * (j + 1) as f64 + 0.5 * j as f64).sin();
        }
        scale *= 3.0;
    }
    let y = (0..GN_NS)
        .map(|i| {
            let mut z = 0.3 + 0.7 * (5.1 * i as f64 + 0.3).sin();
            let mut s = 1.0;
            for j in 0..GN_D {
                z += if j % 2 == 0 { 1.0 } else { -1.5 } * x[i * GN_D + j] / s;
                s *= 3.0;
            }
            if z > 0.0 { 1.0 } else { 0.0 }
        })
        .collect();
    Data {
        n: GN_NS,
        d: GN_D,
        x,
        y,
    }
}

/// The three trainings of `c/grad_norm.c` redone in Rust with `precond_optim` and
/// `precond_nn::{GradNormReg, fd_hvp}`: the printed losses, gradient norms and sharpness agree;
/// the failing callback is reported with its return value and changes nothing.
#[test]
fn c_grad_norm_prints_what_rust_computes() {
    use precond_nn::{GradNormMode, GradNormReg, fd_hvp};
    let out = run("grad_norm", &[]);
    let kv = parse(&out);
    let data = gn_data();
    let positives = data.y.iter().filter(|&&y| y > 0.5).count();
    assert_eq!(kv["positives"], positives.to_string());
    let mut scratch = vec![0.0; GN_NS];
    for (name, mode) in [
        ("none", None),
        ("intrinsic", Some(GradNormMode::Intrinsic)),
        ("coupled", Some(GradNormMode::Coupled)),
    ] {
        let mut opt = OptimizerConfig::from_json(r#"{"optimizer": "adam", "lr": 0.05}"#)
            .expect("config")
            .build(GN_NP)
            .expect("build");
        let mut theta = vec![0.0; GN_NP];
        let mut g = vec![0.0; GN_NP];
        let (mut pk, mut u, mut hu, mut xp, mut gm) = (
            vec![0.0; GN_NP],
            vec![0.0; GN_NP],
            vec![0.0; GN_NP],
            vec![0.0; GN_NP],
            vec![0.0; GN_NP],
        );
        let mut last_r = f64::NAN;
        let mut calls = 0usize;
        for _ in 0..GN_STEPS {
            loss_grad(&data, &theta, &mut g, &mut scratch);
            if let Some(mode) = mode {
                let reg = GradNormReg { rho: GN_RHO, mode };
                let p = (mode == GradNormMode::Intrinsic && opt.preconditioner(&mut pk).is_ok())
                    .then_some(&pk[..]);
                let th = &theta;
                let mut grad_fn = |at: &[f64], out: &mut [f64]| {
                    calls += 1;
                    let mut s = vec![0.0; GN_NS];
                    loss_grad(&data, at, out, &mut s);
                    Ok(())
                };
                last_r = reg
                    .add_gradient(
                        &mut g,
                        p,
                        |v, hv| fd_hvp(&mut grad_fn, th, v, hv, &mut xp, &mut gm),
                        &mut u,
                        &mut hu,
                    )
                    .expect("regularizer");
            }
            opt.step_f64(&mut theta, &g).expect("step");
        }
        let mut p = vec![0.0; GN_NS];
        let loss = loss_grad(&data, &theta, &mut g, &mut p);
        opt.preconditioner(&mut pk).expect("P");
        let gg: f64 = g.iter().map(|v| v * v).sum();
        let gpg: f64 = g.iter().zip(&pk).map(|(g, p)| g * p * g).sum();
        let h = logistic_hessian(&data, &p);
        let hm = MatRef::from_row_major_slice(&h, GN_NP, GN_NP);
        let spec = sym_spectrum(hm).expect("spectrum");
        let pc = precond_cond_diag(hm, &pk).expect("precond cond");
        let k = |f: &str| format!("{name}_{f}");
        close(&k("loss"), num(&kv, &k("loss")), loss, 1e-9, 0.0);
        close(&k("grad_norm2"), num(&kv, &k("grad_norm2")), gg, 1e-6, 0.0);
        close(&k("grad_pgp"), num(&kv, &k("grad_pgp")), gpg, 1e-6, 0.0);
        close(
            &k("sharpness"),
            num(&kv, &k("sharpness")),
            spec.lambda_max,
            1e-9,
            0.0,
        );
        close(
            &k("precond_sharpness"),
            num(&kv, &k("precond_sharpness")),
            pc.spectrum.lambda_max,
            1e-6,
            0.0,
        );
        assert_eq!(kv[&k("callback_calls")], calls.to_string());
        if mode.is_some() {
            assert_eq!(calls, 2 * GN_STEPS, "{name}: two gradients per step");
            close(&k("last_R"), num(&kv, &k("last_R")), last_r, 1e-6, 0.0);
        } else {
            assert!(!kv.contains_key(&k("last_R")));
        }
    }
    // the regularizers change the trajectory (and the preconditioned sharpness)
    for (a, b) in [("intrinsic", "none"), ("coupled", "intrinsic")] {
        let (la, lb) = (
            num(&kv, &format!("{a}_loss")),
            num(&kv, &format!("{b}_loss")),
        );
        assert!((la - lb).abs() > 1e-6 * lb, "{a} {la} vs {b} {lb}");
    }
    assert_eq!(kv["failing_callback_status"], "PRECOND_NUMERICAL_FAILURE");
    assert_eq!(kv["failing_callback_calls"], "1");
    assert_eq!(kv["failing_callback_untouched"], "1");
    assert!(
        kv["failing_callback_message"].contains("callback returned 3 (call 1 of 2)"),
        "{out}"
    );
}

#[test]
fn valgrind_grad_norm() {
    valgrind("grad_norm", &[]);
}

#[test]
fn sanitizers_grad_norm() {
    if let Some(out) = run_sanitized("grad_norm", &[]) {
        assert_eq!(
            out,
            run("grad_norm", &[]),
            "sanitized grad_norm prints other numbers"
        );
    }
}

// ---------------------------------------------------------------- cpp/grad_norm.cpp

/// The C++ wrapper's `precond::grad_norm_regularize` with lambdas: `∇R = 2ρ A P ∇f` to the
/// finite-difference tolerance (the program prints the deviation relative to `‖2ρ A P ∇f‖∞`:
/// rounding of the two gradients divided by `2h`, `O(ε^{2/3})`), `R = ρ gᵀ P g`, and a throwing
/// lambda coming back as a `precond::Error` with the exception nested, `g` unchanged.
#[test]
fn cpp_grad_norm_matches_the_closed_form() {
    let out = run("grad_norm_cpp", &[]);
    let kv = parse(&out);
    let tol = 64.0 * f64::EPSILON.powf(2.0 / 3.0);
    for name in ["intrinsic", "coupled", "no_optimizer"] {
        let d = num(&kv, &format!("{name}_deviation"));
        assert!(d <= tol, "{name}: deviation {d:e} > {tol:e}");
    }
    close(
        "intrinsic_R",
        num(&kv, "intrinsic_R"),
        num(&kv, "intrinsic_rho_gPg"),
        1e-14,
        0.0,
    );
    close(
        "coupled_R",
        num(&kv, "coupled_R"),
        num(&kv, "coupled_rho_gg"),
        1e-14,
        0.0,
    );
    close(
        "no_optimizer_R",
        num(&kv, "no_optimizer_R"),
        num(&kv, "coupled_rho_gg"),
        1e-14,
        0.0,
    );
    // Adam's P is not the identity here: the two regularizers differ
    let (ri, rc) = (num(&kv, "intrinsic_R"), num(&kv, "coupled_R"));
    assert!((ri - rc).abs() > 1e-3 * rc, "{ri} vs {rc}");
    assert_eq!(kv["throwing_status"], "PRECOND_NUMERICAL_FAILURE");
    assert!(kv["throwing_message"].contains("callback returned 1 (call 1 of 2)"));
    assert_eq!(kv["throwing_nested"], "objective undefined here");
    assert_eq!(kv["throwing_calls"], "1");
    assert_eq!(kv["throwing_g_unchanged"], "1");
    assert_eq!(kv["mismatch_status"], "PRECOND_DIMENSION_MISMATCH");
    assert!(!kv.contains_key("throwing_missing") && !kv.contains_key("mismatch_missing"));
}

#[test]
fn valgrind_grad_norm_cpp() {
    valgrind("grad_norm_cpp", &[]);
}

#[test]
fn sanitizers_grad_norm_cpp() {
    if let Some(out) = run_sanitized("grad_norm_cpp", &[]) {
        let (san, plain) = (parse(&out), parse(&run("grad_norm_cpp", &[])));
        // -O1 instead of -O2 may change the last bits of the printed sums: compare the facts
        for key in [
            "throwing_status",
            "throwing_nested",
            "throwing_g_unchanged",
            "mismatch_status",
        ] {
            assert_eq!(san.get(key), plain.get(key), "{key}");
        }
        for key in ["intrinsic_R", "coupled_R", "no_optimizer_R"] {
            close(key, num(&san, key), num(&plain, key), 1e-13, 0.0);
        }
    }
}

// ---------------------------------------------------------------- c/bnp_layer.c

/// The C program's JSON configurations (plain SGD; SGD with `"bnp"` on the layer's group).
const BNP_PLAIN: &str = r#"{"optimizer": "sgd", "lr": 1e-5}"#;
const BNP_BNP: &str = r#"{"optimizer": "sgd", "lr": 0.1, "groups": [{"start": 0, "end": 31, "shape": [1, 30], "bnp": true}]}"#;

/// Mean logistic loss of the rows `idx` and (with `g`) its gradient, weights then bias, with the
/// C program's operation order.
#[allow(clippy::needless_range_loop)] // the C program's loops, same order
fn bnp_loss_grad(data: &Data, idx: &[usize], theta: &[f64], mut g: Option<&mut [f64]>) -> f64 {
    let d = data.d;
    if let Some(g) = g.as_deref_mut() {
        g.fill(0.0);
    }
    let mut loss = 0.0;
    for &i in idx {
        let xi = &data.x[i * d..(i + 1) * d];
        let mut z = theta[d];
        for j in 0..d {
            z += theta[j] * xi[j];
        }
        let softplus = if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        };
        loss += softplus - data.y[i] * z;
        if let Some(g) = g.as_deref_mut() {
            let r = sigmoid(z) - data.y[i];
            for j in 0..d {
                g[j] += r * xi[j];
            }
            g[d] += r;
        }
    }
    let inv = 1.0 / idx.len() as f64;
    if let Some(g) = g {
        for v in g.iter_mut() {
            *v *= inv;
        }
    }
    loss * inv
}

/// Running mean and variance of a BNP group.
type RunningStats = (Vec<f64>, Vec<f64>);

/// The C program's training run: `(full-data loss, running (mean, var) of the BNP run)`.
fn bnp_train(data: &Data, bnp: bool, batch: usize, steps: usize) -> (f64, Option<RunningStats>) {
    let (n, d) = (data.n, data.d);
    let cfg = if bnp { BNP_BNP } else { BNP_PLAIN };
    let mut opt = OptimizerConfig::from_json(cfg)
        .expect("config")
        .build(d + 1)
        .expect("build");
    let mut theta = vec![0.0; d + 1];
    let mut g = vec![0.0; d + 1];
    let (mut mean, mut var) = (vec![0.0; d], vec![0.0; d]);
    let mut idx = vec![0usize; batch];
    for t in 0..steps {
        for (k, i) in idx.iter_mut().enumerate() {
            *i = ((t * batch + k) * 7919) % n;
        }
        if bnp {
            for j in 0..d {
                let mut s = 0.0;
                for &i in &idx {
                    s += data.x[i * d + j];
                }
                mean[j] = s / batch as f64;
                let mut v = 0.0;
                for &i in &idx {
                    let c = data.x[i * d + j] - mean[j];
                    v += c * c;
                }
                var[j] = v / batch as f64;
            }
            opt.bnp_observe(0, &mean, &var).expect("observe");
        }
        bnp_loss_grad(data, &idx, &theta, Some(&mut g));
        opt.step_f64(&mut theta, &g).expect("step");
    }
    let all: Vec<usize> = (0..n).collect();
    let loss = bnp_loss_grad(data, &all, &theta, None);
    let stats = bnp.then(|| {
        let s = opt.bnp_stats(0).expect("stats");
        (s.mean().to_vec(), s.var().to_vec())
    });
    (loss, stats)
}

/// BNP on the caller's own layer through the C ABI: the printed losses and running statistics
/// are the Rust API's (1e-9 relative), and with BNP the raw, badly scaled data (THEORY.md
/// Theorem 6) reach a lower loss in the same number of steps at batch sizes 1 and 32.
#[test]
fn c_bnp_layer_prints_what_rust_computes() {
    let data_path = breast_cancer_csv();
    let out = run("bnp_layer", &[data_path.to_str().expect("path")]);
    let kv = parse(&out);
    let data = breast_cancer();
    assert_eq!(kv.get("rows"), Some(&data.n.to_string()));
    let steps: usize = num(&kv, "steps") as usize;
    assert_eq!(steps, 600);
    close(
        "initial_loss",
        num(&kv, "initial_loss"),
        std::f64::consts::LN_2,
        1e-12,
        0.0,
    );
    let all: Vec<usize> = (0..data.n).collect();
    let f0 = bnp_loss_grad(&data, &all, &vec![0.0; data.d + 1], None);
    close("initial_loss", num(&kv, "initial_loss"), f0, 1e-15, 0.0);
    for batch in [1usize, 32] {
        let (plain, _) = bnp_train(&data, false, batch, steps);
        let (bnp, stats) = bnp_train(&data, true, batch, steps);
        let (mean, var) = stats.expect("BNP statistics");
        close(
            &format!("plain_b{batch}"),
            num(&kv, &format!("plain_b{batch}_final_loss")),
            plain,
            1e-9,
            0.0,
        );
        close(
            &format!("bnp_b{batch}"),
            num(&kv, &format!("bnp_b{batch}_final_loss")),
            bnp,
            1e-9,
            0.0,
        );
        for j in [3usize, 9] {
            let key = format!("bnp_b{batch}_running_mean_{j}");
            close(&key, num(&kv, &key), mean[j], 1e-9, 0.0);
            let key = format!("bnp_b{batch}_running_var_{j}");
            close(&key, num(&kv, &key), var[j], 1e-9, 0.0);
        }
        assert!(
            bnp < 0.5 * plain,
            "batch {batch}: BNP {bnp} vs plain {plain} after {steps} steps"
        );
    }
    assert_eq!(kv.get("bnp_lower").map(String::as_str), Some("yes"));
}

// ---------------------------------------------------------------- valgrind

#[test]
fn valgrind_quadratic() {
    valgrind("quadratic", &[]);
}

#[test]
fn valgrind_error_paths() {
    valgrind("errors", &[]);
}

#[test]
fn valgrind_lifetimes() {
    valgrind("lifetimes", &[]);
}

#[test]
fn valgrind_matrix_factorization() {
    valgrind("matrix_factorization", &[]);
}

#[test]
fn valgrind_muon() {
    valgrind("muon", &[]);
}

#[test]
fn valgrind_bnp_layer() {
    let data_path = breast_cancer_csv();
    valgrind("bnp_layer", &[data_path.to_str().expect("path"), "40"]);
}

#[test]
fn valgrind_logistic() {
    let data_path = breast_cancer_csv();
    valgrind("logistic", &[data_path.to_str().expect("path"), "5"]);
}

// ---------------------------------------------------------------- AddressSanitizer + UBSan

/// gcc flags of the sanitized build (compile and link: the Makefile does both in one command).
/// `-fno-sanitize-recover=all` makes every UBSan finding fatal even without `UBSAN_OPTIONS`.
const SANITIZE_FLAGS: &str =
    "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all";

/// Whether gcc can build and run a program with `-fsanitize=address,undefined` here (libasan
/// and libubsan installed); the compiler's complaint otherwise.
fn sanitizers_available() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sanitizer-probe");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src = dir.join("probe.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").map_err(|e| e.to_string())?;
    let exe = dir.join("probe");
    let out = Command::new("gcc")
        .args(SANITIZE_FLAGS.split(' '))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let run = Command::new(&exe)
        .output()
        .map_err(|e| format!("cannot run the probe: {e}"))?;
    if !run.status.success() {
        return Err(String::from_utf8_lossy(&run.stderr).into_owned());
    }
    Ok(())
}

/// The examples built with the sanitizers (once per test binary), `None` when the sanitizers
/// are missing and `PRECOND_SKIP_SANITIZERS=1` allows skipping; without that variable a
/// missing libasan fails the test.
fn sanitized() -> Option<&'static Built> {
    static B: OnceLock<Option<Built>> = OnceLock::new();
    B.get_or_init(|| {
        if let Err(why) = sanitizers_available() {
            let skip = std::env::var("PRECOND_SKIP_SANITIZERS").is_ok_and(|v| v == "1");
            let msg = format!(
                "gcc cannot build with -fsanitize=address,undefined (libasan/libubsan missing?):\n\
                 {why}\nInstall gcc's sanitizer runtimes (Debian: libasan8, libubsan1) or set \
                 PRECOND_SKIP_SANITIZERS=1 to skip the sanitizer runs."
            );
            assert!(skip, "{msg}");
            eprintln!("!!! SKIPPING THE SANITIZER RUNS (PRECOND_SKIP_SANITIZERS=1) !!!\n{msg}");
            return None;
        }
        let build = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-examples-sanitized");
        let libdir = lib_dir();
        make_with(
            &["-j2", "all"],
            &build,
            &libdir,
            &[
                ("CC", "gcc"),
                ("CXX", "g++"),
                ("CFLAGS", SANITIZE_FLAGS),
                ("CXXFLAGS", SANITIZE_FLAGS),
            ],
        );
        Some(Built { build, libdir })
    })
    .as_ref()
}

/// Runs the sanitized `program`; any sanitizer report (a non-zero exit, or a report on stderr)
/// fails. Returns its standard output, `None` when the sanitizer runs are skipped.
fn run_sanitized(program: &str, args: &[&str]) -> Option<String> {
    let b = sanitized()?;
    let out = Command::new(b.build.join(program))
        .args(args)
        // LeakSanitizer runs at exit; it works in this environment (not under ptrace).
        // allocator_may_return_null: a refused allocation returns NULL as glibc's malloc does
        // (errors.c checks PRECOND_OUT_OF_MEMORY for a 2^50-byte state) instead of ASan's
        // default abort
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:allocator_may_return_null=1",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .env("LSAN_OPTIONS", "report_objects=1")
        .output()
        .expect("run the sanitized example");
    // the one expected line: ASan's notice that it returned NULL for the refused 2^50-byte
    // allocation (allocator_may_return_null above); any other mention is a report
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            !(l.contains("WARNING: AddressSanitizer failed to allocate 0x4000000000000 bytes"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        out.status.success(),
        "sanitized {program} failed ({}):\n{stderr}",
        out.status
    );
    for needle in [
        "AddressSanitizer",
        "LeakSanitizer",
        "runtime error:",
        "SUMMARY:",
    ] {
        assert!(
            !stderr.contains(needle),
            "sanitized {program} reported `{needle}`:\n{stderr}"
        );
    }
    Some(String::from_utf8(out.stdout).expect("utf-8 output"))
}

#[test]
fn sanitizers_quadratic_static_and_shared() {
    let plain = run("quadratic", &[]);
    for program in ["quadratic", "quadratic_shared"] {
        if let Some(out) = run_sanitized(program, &[]) {
            assert_eq!(out, plain, "sanitized {program} prints other numbers");
        }
    }
}

#[test]
fn sanitizers_error_paths() {
    if let Some(out) = run_sanitized("errors", &[]) {
        assert!(all_checks_pass(&out) >= 80);
    }
}

#[test]
fn sanitizers_lifetimes() {
    if let Some(out) = run_sanitized("lifetimes", &[]) {
        assert_eq!(
            all_checks_pass(&out),
            all_checks_pass(&run("lifetimes", &[]))
        );
    }
}

#[test]
fn sanitizers_matrix_factorization() {
    if let Some(out) = run_sanitized("matrix_factorization", &[]) {
        let (san, plain) = (parse(&out), parse(&run("matrix_factorization", &[])));
        assert_eq!(san.get("converged").map(String::as_str), Some("yes"));
        // -O1 instead of -O2: the same operations in the same order, so the same numbers
        assert_eq!(
            san, plain,
            "sanitized matrix_factorization prints other numbers"
        );
    }
}

#[test]
fn sanitizers_muon() {
    if let Some(out) = run_sanitized("muon", &[]) {
        assert_eq!(out, run("muon", &[]), "sanitized muon prints other numbers");
    }
}

#[test]
fn sanitizers_logistic() {
    let data_path = breast_cancer_csv();
    let args = [data_path.to_str().expect("path"), "20"];
    if let Some(out) = run_sanitized("logistic", &args) {
        assert_eq!(
            out,
            run("logistic", &args),
            "sanitized logistic prints other numbers"
        );
    }
}

#[test]
fn sanitizers_bnp_layer() {
    let data_path = breast_cancer_csv();
    let args = [data_path.to_str().expect("path"), "100"];
    if let Some(out) = run_sanitized("bnp_layer", &args) {
        assert_eq!(
            out,
            run("bnp_layer", &args),
            "sanitized bnp_layer prints other numbers"
        );
    }
}

// ---------------------------------------------------------------- install + pkg-config

#[test]
fn install_and_pkg_config() {
    let b = built();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-install");
    let _ = std::fs::remove_dir_all(&tmp);
    let prefix = tmp.join("prefix");
    make(
        &["install", &format!("PREFIX={}", prefix.display())],
        &b.build,
        &b.libdir,
    );
    for f in [
        "lib/libprecond.a",
        "lib/libprecond.so",
        "include/precond.h",
        "include/precond.hpp",
        "lib/pkgconfig/precond.pc",
    ] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/precond.pc")).expect("pc");
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );
    let pkg_config = Command::new("pkg-config")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !pkg_config {
        eprintln!("pkg-config not installed: skipping the build against the installed library");
        return;
    }
    // build one example against the installed library, found through pkg-config only
    let build = tmp.join("build");
    let out = Command::new("make")
        .arg("-C")
        .arg(root().join("ffi-examples"))
        .arg(format!("BUILD={}", build.display()))
        .arg("PKG_CONFIG_PRECOND=1")
        .arg(build.join("quadratic"))
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(build.join("quadratic")).output().expect("run");
    assert!(run.status.success());
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        self::run("quadratic", &[])
    );
}
