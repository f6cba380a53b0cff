//! The optimizer registry: the one list of optimizer kinds.
//!
//! Each line names a kind: its [`OptimizerKind`](crate::OptimizerKind) variant (with the doc
//! line the enum shows), its JSON name, and the type in `kinds/` that describes it (accepted keys,
//! defaults, validation, state slots, `P_k`, dispatch; see [`crate::kinds::Kind`]). The list
//! is handed to a macro that generates what is derived from it: the enum and its names
//! ([`crate::kind`]), and the dispatch from a kind value to its description
//! ([`crate::kinds`]). Adding an optimizer = a new file in `kinds/` and one line here.

/// Calls `$m!` with the list of registered kinds.
macro_rules! for_each_kind {
    ($m:ident) => {
        $m! {
            /// torch `SGD` (momentum, dampening, nesterov).
            Sgd = "sgd" => sgd::Sgd,
            /// Plain gradient descent (1): `SGD` without momentum.
            Gd = "gd" => gd::Gd,
            /// torch `Adagrad`.
            Adagrad = "adagrad" => adagrad::Adagrad,
            /// torch `RMSprop`.
            Rmsprop = "rmsprop" => rmsprop::Rmsprop,
            /// torch `Adam`.
            Adam = "adam" => adam::Adam,
            /// torch `AdamW` (decoupled weight decay = intrinsic L2, (11)).
            Adamw = "adamw" => adam::AdamW,
            /// Preconditioned GD (5) with a fixed user preconditioner.
            PrecondGd = "precond_gd" => precond_gd::PrecondGd,
            /// torch `Muon`: orthogonalized momentum on a matrix (THEORY.md §7).
            Muon = "muon" => muon::Muon,
            /// DistributedShampoo: Kronecker-factored `(L̂ + εI)^{-1/4} G (R̂ + εI)^{-1/4}` per block, with grafting (THEORY.md §7).
            Shampoo = "shampoo" => shampoo::Shampoo,
            /// SOAP (`nikhilvyas/SOAP`): Adam in the eigenbasis of Shampoo's factors (THEORY.md §7).
            Soap = "soap" => soap::Soap,
        }
    };
}
pub(crate) use for_each_kind;
