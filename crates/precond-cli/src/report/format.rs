//! Number formatting shared by the page and the tests that match it against `results.json`.

/// Formats a number with 4 significant digits: plain notation for `1e-3 ≤ |v| < 1e5`,
/// scientific otherwise (`1.235e-7`), `∞`/`−∞` for infinities, `NaN`. Integers below `1e5`
/// print without decimals.
// Exact comparisons below test for exact zero and exact integers, which is what is meant.
#[allow(clippy::float_cmp)]
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if v == v.trunc() && a < 1e5 {
        return format!("{v:.0}");
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.3e}");
        // 1.500e-7 → 1.5e-7
        if let Some((m, e)) = s.split_once('e') {
            let m = if m.contains('.') {
                m.trim_end_matches('0').trim_end_matches('.')
            } else {
                m
            };
            return format!("{m}e{e}");
        }
        return s;
    }
    let digits = a.log10().floor() as i32;
    let decimals = (3 - digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_num;

    #[test]
    fn four_significant_digits() {
        assert_eq!(fmt_num(0.998_012), "0.998");
        assert_eq!(fmt_num(12_345.6), "12346");
        assert_eq!(fmt_num(1.5e-7), "1.5e-7");
        assert_eq!(fmt_num(-2.0), "-2");
        assert_eq!(fmt_num(123_456.0), "1.235e5");
        assert_eq!(fmt_num(f64::INFINITY), "∞");
        assert_eq!(fmt_num(4.567_89), "4.568");
    }
}
