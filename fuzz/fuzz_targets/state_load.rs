//! Bytes → `OptimizerState::from_bytes` and `Optimizer::load_state` on optimizers of every kind
//! (fresh and stepped). The bytes are tried as they are and re-sealed (the last 4 bytes replaced
//! by the CRC-32C of the rest), so mutations reach the value checks behind the checksum.
//! Invariants: no panic; a refused load leaves `state()` unchanged (bytewise); after an accepted
//! load, a step on finite gradients never panics, and when it fails it leaves parameters and
//! state unchanged; when it succeeds it wrote finite parameters (a step never writes a
//! non-finite value made from finite inputs: the reproducers in `fuzz/findings/` are refused
//! now, see `fuzz/README.md`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use precond_fuzz::{STATE_N, gradient, stepped};
use precond_optim::{Optimizer, OptimizerKind, OptimizerState};
use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<(Optimizer, Vec<u8>)>> = RefCell::new(
        OptimizerKind::ALL
            .iter()
            .flat_map(|&k| [stepped(k, 0, false), stepped(k, 3, false), stepped(k, 2, true)])
            .map(|o| {
                let b = o.save_state();
                (o, b)
            })
            .collect(),
    );
}

fn check_bytes(bytes: &[u8], pool: &mut [(Optimizer, Vec<u8>)]) {
    // `load_state` parses with `from_bytes` first: bytes that do not parse are tried on one
    // optimizer of the pool (chosen by the bytes), bytes that parse on every optimizer.
    let parsed = OptimizerState::from_bytes(bytes).ok();
    if let Some(st) = &parsed {
        let again = st.to_bytes();
        let st2 = OptimizerState::from_bytes(&again).expect("a parsed state re-parses");
        assert_eq!(st2.to_bytes(), again, "to_bytes/from_bytes round trip");
    }
    let pick = bytes
        .iter()
        .fold(bytes.len(), |h, &b| h.wrapping_mul(31) ^ usize::from(b));
    let len = pool.len();
    for (i, (opt, original)) in pool.iter_mut().enumerate() {
        if parsed.is_none() && i != pick % len {
            continue;
        }
        // the pool is always back at `original` here (restored after every accepted load)
        match opt.load_state(bytes) {
            Err(_) => {
                assert_eq!(
                    &opt.save_state(),
                    original,
                    "a refused load changed the state"
                );
            }
            Ok(()) => {
                assert!(
                    parsed.is_some(),
                    "load_state accepted bytes from_bytes refuses"
                );
                let loaded = opt.save_state();
                let mut x = vec![0.5f64; STATE_N];
                match opt.step_f64(&mut x, &gradient(STATE_N, 7)) {
                    Ok(_) => assert!(
                        x.iter().all(|v| v.is_finite()),
                        "a step after an accepted load wrote {x:?}"
                    ),
                    Err(_) => {
                        assert!(x.iter().all(|&v| v == 0.5), "a failed step wrote {x:?}");
                        assert_eq!(opt.save_state(), loaded, "a failed step changed the state");
                    }
                }
                opt.load_state(original)
                    .expect("the original state reloads");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    POOL.with_borrow_mut(|pool| {
        check_bytes(data, pool);
        if data.len() >= 4 {
            let body = &data[..data.len() - 4];
            let mut sealed = body.to_vec();
            sealed.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
            if sealed != data {
                check_bytes(&sealed, pool);
            }
        }
    });
});
