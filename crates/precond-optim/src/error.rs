//! The crate's error type.

/// Everything that can go wrong in `precond-optim`. Every error leaves the optimizer (parameters,
/// state, step count) exactly as it was before the failing call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError {
    /// A configuration key holds a value of the wrong type or out of range. `key` is the full path
    /// of the key, e.g. `"betas"`, `"groups[1].lr"`, `"regularization.l1_ratio"`.
    #[error("invalid config value for `{key}`: {message}")]
    Config {
        /// Path of the offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A configuration key that is not known (or does not apply to the chosen optimizer, as a
    /// keyword argument torch would reject).
    #[error("unknown config key `{key}`: {message}")]
    UnknownKey {
        /// Path of the offending key.
        key: String,
        /// Which keys are accepted there.
        message: String,
    },
    /// The configuration text is not valid JSON.
    #[error("config is not valid JSON: {0}")]
    Json(String),
    /// Two buffers that must have the same length do not.
    #[error("length mismatch for {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The gradient contains a NaN or an infinity (policy `"nonfinite": "error"`).
    #[error("non-finite gradient at index {index}; parameters and state left untouched")]
    NonFiniteGradient {
        /// First offending index in the flat buffer.
        index: usize,
    },
    /// The step would write a NaN or an infinity although its inputs are finite (policy
    /// `"error"`; `"skip"` reports it as a skipped step): `learning rate × update`, a moment
    /// or a factor leaves the float range. Found before anything is written (an interval
    /// enclosure of the update, an exact dry run where the enclosure is not enough, or the
    /// undo of a matrix group's step): parameters and state are left untouched.
    #[error(
        "the step would write a non-finite value at index {index} (finite inputs overflow: learning rate, gradient or state too large); parameters and state left untouched"
    )]
    NonFiniteUpdate {
        /// First offending index in the flat buffer (a matrix group: its first index whose
        /// new value is not finite, else the group's start).
        index: usize,
    },
    /// The optimizer already holds state of one floating-point type and was stepped with another.
    #[error(
        "dtype mismatch: optimizer state is {expected}, buffers are {got} (call reset() to switch)"
    )]
    DtypeMismatch {
        /// The dtype of the existing state.
        expected: &'static str,
        /// The dtype of the given buffers.
        got: &'static str,
    },
    /// A parameter group's range is empty or outside `0..n_params`.
    #[error("group {index}: range {start}..{end} is empty or outside 0..{n_params}")]
    GroupRange {
        /// Group index in the config.
        index: usize,
        /// Range start.
        start: usize,
        /// Range end (exclusive).
        end: usize,
        /// Number of parameters.
        n_params: usize,
    },
    /// Two parameter groups overlap.
    #[error("groups {first} and {second} overlap")]
    GroupOverlap {
        /// Index of one group.
        first: usize,
        /// Index of the other.
        second: usize,
    },
    /// A saved state does not fit this optimizer.
    #[error("state rejected: {reason}")]
    State {
        /// What does not fit (version, layout, size, dtype, corrupt bytes).
        reason: String,
    },
    /// The preconditioner `P_k` is not defined yet (Adam's bias-corrected `v̂_0 = 0/0` before the
    /// first step).
    #[error("the preconditioner of `{optimizer}` is undefined before the first step")]
    NoPreconditionerYet {
        /// Optimizer name.
        optimizer: &'static str,
    },
    /// The step counter is at its maximum (`u64::MAX`): one more step would wrap it around (and
    /// with it every bias correction). Nothing was written.
    #[error("the step counter is at its maximum ({step}); no further step is possible")]
    StepCountOverflow {
        /// The step count.
        step: u64,
    },
    /// The learning rate a step would use (base learning rate through the schedule) is not a
    /// finite number `≥ 0`. Nothing was written.
    #[error(
        "scheduled learning rate {lr} at step {step} for parameters {start}.. is not finite and ≥ 0; parameters and state left untouched"
    )]
    InvalidLearningRate {
        /// The scheduled learning rate.
        lr: f64,
        /// The step number it was computed for (`k ≥ 1`).
        step: u64,
        /// First parameter index of the group (segment) it applies to.
        start: usize,
    },
    /// The allocator refused a state buffer (its size comes from `n_params` or a matrix
    /// group's shape): nothing was allocated or changed. Reported by a first step (or a state
    /// load) instead of aborting the process.
    #[error("out of memory: cannot allocate `{what}` ({elements} elements, {bytes} bytes)")]
    OutOfMemory {
        /// The state array (slot name) or buffer.
        what: String,
        /// Its number of elements.
        elements: u64,
        /// Its size in bytes.
        bytes: u64,
    },
    /// A valid request this optimizer cannot serve (e.g. intrinsic L1 with a dense `P`).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A statistic given to BNP's running estimates ([`crate::BnpStats::observe`]) or its
    /// settings is not usable: a NaN/infinite mean, a negative or non-finite variance, a
    /// momentum outside `(0, 1]` or an `eps` that is not finite and `≥ 0`. Nothing was written.
    #[error("BNP statistics: {what}[{index}] = {value} is not usable ({reason})")]
    InvalidStatistics {
        /// Which input (`"batch_mean"`, `"batch_var"`, `"momentum"`, `"eps"`).
        what: &'static str,
        /// First offending index (0 for scalars).
        index: usize,
        /// The offending value.
        value: f64,
        /// What is required of it.
        reason: &'static str,
    },
    /// A user-given fixed preconditioner is not symmetric positive definite (or a factor `S` is
    /// singular).
    #[error("fixed preconditioner is not symmetric positive definite: {reason}")]
    NotSpd {
        /// Why.
        reason: String,
    },
    /// A BNP call on parameter group `group` ([`crate::Optimizer::bnp_observe`],
    /// [`crate::Optimizer::bnp_stats`]) failed: the group does not exist, has no `"bnp"`, is
    /// held by another shard, or `error` (a [`OptimError::LengthMismatch`] with the sizes, an
    /// [`OptimError::InvalidStatistics`] with the index and value) says what is wrong with the
    /// statistics. Nothing was changed.
    #[error("groups[{group}] (BNP): {error}")]
    Bnp {
        /// The group index in the config.
        group: usize,
        /// What went wrong.
        error: Box<OptimError>,
    },
}

/// Result alias of this crate.
pub type Result<T, E = OptimError> = std::result::Result<T, E>;

impl OptimError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        OptimError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
    pub(crate) fn state(reason: impl Into<String>) -> Self {
        OptimError::State {
            reason: reason.into(),
        }
    }
    /// The same error with its key path under `path` (a group's own config: `momentum` becomes
    /// `groups[1].momentum`).
    pub(crate) fn under(self, path: &str) -> Self {
        let join = |k: String| {
            if k.starts_with(path) {
                k
            } else {
                format!("{path}.{k}")
            }
        };
        match self {
            OptimError::Config { key, message } => OptimError::Config {
                key: join(key),
                message,
            },
            OptimError::UnknownKey { key, message } => OptimError::UnknownKey {
                key: join(key),
                message,
            },
            OptimError::Unsupported(m) => OptimError::Unsupported(format!("{path}: {m}")),
            OptimError::NotSpd { reason } => OptimError::NotSpd {
                reason: format!("{path}: {reason}"),
            },
            other => other,
        }
    }
}
