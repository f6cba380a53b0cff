//! The report's experiments, one file each, and the registry that lists them.
//!
//! To add an experiment: write `src/experiments/<id>.rs` with a unit struct implementing
//! [`Experiment`], declare the module here and add it to [`registry`].

mod adaptive;
mod batch_norm;
mod bnp;
mod change_of_variables;
mod common;
mod gd_rate;
mod hessian_structure;
mod input_normalization;
mod layer_norm;
mod matrix_common;
mod matrix_optimizers;
mod regularization_l1;
mod regularization_l2;
mod van_der_sluis;

use crate::report::Experiment;

/// Every experiment, numbered 1–13 in the order of the theory (THEORY.md §1 to §7).
pub fn registry() -> Vec<Box<dyn Experiment>> {
    vec![
        Box::new(gd_rate::GdRate),
        Box::new(change_of_variables::ChangeOfVariables),
        Box::new(van_der_sluis::VanDerSluisExperiment),
        Box::new(adaptive::Adaptive),
        Box::new(regularization_l2::RegularizationL2),
        Box::new(regularization_l1::RegularizationL1),
        Box::new(hessian_structure::HessianStructure),
        Box::new(input_normalization::InputNormalization),
        Box::new(batch_norm::BatchNorm),
        Box::new(layer_norm::LayerNorm),
        Box::new(matrix_optimizers::MuonShampoo),
        Box::new(matrix_optimizers::Soap),
        Box::new(bnp::BnpExperiment),
    ]
}
