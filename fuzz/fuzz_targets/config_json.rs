//! Bytes → `OptimizerConfig::from_json`; a parsed config is built for a few small sizes and
//! stepped on finite gradients. Invariants: no panic (every error typed); a failed step leaves
//! the parameters unchanged; an accepted config round-trips through `to_json`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use precond_fuzz::gradient;
use precond_optim::OptimizerConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = OptimizerConfig::from_json(text) else {
        return;
    };
    let back = OptimizerConfig::from_json(&cfg.to_json()).expect("to_json re-parses");
    assert_eq!(back.to_json(), cfg.to_json(), "JSON round trip");
    for n in [1usize, 2, 4] {
        let Ok(mut opt) = cfg.build(n) else {
            continue;
        };
        let mut x = vec![1.0f64; n];
        for s in 0..3 {
            let before = x.clone();
            if opt.step_f64(&mut x, &gradient(n, s)).is_err() {
                assert_eq!(
                    x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    before.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "a failed step wrote the parameters"
                );
                break;
            }
        }
    }
});
