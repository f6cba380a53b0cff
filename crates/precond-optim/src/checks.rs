//! Range checks shared by the configuration and the optimizer kinds; errors name the key.

use crate::error::{OptimError, Result};

pub(crate) fn check_lr(key: &str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::config(
            key,
            format!("must be finite and ≥ 0, got {lr}"),
        ))
    }
}

/// `eps` of the adaptive rules: finite and positive.
pub(crate) fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(OptimError::config(
            "eps",
            format!("must be finite and > 0, got {eps}"),
        ))
    }
}

/// `power` of the adaptive rules: in `(0, 1]`.
pub(crate) fn check_power(power: f64) -> Result<()> {
    if power > 0.0 && power <= 1.0 {
        Ok(())
    } else {
        Err(OptimError::config(
            "power",
            format!("must be in (0, 1], got {power}"),
        ))
    }
}

/// A value that must be finite and `≥ 0`.
pub(crate) fn check_nonneg(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(OptimError::config(
            key,
            format!("must be finite and ≥ 0, got {v}"),
        ))
    }
}

/// torch SGD's momentum arguments: `momentum ≥ 0`, `dampening ∈ [0, 1]`, Nesterov only with a
/// momentum and no dampening.
pub(crate) fn check_heavy_ball(momentum: f64, dampening: f64, nesterov: bool) -> Result<()> {
    check_nonneg("momentum", momentum)?;
    if !(dampening.is_finite() && (0.0..=1.0).contains(&dampening)) {
        return Err(OptimError::config(
            "dampening",
            format!("must be in [0, 1], got {}", dampening),
        ));
    }
    if nesterov && (momentum <= 0.0 || dampening != 0.0) {
        return Err(OptimError::config(
            "nesterov",
            "Nesterov momentum requires a momentum > 0 and zero dampening",
        ));
    }
    Ok(())
}
