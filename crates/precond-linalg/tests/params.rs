//! The `*Params` structs: the plain functions equal their `*_with_params` variants at the
//! defaults, a tuned value reaches the algorithm it names (the forced two-stage path equals
//! [`kernel`]'s routine bit for bit), and invalid values are typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use precond_linalg::kernel::{singular_values_two_stage, sym_eigenvalues_two_stage};
use precond_linalg::*;

#[test]
fn defaults_are_the_documented_values() {
    // the two-stage crossovers as measured per CPU family (BENCHMARKS.md)
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    // the CPU vendor, read independently of the library: "AuthenticAMD"
    #[cfg(target_arch = "x86_64")]
    let amd = {
        let r = std::arch::x86_64::__cpuid(0);
        let mut v = Vec::new();
        for w in [r.ebx, r.edx, r.ecx] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v == b"AuthenticAMD"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let amd = false;
    let (sym_min, svd_min, cond2_min) = if avx512 {
        if amd {
            (2400, 256, 1000)
        } else {
            (4000, 256, 500)
        }
    } else {
        (1800, 1280, 1280)
    };
    let s = SymSpectrumParams::default();
    assert_eq!((s.two_stage_min_n, s.band_width), (sym_min, 32));
    let v = SvdParams::default();
    assert_eq!((v.two_stage_min_n, v.band_width), (svd_min, 32));
    let c = Cond2Params::default();
    assert_eq!(c.rank_rtol_factor.to_bits(), 1.0f64.to_bits());
    assert_eq!((c.svd.two_stage_min_n, c.svd.band_width), (cond2_min, 32));
    let k = SymCondParams::default();
    assert_eq!((k.krylov_min_n, k.max_iter), (256, 400));
    assert_eq!(k.rel_tol.to_bits(), 1e-11f64.to_bits());
    assert_eq!(k.spectrum, s);
}

#[test]
fn plain_functions_use_the_defaults() {
    let h = random_spd(40, 0.1, 3);
    let a = random_mat(30, 20, 4);
    assert_eq!(
        sym_spectrum(h.as_ref()).unwrap(),
        sym_spectrum_with_params(
            h.as_ref(),
            default_spectrum_rel_tol(40),
            &SymSpectrumParams::default()
        )
        .unwrap()
    );
    assert_eq!(
        sym_extremes(h.as_ref()).unwrap(),
        sym_extremes_with_params(h.as_ref(), &SymSpectrumParams::default()).unwrap()
    );
    assert_eq!(
        cond2(a.as_ref()).unwrap(),
        cond2_with_params(a.as_ref(), &Cond2Params::default()).unwrap()
    );
    assert_eq!(
        singular_values(a.as_ref()).unwrap(),
        singular_values_with_params(a.as_ref(), &SvdParams::default()).unwrap()
    );
    assert_eq!(
        sym_cond(h.as_ref()).unwrap().to_bits(),
        sym_cond_with_params(h.as_ref(), &SymCondParams::default())
            .unwrap()
            .to_bits()
    );
}

#[test]
fn tuned_values_reach_the_algorithm() {
    let eigs: Vec<f64> = (0..60).map(|i| 1.0 + i as f64 / 7.0).collect();
    let h = sym_with_eigs(&eigs, 5);
    let mut sp = SymSpectrumParams::default();
    sp.two_stage_min_n = 0;
    sp.band_width = 5;
    let forced = sym_spectrum_with_params(h.as_ref(), default_spectrum_rel_tol(60), &sp).unwrap();
    assert_eq!(
        forced.eigenvalues,
        sym_eigenvalues_two_stage(h.as_ref(), 5).unwrap()
    );
    let ext = sym_extremes_with_params(h.as_ref(), &sp).unwrap();
    assert!(rel_err(ext.lambda_min, 1.0) <= 64.0 * EPS * 60.0);
    assert!(rel_err(ext.lambda_max, eigs[59]) <= 64.0 * EPS * 60.0);

    let a = random_mat(50, 35, 6);
    let mut sv = SvdParams::default();
    sv.two_stage_min_n = 1;
    sv.band_width = 4;
    assert_eq!(
        singular_values_with_params(a.as_ref(), &sv).unwrap(),
        singular_values_two_stage(a.as_ref(), 4).unwrap()
    );

    // a rank threshold above σ_min/σ_max declares the matrix rank deficient
    let c = cond2(a.as_ref()).unwrap();
    let mut cp = Cond2Params::default();
    cp.rank_rtol_factor = 2.0 / (c.kappa * 50.0 * EPS);
    let r = cond2_with_params(a.as_ref(), &cp).unwrap();
    assert!(r.rank_deficient && r.kappa.is_infinite());

    // the dense path of sym_cond (Krylov path switched off) agrees with the spectrum
    let mut kp = SymCondParams::default();
    kp.krylov_min_n = usize::MAX;
    kp.spectrum = sp;
    let kappa = sym_cond_with_params(h.as_ref(), &kp).unwrap();
    assert!(rel_err(kappa, eigs[59]) <= 1e-12);
}

#[test]
fn invalid_values_are_errors() {
    let h = random_spd(8, 0.1, 7);
    let bad = |r: Result<()>, name: &str| match r {
        Err(LinalgError::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected InvalidArgument {{ {name} }}, got {other:?}"),
    };
    let mut sp = SymSpectrumParams::default();
    sp.band_width = 0;
    bad(
        sym_spectrum_with_params(h.as_ref(), 1e-12, &sp).map(|_| ()),
        "band_width",
    );
    bad(
        sym_extremes_with_params(h.as_ref(), &sp).map(|_| ()),
        "band_width",
    );
    let mut sv = SvdParams::default();
    sv.band_width = 0;
    bad(
        singular_values_with_params(h.as_ref(), &sv).map(|_| ()),
        "band_width",
    );
    let mut cp = Cond2Params::default();
    cp.rank_rtol_factor = -1.0;
    bad(
        cond2_with_params(h.as_ref(), &cp).map(|_| ()),
        "rank_rtol_factor",
    );
    cp.rank_rtol_factor = f64::NAN;
    bad(
        cond2_with_params(h.as_ref(), &cp).map(|_| ()),
        "rank_rtol_factor",
    );
    let mut kp = SymCondParams::default();
    kp.rel_tol = 0.0;
    bad(sym_cond_with_params(h.as_ref(), &kp).map(|_| ()), "rel_tol");
    kp = SymCondParams::default();
    kp.max_iter = 0;
    bad(
        sym_cond_with_params(h.as_ref(), &kp).map(|_| ()),
        "max_iter",
    );
    kp = SymCondParams::default();
    kp.spectrum.band_width = 0;
    bad(
        sym_cond_with_params(h.as_ref(), &kp).map(|_| ()),
        "band_width",
    );
}

/// The routines that hand themselves to the rayon pool (`pool::on_pool`) give the same bits
/// whether called from outside the pool (one hand-off) or from a worker (run in place): the
/// hand-off moves the work, it never changes the arithmetic (sizes past every two-thread
/// threshold: the matrix–vector products, the split trailing update, the LU and the
/// bidiagonalization on two threads, the two-stage paths).
#[test]
fn results_do_not_depend_on_the_calling_thread() {
    let h = random_spd(820, 0.1, 21);
    let a = random_mat(760, 740, 22);
    let mut two = SymSpectrumParams::default();
    two.two_stage_min_n = 1;
    let outside = (
        sym_spectrum(h.as_ref()).unwrap(),
        sym_spectrum_with_params(h.as_ref(), 1e-12, &two).unwrap(),
        cond2(a.as_ref()).unwrap(),
        cond_estimate_lu(h.as_ref()).unwrap(),
    );
    let inside = rayon::scope(|_| {
        (
            sym_spectrum(h.as_ref()).unwrap(),
            sym_spectrum_with_params(h.as_ref(), 1e-12, &two).unwrap(),
            cond2(a.as_ref()).unwrap(),
            cond_estimate_lu(h.as_ref()).unwrap(),
        )
    });
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&outside.0.eigenvalues), bits(&inside.0.eigenvalues));
    assert_eq!(bits(&outside.1.eigenvalues), bits(&inside.1.eigenvalues));
    assert_eq!(
        bits(&[outside.2.sigma_max, outside.2.sigma_min]),
        bits(&[inside.2.sigma_max, inside.2.sigma_min])
    );
    assert_eq!(
        outside.3.kappa1_estimate.to_bits(),
        inside.3.kappa1_estimate.to_bits()
    );
}
