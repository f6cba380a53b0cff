//! [`OptimizerKind`]: which optimizer, generated from the registry (`registry.rs`).

use crate::registry::for_each_kind;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! define_kind_enum {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $ty:path, )*) => {
        /// Which optimizer. The variants and their JSON names come from the registry; what each
        /// kind accepts and does is described once, in its file under `kinds/`.
        ///
        /// # References
        ///
        /// - \[PrecondPaper\] *Preconditioning for Accelerated Gradient Descent Optimization and
        ///   Regularization*: adaptive methods as diagonal preconditioners, AdamW's weight decay
        ///   as intrinsic L2 (docs/THEORY.md §4–5).
        /// - \[Polyak1964\], \[Sutskever2013\]: heavy-ball and Nesterov momentum (`sgd`).
        /// - \[Duchi2011\]: AdaGrad (`adagrad`).
        /// - \[Tieleman2012\]: RMSProp (`rmsprop`).
        /// - \[Kingma2015\]: Adam (`adam`); \[Reddi2018\]: AMSGrad (`amsgrad`).
        /// - \[Loshchilov2019\]: decoupled weight decay (`adamw`).
        /// - \[Jordan2024\], \[Liu2025\]: Muon (`muon`).
        /// - \[Gupta2018\], \[Anil2020\], \[Shi2023\]: Shampoo and DistributedShampoo (`shampoo`).
        /// - \[Vyas2024\]: SOAP (`soap`).
        ///
        /// Full entries: docs/THEORY.md, References.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum OptimizerKind {
            $( $(#[$doc])* $variant, )*
        }

        impl OptimizerKind {
            /// Every kind, in registry order.
            pub const ALL: &'static [OptimizerKind] = &[$(OptimizerKind::$variant),*];

            /// The JSON name.
            pub fn name(self) -> &'static str {
                match self {
                    $(OptimizerKind::$variant => $name,)*
                }
            }

            /// The kind of a JSON name.
            pub fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(OptimizerKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

for_each_kind!(define_kind_enum);

impl OptimizerKind {
    /// The JSON names of all kinds joined with `|` (for error messages).
    pub(crate) fn names() -> String {
        Self::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join("|")
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for OptimizerKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for OptimizerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OptimizerKind::from_name(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown optimizer `{s}` ({})",
                OptimizerKind::names()
            ))
        })
    }
}
