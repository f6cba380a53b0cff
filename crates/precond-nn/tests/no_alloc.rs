//! A training step with a reused [`Workspace`] performs no heap allocation: a counting global
//! allocator wraps the system allocator and every step after the first (which sizes the
//! workspace) must leave the count unchanged, for plain, BatchNorm (post- and pre-activation,
//! full and constant-statistics backward) and LayerNorm (vector, scalar, none) networks, with
//! the last partial mini-batch of an epoch in between full ones.
//!
//! Only allocations made by the threads of the rayon pools the tests build count (a
//! const-initialized thread-local marks them, cleared when the thread leaves the pool):
//! libtest's main thread, which formats the result of the previous test at any moment a loaded
//! machine lets it, and the exiting threads of the previous test's pool are not observed. The tests of
//! this binary also hold one lock so that no other test's pool allocates concurrently.

mod common;

use common::{randn, random_targets};
use precond_nn::*;
use precond_optim::OptimizerConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Held by every test of this binary: the allocation counter is global.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// Set on the worker threads of [`pool`]'s pools: only their allocations count
    /// (const-initialized, so reading it never allocates).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// A rayon pool of `threads` workers whose allocations are counted while armed. A worker
/// stops counting when it leaves rayon's loop: the pool of the previous test is dropped, and its
/// threads exit at any moment later, freeing their thread-locals (crossbeam-epoch pushes the
/// thread's garbage bag to the global queue then, one 2 KB allocation); that is not the current
/// test's step (a CI run caught it once, counted in the next test's first step).
fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| COUNTED.with(|c| c.set(true)))
        .exit_handler(|_| COUNTED.with(|c| c.set(false)))
        .build()
        .expect("pool")
}

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

fn record(bytes: usize) {
    if ARMED.load(Ordering::Relaxed) && COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to `System`; only counts when armed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Number of heap allocations (alloc, alloc_zeroed, realloc) made while running `f`, and their
/// total size in bytes.
fn count_allocs<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let out = f();
    ARMED.store(false, Ordering::SeqCst);
    (
        out,
        ALLOCS.load(Ordering::SeqCst),
        BYTES.load(Ordering::SeqCst),
    )
}

fn variants() -> Vec<(&'static str, Normalization, Activation, Loss)> {
    let bn = BatchNormSpec::default();
    let ln = LayerNormSpec::default();
    vec![
        (
            "plain relu softmax",
            Normalization::None,
            Activation::Relu,
            Loss::SoftmaxCrossEntropy,
        ),
        (
            "plain tanh mse",
            Normalization::None,
            Activation::Tanh,
            Loss::Mse,
        ),
        (
            "batchnorm post",
            Normalization::BatchNorm(bn),
            Activation::Relu,
            Loss::SoftmaxCrossEntropy,
        ),
        (
            "batchnorm pre, constant statistics",
            Normalization::BatchNorm(BatchNormSpec {
                placement: Placement::PreActivation,
                stats_gradient: StatsGradient::Constant,
                ..bn
            }),
            Activation::Softplus,
            Loss::BceWithLogits,
        ),
        (
            "layernorm vector",
            Normalization::LayerNorm(ln),
            Activation::Relu,
            Loss::SoftmaxCrossEntropy,
        ),
        (
            "layernorm scalar pre",
            Normalization::LayerNorm(LayerNormSpec {
                placement: Placement::PreActivation,
                affine: LayerNormAffine::Scalar,
                ..ln
            }),
            Activation::Sigmoid,
            Loss::Mse,
        ),
        (
            "layernorm none",
            Normalization::LayerNorm(LayerNormSpec {
                affine: LayerNormAffine::None,
                ..ln
            }),
            Activation::Tanh,
            Loss::SoftmaxCrossEntropy,
        ),
    ]
}

/// Runs the steps of every variant; returns, per variant and step, the allocations and bytes.
fn run_steps(check: impl Fn(&str, usize, usize, usize, usize)) {
    // batch sizes of an epoch of 2·256 + 77 samples, then the next epoch; 1437 (the digits
    // training set) last, large enough for the parallel matrix products
    let sizes = [256usize, 256, 77, 256, 256, 77, 1437, 77, 1437];
    for (name, norm, act, loss) in variants() {
        let k = if loss == Loss::BceWithLogits { 1 } else { 10 };
        let mut mlp =
            Mlp::new(MlpConfig::feedforward(64, &[128, 128], act, norm, k, loss)).expect("net");
        let mut params = mlp.init_params(1);
        let mut grad = vec![0.0; params.len()];
        let mut opt = OptimizerConfig::adam(1e-3)
            .build(params.len())
            .expect("optimizer");
        let batches: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| (randn(64, b, i as u64), random_targets(loss, k, b, i as u64)))
            .collect();
        let mut ws = Workspace::new();
        let mut step = |mlp: &mut Mlp, (x, y): &(faer::Mat<f64>, Targets)| {
            let loss = mlp
                .loss_and_grad_into(&params, x.as_ref(), y, Mode::Train, &mut ws, &mut grad)
                .expect("step");
            opt.step_f64(&mut params, &grad).expect("optimizer step");
            mlp.update_running_stats(ws.forward()).expect("running");
            loss
        };
        // the first full batch and the largest one size the workspace
        step(&mut mlp, &batches[0]);
        step(&mut mlp, &batches[6]);
        for (i, batch) in batches.iter().enumerate() {
            let (loss, allocs, bytes) = count_allocs(|| step(&mut mlp, batch));
            assert!(loss.is_finite(), "{name}: loss {loss}");
            check(name, i, sizes[i], allocs, bytes);
        }
    }
}

#[test]
fn training_steps_with_a_workspace_do_not_allocate() {
    let _serial = serial();
    // one thread: the matrix products take faer's sequential kernels, and nothing allocates
    let pool = pool(1);
    pool.install(|| {
        run_steps(|name, i, batch, allocs, bytes| {
            assert_eq!(
                allocs, 0,
                "{name}: {allocs} allocations ({bytes} bytes) in step {i} (batch {batch})"
            );
        });
    });
}

#[test]
fn a_reserved_workspace_does_not_allocate_on_the_first_step() {
    let _serial = serial();
    let pool = pool(1);
    pool.install(|| {
        for (name, norm, act, loss) in variants() {
            let k = if loss == Loss::BceWithLogits { 1 } else { 10 };
            let mut mlp =
                Mlp::new(MlpConfig::feedforward(64, &[128, 128], act, norm, k, loss)).expect("net");
            let params = mlp.init_params(2);
            let mut grad = vec![0.0; params.len()];
            let mut ws = Workspace::new();
            ws.reserve(&mlp, 300);
            for b in [300, 17, 300] {
                let (x, y) = (randn(64, b, 7), random_targets(loss, k, b, 7));
                let (_, allocs, bytes) = count_allocs(|| {
                    mlp.loss_and_grad_into(
                        &params,
                        x.as_ref(),
                        &y,
                        Mode::Train,
                        &mut ws,
                        &mut grad,
                    )
                    .expect("step");
                    mlp.update_running_stats(ws.forward()).expect("running");
                });
                assert_eq!(
                    allocs, 0,
                    "{name}: {allocs} allocations ({bytes} bytes), batch {b}"
                );
                assert_eq!(ws.batch_size(), b);
            }
        }
    });
}

#[test]
fn parallel_training_steps_do_not_allocate() {
    let _serial = serial();
    // two threads: the matrix products are split over the threads by rayon joins of sequential
    // faer products (no job tables), so a step allocates nothing on either thread
    let pool = pool(2);
    // faer's product kernel sizes a packing buffer per thread on its first product there: every
    // thread of the pool makes one before counting starts, so that a worker which stole no work
    // during the first (uncounted) step does not allocate it in a counted one
    pool.broadcast(|_| {
        let a = faer::Mat::<f64>::from_fn(128, 256, |i, j| (i + j) as f64);
        let mut c = faer::Mat::<f64>::zeros(128, 128);
        faer::linalg::matmul::matmul(
            c.as_mut(),
            faer::Accum::Replace,
            a.as_ref(),
            a.transpose(),
            1.0,
            faer::Par::Seq,
        );
        std::hint::black_box(&c);
    });
    pool.install(|| {
        run_steps(|name, i, batch, allocs, bytes| {
            assert_eq!(
                allocs, 0,
                "{name}: {allocs} allocations, {bytes} bytes in step {i} (batch {batch})"
            );
        });
    });
}

#[test]
fn workspace_results_equal_the_allocating_path() {
    let _serial = serial();
    // same numbers whether the workspace is fresh, reused after a larger batch, or absent
    for (name, norm, act, loss) in variants() {
        let k = if loss == Loss::BceWithLogits { 1 } else { 3 };
        let mlp = Mlp::new(MlpConfig::feedforward(5, &[7, 6], act, norm, k, loss)).expect("net");
        let params = mlp.init_params(3);
        let n = params.len();
        let mut ws = Workspace::new();
        let (xl, yl) = (randn(5, 40, 9), random_targets(loss, k, 40, 9));
        let mut g = vec![0.0; n];
        mlp.loss_and_grad_into(&params, xl.as_ref(), &yl, Mode::Train, &mut ws, &mut g)
            .expect("large batch");
        let (x, y) = (randn(5, 11, 4), random_targets(loss, k, 11, 4));
        let reference = {
            let mut g = vec![0.0; n];
            let ev = mlp
                .loss_and_grad(&params, x.as_ref(), &y, Mode::Train, &mut g)
                .expect("allocating path");
            (ev.loss, g, ev.forward.output().to_owned())
        };
        let l = mlp
            .loss_and_grad_into(&params, x.as_ref(), &y, Mode::Train, &mut ws, &mut g)
            .expect("reused workspace");
        assert!(
            (l - reference.0).abs() <= 1e-14 * (1.0 + l.abs()),
            "{name}: loss {l} vs {}",
            reference.0
        );
        for (a, b) in g.iter().zip(&reference.1) {
            assert!(
                (a - b).abs() <= 1e-13 * (1.0 + b.abs()),
                "{name}: gradient {a} vs {b}"
            );
        }
        let out = ws.forward().output();
        assert_eq!((out.nrows(), out.ncols()), (k, 11));
        // backward_into agrees with backward and returns dL/dx
        let d_out = randn(k, 11, 5);
        let fwd = mlp.forward(&params, x.as_ref(), Mode::Train).expect("fwd");
        let mut g1 = vec![0.0; n];
        let dx1 = mlp
            .backward(&params, &fwd, d_out.as_ref(), &mut g1)
            .expect("backward");
        mlp.forward_into(&params, x.as_ref(), Mode::Train, &mut ws)
            .expect("forward_into");
        let mut g2 = vec![0.0; n];
        let dx2 = mlp
            .backward_into(&params, d_out.as_ref(), &mut ws, &mut g2)
            .expect("backward_into")
            .to_owned();
        assert_eq!((dx2.nrows(), dx2.ncols()), (5, 11));
        for (a, b) in g1.iter().zip(&g2) {
            assert!(
                (a - b).abs() <= 1e-13 * (1.0 + b.abs()),
                "{name}: {a} vs {b}"
            );
        }
        for c in 0..11 {
            for r in 0..5 {
                let (a, b) = (dx1[(r, c)], dx2[(r, c)]);
                assert!(
                    (a - b).abs() <= 1e-13 * (1.0 + b.abs()),
                    "{name}: dx {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn workspace_errors_are_typed() {
    let _serial = serial();
    let mlp = Mlp::new(MlpConfig::feedforward(
        4,
        &[6],
        Activation::Relu,
        Normalization::BatchNorm(BatchNormSpec::default()),
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("net");
    let params = mlp.init_params(0);
    let mut grad = vec![0.0; params.len()];
    let mut ws = Workspace::new();
    let y = random_targets(Loss::SoftmaxCrossEntropy, 3, 5, 0);
    // wrong input rows, wrong gradient length, wrong number of targets
    let bad_x = randn(3, 5, 0);
    assert!(matches!(
        mlp.loss_and_grad_into(&params, bad_x.as_ref(), &y, Mode::Train, &mut ws, &mut grad),
        Err(NnError::DimensionMismatch { .. })
    ));
    let x = randn(4, 5, 0);
    assert!(matches!(
        mlp.loss_and_grad_into(
            &params,
            x.as_ref(),
            &y,
            Mode::Train,
            &mut ws,
            &mut grad[1..]
        ),
        Err(NnError::DimensionMismatch { .. })
    ));
    let x6 = randn(4, 6, 0);
    assert!(matches!(
        mlp.loss_and_grad_into(&params, x6.as_ref(), &y, Mode::Train, &mut ws, &mut grad),
        Err(NnError::DimensionMismatch { .. })
    ));
    // backward_into before any forward pass, and with a d_out of the wrong shape
    let d_out = randn(3, 5, 1);
    assert!(matches!(
        mlp.backward_into(&params, d_out.as_ref(), &mut ws, &mut grad),
        Err(NnError::DimensionMismatch { .. })
    ));
    mlp.forward_into(&params, x.as_ref(), Mode::Train, &mut ws)
        .expect("forward");
    let d_bad = randn(3, 4, 1);
    assert!(matches!(
        mlp.backward_into(&params, d_bad.as_ref(), &mut ws, &mut grad),
        Err(NnError::DimensionMismatch { .. })
    ));
    // a workspace filled by another network is re-sized, not misread
    let other = Mlp::new(MlpConfig::feedforward(
        4,
        &[2, 9],
        Activation::Tanh,
        Normalization::LayerNorm(LayerNormSpec::default()),
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("other net");
    let po = other.init_params(0);
    let mut go = vec![0.0; po.len()];
    other
        .loss_and_grad_into(&po, x.as_ref(), &y, Mode::Train, &mut ws, &mut go)
        .expect("other network");
    assert!(matches!(
        mlp.backward_into(&params, d_out.as_ref(), &mut ws, &mut grad),
        Err(NnError::DimensionMismatch { .. })
    ));
    let l = mlp
        .loss_and_grad_into(&params, x.as_ref(), &y, Mode::Train, &mut ws, &mut grad)
        .expect("back to the first network");
    assert!(l.is_finite());
    // a trace of a network with the same widths but another normalization (LayerNorm, or
    // BatchNorm placed before the activation), or with another width, gives an error, not a
    // panic or a wrong gradient
    let mut mlp = mlp;
    for norm in [
        Normalization::LayerNorm(LayerNormSpec::default()),
        Normalization::BatchNorm(BatchNormSpec {
            placement: Placement::PreActivation,
            ..BatchNormSpec::default()
        }),
    ] {
        let twin = Mlp::new(MlpConfig::feedforward(
            4,
            &[6],
            Activation::Relu,
            norm,
            3,
            Loss::SoftmaxCrossEntropy,
        ))
        .expect("twin");
        let fwd = twin
            .forward(&twin.init_params(0), x.as_ref(), Mode::Train)
            .expect("twin forward");
        assert!(matches!(
            mlp.backward(&params, &fwd, d_out.as_ref(), &mut grad),
            Err(NnError::DimensionMismatch {
                what: "forward trace normalizations vs network",
                ..
            })
        ));
        assert!(matches!(
            mlp.update_running_stats(&fwd),
            Err(NnError::DimensionMismatch { .. })
        ));
    }
    let wider = Mlp::new(MlpConfig::feedforward(
        4,
        &[7],
        Activation::Relu,
        Normalization::BatchNorm(BatchNormSpec::default()),
        3,
        Loss::SoftmaxCrossEntropy,
    ))
    .expect("wider");
    let fwd = wider
        .forward(&wider.init_params(0), x.as_ref(), Mode::Train)
        .expect("wider forward");
    assert!(matches!(
        mlp.backward(&params, &fwd, d_out.as_ref(), &mut grad),
        Err(NnError::DimensionMismatch {
            what: "forward trace z shape",
            ..
        })
    ));
}

#[test]
fn bnp_observe_and_precondition_do_not_allocate() {
    let _serial = serial();
    let pool = pool(1);
    pool.install(|| {
        let loss = Loss::SoftmaxCrossEntropy;
        let mlp = Mlp::new(MlpConfig::feedforward(
            64,
            &[32, 32],
            Activation::Tanh,
            Normalization::None,
            10,
            loss,
        ))
        .expect("net");
        let mut params = mlp.init_params(2);
        let mut grad = vec![0.0; params.len()];
        let mut opt = OptimizerConfig::sgd(0.01, 0.9)
            .build(params.len())
            .expect("optimizer");
        let mut bnp = Bnp::new(&mlp, precond_optim::BnpSpec::default()).expect("bnp");
        let mut ws = Workspace::new();
        // batch sizes 1 (variance 0), 16 and 77, the largest first to size the buffers
        let batches: Vec<_> = [77usize, 1, 16, 77, 1]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                (
                    randn(64, b, 50 + i as u64),
                    random_targets(loss, 10, b, i as u64),
                )
            })
            .collect();
        let mut step = |(x, y): &(faer::Mat<f64>, Targets)| {
            let l = mlp
                .loss_and_grad_into(&params, x.as_ref(), y, Mode::Train, &mut ws, &mut grad)
                .expect("step");
            bnp.observe(&mlp, ws.forward()).expect("observe");
            bnp.precondition(&mlp, &mut grad).expect("precondition");
            opt.step_f64(&mut params, &grad).expect("optimizer step");
            l
        };
        step(&batches[0]);
        for (i, batch) in batches.iter().enumerate() {
            let (l, allocs, bytes) = count_allocs(|| step(batch));
            assert!(l.is_finite());
            assert_eq!(
                allocs, 0,
                "{allocs} allocations ({bytes} bytes) in BNP step {i}"
            );
        }
    });
}
