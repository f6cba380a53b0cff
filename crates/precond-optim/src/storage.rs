//! Where an optimizer's per-element state lives: the buffers of one dtype ([`Slots`]), the
//! dtype-tagged store, and the sealed [`StepFloat`] trait that picks between them.

use crate::float::Float;
use crate::kernel::MAX_SLOTS;

/// A state slot of an optimizer kind: its name (torch's `state` key, e.g. `"exp_avg_sq"`), the
/// value every element starts from, and whether its values are non-negative by construction
/// (accumulated squares: checked when a saved state is loaded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SlotSpec {
    pub(crate) name: &'static str,
    pub(crate) init: f64,
    pub(crate) nonneg: bool,
}

impl SlotSpec {
    /// A signed slot that starts at zero (a first moment, a momentum buffer).
    pub(crate) const fn zero(name: &'static str) -> Self {
        SlotSpec {
            name,
            init: 0.0,
            nonneg: false,
        }
    }
    /// A non-negative slot that starts at zero (a second moment).
    pub(crate) const fn squares(name: &'static str) -> Self {
        SlotSpec {
            name,
            init: 0.0,
            nonneg: true,
        }
    }
}

/// What a kind prepares once, when the optimizer is built: a read-only per-element buffer (a
/// fixed diagonal `P`) and a dense `P` (row-major `n × n`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Prepared {
    pub(crate) aux: Option<Vec<f64>>,
    pub(crate) dense_p: Option<Vec<f64>>,
}

/// The buffers of one dtype.
#[derive(Clone, Debug)]
pub(crate) struct Slots<T> {
    /// State slots in [`SlotSpec`] order; unused ones empty.
    pub(crate) s: [Vec<T>; MAX_SLOTS],
    /// Read-only per-element data ([`Prepared::aux`] in this dtype), or empty.
    pub(crate) aux: Vec<T>,
    /// [`Prepared::dense_p`] in this dtype, or empty.
    pub(crate) dense_p: Vec<T>,
    /// Scratch vectors of the dense step (`n` each when there is a dense `P`).
    pub(crate) scratch_u: Vec<T>,
    pub(crate) scratch_y: Vec<T>,
}

impl<T: Float> Slots<T> {
    /// Fresh state for `n` parameters.
    pub(crate) fn new(specs: &[SlotSpec], prepared: &Prepared, n: usize) -> Self {
        let mk = |j: usize| -> Vec<T> {
            specs
                .get(j)
                .map_or_else(Vec::new, |sp| vec![T::from_f64(sp.init); n])
        };
        let conv = |v: &Option<Vec<f64>>| -> Vec<T> {
            v.as_ref()
                .map_or_else(Vec::new, |p| p.iter().map(|&x| T::from_f64(x)).collect())
        };
        let (su, sy) = if prepared.dense_p.is_some() {
            (vec![T::ZERO; n], vec![T::ZERO; n])
        } else {
            (Vec::new(), Vec::new())
        };
        Slots {
            s: [mk(0), mk(1), mk(2)],
            aux: conv(&prepared.aux),
            dense_p: conv(&prepared.dense_p),
            scratch_u: su,
            scratch_y: sy,
        }
    }
}

/// The state of an optimizer: none yet, or the buffers of the dtype of its first step.
#[derive(Clone, Debug)]
pub(crate) enum Store {
    Empty,
    F32(Slots<f32>),
    F64(Slots<f64>),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element types an [`Optimizer`](crate::Optimizer) steps: `f32` and `f64`. Sealed: it
/// cannot be implemented outside this crate.
#[allow(private_interfaces)]
pub trait StepFloat: Float + sealed::Sealed {
    #[doc(hidden)]
    fn slots_mut(store: &mut Store) -> Option<&mut Slots<Self>>;
    #[doc(hidden)]
    fn slots_ref(store: &Store) -> Option<&Slots<Self>>;
    #[doc(hidden)]
    fn wrap(s: Slots<Self>) -> Store;
}

macro_rules! step_float {
    ($t:ty, $v:ident) => {
        #[allow(private_interfaces)]
        impl StepFloat for $t {
            fn slots_mut(store: &mut Store) -> Option<&mut Slots<$t>> {
                if let Store::$v(s) = store {
                    Some(s)
                } else {
                    None
                }
            }
            fn slots_ref(store: &Store) -> Option<&Slots<$t>> {
                if let Store::$v(s) = store {
                    Some(s)
                } else {
                    None
                }
            }
            fn wrap(s: Slots<$t>) -> Store {
                Store::$v(s)
            }
        }
    };
}
step_float!(f32, F32);
step_float!(f64, F64);
