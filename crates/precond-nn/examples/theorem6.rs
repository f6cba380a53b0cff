//! Theorem 6 on the bundled real data sets: κ of the extended data matrix raw, centred,
//! standardized, min-max, and the Van der Sluis bound `sqrt(d + 1) κ(D_0 X̄)`.
//!
//! Run: `cargo run -p precond-nn --example theorem6`

use precond_nn::{BUILTIN_DATASETS, DataConditioning, Dataset};

fn main() -> precond_nn::Result<()> {
    println!(
        "{:<14} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "data set", "d", "raw", "centred", "standard", "min-max", "κ(D0 X̄)", "sqrt(d+1)κ"
    );
    for name in BUILTIN_DATASETS {
        let ds = Dataset::builtin(name)?;
        // digits has constant pixels: drop them (they make every extended matrix singular)
        let x = ds.x;
        let keep: Vec<usize> = (0..x.nrows())
            .filter(|&r| (0..x.ncols()).any(|c| (x[(r, c)] - x[(r, 0)]).abs() > 0.0))
            .collect();
        let x = faer::Mat::from_fn(keep.len(), x.ncols(), |r, c| x[(keep[r], c)]);
        let dc = DataConditioning::of(x.as_ref())?;
        println!(
            "{:<14} {:>4} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e} {:>12.3e}",
            name,
            x.nrows(),
            dc.raw,
            dc.centred,
            dc.standardized,
            dc.min_max,
            dc.van_der_sluis,
            dc.sqrt_d1 * dc.van_der_sluis
        );
    }
    Ok(())
}
