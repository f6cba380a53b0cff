//! Elementwise activations `σ` of the network (14) `h^ℓ = σ(W^ℓ h^{ℓ−1} + b^ℓ)`, with their first
//! and second derivatives (the second derivative feeds `D = diag(ℓ_n'')` of Theorem 5).

use serde::{Deserialize, Serialize};

/// An elementwise activation function.
///
/// Conventions at kinks: ReLU has `σ'(0) = 0` (as torch). Sigmoid and softplus are evaluated in
/// overflow-free forms (`softplus(z) = max(z, 0) + ln(1 + e^{−|z|})`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `σ(z) = z`.
    Identity,
    /// `σ(z) = max(z, 0)`.
    Relu,
    /// `σ(z) = tanh z`.
    Tanh,
    /// `σ(z) = 1/(1 + e^{−z})`.
    Sigmoid,
    /// `σ(z) = ln(1 + e^z)`.
    Softplus,
}

/// Numerically stable logistic function `1/(1 + e^{−z})`.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Numerically stable `ln(1 + e^z)`.
#[inline]
pub fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

impl Activation {
    /// All activations, for parameterized tests.
    pub const ALL: [Activation; 5] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
    ];

    /// `σ(z)`.
    #[inline]
    pub fn value(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::Tanh => z.tanh(),
            Activation::Sigmoid => sigmoid(z),
            Activation::Softplus => softplus(z),
        }
    }

    /// `σ'(z)`.
    #[inline]
    pub fn derivative(self, z: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => {
                let t = z.tanh();
                1.0 - t * t
            }
            Activation::Sigmoid => {
                let s = sigmoid(z);
                s * (1.0 - s)
            }
            Activation::Softplus => sigmoid(z),
        }
    }

    /// `σ''(z)` (zero for identity and, away from the kink, for ReLU).
    #[inline]
    pub fn second_derivative(self, z: f64) -> f64 {
        match self {
            Activation::Identity | Activation::Relu => 0.0,
            Activation::Tanh => {
                let t = z.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            Activation::Sigmoid => {
                let s = sigmoid(z);
                s * (1.0 - s) * (1.0 - 2.0 * s)
            }
            Activation::Softplus => {
                let s = sigmoid(z);
                s * (1.0 - s)
            }
        }
    }

    /// `dst = σ(src)` elementwise (the `match` is hoisted out of the loop so each arm
    /// vectorizes). `dst` and `src` have the same length.
    #[inline]
    pub(crate) fn apply_slice(self, src: &[f64], dst: &mut [f64]) {
        match self {
            Activation::Identity => dst.copy_from_slice(src),
            Activation::Relu => dst.iter_mut().zip(src).for_each(|(o, &z)| *o = z.max(0.0)),
            _ => dst
                .iter_mut()
                .zip(src)
                .for_each(|(o, &z)| *o = self.value(z)),
        }
    }

    /// `d ← d ⊙ σ'(u)` elementwise (the chain rule through the activation), `match` hoisted.
    #[inline]
    pub(crate) fn mul_derivative_slice(self, u: &[f64], d: &mut [f64]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => d
                .iter_mut()
                .zip(u)
                .for_each(|(g, &z)| *g *= if z > 0.0 { 1.0 } else { 0.0 }),
            _ => d
                .iter_mut()
                .zip(u)
                .for_each(|(g, &z)| *g *= self.derivative(z)),
        }
    }

    /// Gain used by [`crate::Mlp::init_params`]: weights are drawn `N(0, gain²/fan_in)`
    /// (He for ReLU, `5/3` for tanh as torch's `calculate_gain`, 1 otherwise).
    pub fn init_gain(self) -> f64 {
        match self {
            Activation::Relu => std::f64::consts::SQRT_2,
            Activation::Tanh => 5.0 / 3.0,
            _ => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_central_differences() {
        let h = 1e-5;
        for act in Activation::ALL {
            for &z in &[-3.1, -0.7, 0.3, 1.9, 25.0, -40.0] {
                let fd1 = (act.value(z + h) - act.value(z - h)) / (2.0 * h);
                let fd2 = (act.derivative(z + h) - act.derivative(z - h)) / (2.0 * h);
                assert!((fd1 - act.derivative(z)).abs() <= 1e-8, "{act:?} σ' at {z}");
                assert!(
                    (fd2 - act.second_derivative(z)).abs() <= 1e-8,
                    "{act:?} σ'' at {z}"
                );
            }
        }
    }

    #[test]
    fn stable_forms_do_not_overflow() {
        assert!((softplus(800.0) - 800.0).abs() <= 1e-12);
        assert!(softplus(-800.0) >= 0.0 && softplus(-800.0) < 1e-300);
        assert!((sigmoid(-800.0)).abs() < 1e-300);
        assert!((sigmoid(800.0) - 1.0).abs() <= f64::EPSILON);
        assert!((softplus(0.0) - 2f64.ln()).abs() <= 1e-15);
    }
}
