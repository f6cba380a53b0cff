//! Status codes, error messages (per handle and thread-local) and the panic boundary
//! (rustls-ffi `panic.rs` style: every exported function runs its body inside [`boundary`]).

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use precond_linalg::LinalgError;
use precond_optim::OptimError;

/// Result code of every fallible function of the C API. `PRECOND_OK` is zero; every other value
/// comes with a message naming the problem, read with `precond_last_error()` (thread-local) or,
/// for functions taking an optimizer handle, `precond_optimizer_last_error(opt)`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum precond_status_t {
    /// Success.
    PRECOND_OK = 0,
    /// A required pointer argument was `NULL`.
    PRECOND_NULL_POINTER = 1,
    /// An argument is outside its domain: an unknown enum value, a hyperparameter out of range,
    /// an empty matrix, a non-symmetric matrix where a symmetric one is required, a misaligned
    /// or overlapping buffer, a configuration key that does not exist.
    PRECOND_INVALID_ARGUMENT = 2,
    /// Two sizes that must agree do not (buffer length vs matrix size, `n` vs `n_params`,
    /// a parameter group outside `0..n_params`), or a size computation overflows.
    PRECOND_DIMENSION_MISMATCH = 3,
    /// A NaN or infinity in an input (gradient, matrix, preconditioner), or an optimizer step
    /// whose result would leave the float range (nothing written).
    PRECOND_NON_FINITE = 4,
    /// The computation is not defined for this input: a matrix that is not positive definite,
    /// rank deficient, a zero row, no convergence, a preconditioner not defined yet.
    PRECOND_NUMERICAL_FAILURE = 5,
    /// Text that is not valid JSON (or not UTF-8).
    PRECOND_PARSE_ERROR = 6,
    /// A Rust panic was caught at the boundary (a bug in the library: please report it). The
    /// handle involved, if any, may be left in any valid state.
    PRECOND_INTERNAL_PANIC = 7,
    /// A saved optimizer state that does not fit: truncated or corrupt bytes, another optimizer
    /// or slot layout, another number of parameters, another state format version.
    PRECOND_INVALID_STATE = 8,
    /// The allocator refused a buffer whose size the call implies (an optimizer's state for
    /// `n_params` parameters or a large matrix group's factors, a diagnostic's copy, factor or
    /// workspace of the caller's matrix): nothing was changed, the process keeps running.
    PRECOND_OUT_OF_MEMORY = 9,
}

/// `c"…"` from a byte string with its NUL, at compile time.
const fn c_str(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(c) => c,
        Err(_) => panic!("a status name contains a NUL byte or lacks the final one"),
    }
}

/// The status table: each code of [`precond_status_t`] listed once, in numeric order. From it
/// come [`precond_status_t::ALL`], the names ([`precond_status_t::name`],
/// [`precond_status_t::c_name`], hence `precond_status_name`) and
/// [`precond_status_t::from_code`]. The value and the description of a code are its variant
/// and doc comment in the enum, which cbindgen reads for the header. The compiler keeps the
/// two in step: the generated `match`es are exhaustive, so a variant missing from the table
/// does not compile, and a repeated one is an unreachable pattern (and fails the
/// `status_values_are_stable` test).
macro_rules! status_table {
    ($($code:ident),+ $(,)?) => {
        impl precond_status_t {
            /// All codes, in numeric order.
            pub const ALL: [precond_status_t; [$(stringify!($code)),+].len()] =
                [$(Self::$code),+];

            /// Short name of the code, as in the header (`"PRECOND_OK"`, …).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$code => stringify!($code),)+
                }
            }

            /// [`name`](Self::name) as a NUL-terminated static string (for C).
            pub const fn c_name(self) -> &'static CStr {
                match self {
                    $(Self::$code => {
                        const NAME: &CStr = c_str(concat!(stringify!($code), "\0").as_bytes());
                        NAME
                    })+
                }
            }
        }
    };
}

status_table! {
    PRECOND_OK,
    PRECOND_NULL_POINTER,
    PRECOND_INVALID_ARGUMENT,
    PRECOND_DIMENSION_MISMATCH,
    PRECOND_NON_FINITE,
    PRECOND_NUMERICAL_FAILURE,
    PRECOND_PARSE_ERROR,
    PRECOND_INTERNAL_PANIC,
    PRECOND_INVALID_STATE,
    PRECOND_OUT_OF_MEMORY,
}

impl precond_status_t {
    /// The code with numeric value `code`, `None` for a value that is not a code.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == code)
    }
}

/// An error on its way to C: a status code and the message that names the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct FfiError {
    /// The code returned to C.
    pub status: precond_status_t,
    /// The message stored for `precond_last_error` / `precond_optimizer_last_error`.
    pub message: String,
}

impl FfiError {
    /// An error with `status` and `message`.
    pub fn new(status: precond_status_t, message: impl Into<String>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }
    /// `PRECOND_NULL_POINTER` naming the argument.
    pub fn null(arg: &str) -> Self {
        Self::new(
            precond_status_t::PRECOND_NULL_POINTER,
            format!("argument `{arg}` is NULL"),
        )
    }
    /// `PRECOND_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(precond_status_t::PRECOND_INVALID_ARGUMENT, message)
    }
    /// `PRECOND_DIMENSION_MISMATCH`.
    pub fn dims(message: impl Into<String>) -> Self {
        Self::new(precond_status_t::PRECOND_DIMENSION_MISMATCH, message)
    }
    /// The same error with its message prefixed by `what: ` (which input it is about).
    pub fn with_prefix(self, what: &str) -> Self {
        Self {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }
}

impl From<LinalgError> for FfiError {
    fn from(e: LinalgError) -> Self {
        use precond_status_t as S;
        let status = match &e {
            LinalgError::DimensionMismatch { .. } => S::PRECOND_DIMENSION_MISMATCH,
            LinalgError::Empty { .. }
            | LinalgError::NotSymmetric { .. }
            | LinalgError::InvalidArgument { .. } => S::PRECOND_INVALID_ARGUMENT,
            LinalgError::NonFinite { .. } => S::PRECOND_NON_FINITE,
            LinalgError::OutOfMemory { .. } => S::PRECOND_OUT_OF_MEMORY,
            _ => S::PRECOND_NUMERICAL_FAILURE,
        };
        FfiError::new(status, e.to_string())
    }
}

impl From<OptimError> for FfiError {
    fn from(e: OptimError) -> Self {
        FfiError::new(optim_status(&e), e.to_string())
    }
}

/// The status code of an optimizer error (a BNP group's error: that of the wrapped one).
fn optim_status(e: &OptimError) -> precond_status_t {
    use precond_status_t as S;
    {
        match e {
            OptimError::Bnp { error, .. } => optim_status(error),
            OptimError::Json(_) => S::PRECOND_PARSE_ERROR,
            OptimError::LengthMismatch { .. } | OptimError::GroupRange { .. } => {
                S::PRECOND_DIMENSION_MISMATCH
            }
            OptimError::NonFiniteGradient { .. }
            | OptimError::NonFiniteUpdate { .. }
            | OptimError::InvalidLearningRate { .. } => S::PRECOND_NON_FINITE,
            OptimError::State { .. } | OptimError::StepCountOverflow { .. } => {
                S::PRECOND_INVALID_STATE
            }
            OptimError::NoPreconditionerYet { .. } | OptimError::NotSpd { .. } => {
                S::PRECOND_NUMERICAL_FAILURE
            }
            OptimError::OutOfMemory { .. } => S::PRECOND_OUT_OF_MEMORY,
            _ => S::PRECOND_INVALID_ARGUMENT,
        }
    }
}

/// Result of an entry point's body.
pub type FfiResult<T = ()> = Result<T, FfiError>;

/// Converts a message to a C string (interior NULs, which Rust messages never contain by
/// construction but user-provided keys might, are replaced by `?`).
pub(crate) fn to_cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

/// The calling thread's last error: the message of the last failing call, and whether
/// `precond_clear_last_error` has been called since.
///
/// Lifetime contract (documented on `precond_last_error`): a pointer returned by
/// `precond_last_error` stays valid, with unchanged contents, until the next failing call on
/// the same thread or the thread's exit. Clearing therefore does not free the message: it only
/// sets `cleared`, and `precond_last_error` then returns the static `""`; the message is freed
/// when the next failing call replaces it.
#[derive(Default)]
struct LastError {
    message: CString,
    cleared: bool,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError::default());
}

/// Stores `msg` as this thread's last error (frees the previous message: pointers to it end
/// their validity here, at the next failing call).
pub(crate) fn set_last_error(msg: &str) {
    let message = to_cstring(msg);
    LAST_ERROR.with(|e| {
        *e.borrow_mut() = LastError {
            message,
            cleared: false,
        }
    });
}

/// Pointer to this thread's last error, or to the static `""` when none has been recorded or
/// it has been cleared (valid until the next failing call on this thread or the thread's exit).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        if e.cleared {
            c"".as_ptr()
        } else {
            e.message.as_ptr()
        }
    })
}

/// Clears this thread's last error: `last_error_ptr` returns `""` from now on, while the old
/// message stays allocated (and unchanged) until the next failing call replaces it.
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| e.borrow_mut().cleared = true);
}

/// Renders a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The panic boundary: runs `body`, converts its error or a caught panic into a status code and
/// stores the message (prefixed with the function name `func`) as the thread's last error; the
/// returned message is also handed to `on_error` (used to store it in a handle).
pub(crate) fn boundary_with(
    func: &str,
    body: impl FnOnce() -> FfiResult,
    on_error: impl FnOnce(&str),
) -> precond_status_t {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return precond_status_t::PRECOND_OK,
        Ok(Err(e)) => e,
        Err(payload) => FfiError::new(
            precond_status_t::PRECOND_INTERNAL_PANIC,
            format!(
                "internal panic (a bug in precond): {}",
                panic_message(&*payload)
            ),
        ),
    };
    let msg = format!("{func}: {}", err.message);
    // Storing the message must not unwind either (allocation failure aborts, never unwinds).
    let _ = catch_unwind(AssertUnwindSafe(|| {
        set_last_error(&msg);
        on_error(&msg);
    }));
    err.status
}

/// [`boundary_with`] for calls without a handle.
pub(crate) fn boundary(func: &str, body: impl FnOnce() -> FfiResult) -> precond_status_t {
    boundary_with(func, body, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: the pointer is this thread's NUL-terminated last error.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panic_is_caught_and_reported() {
        let st = boundary("precond_test", || panic!("boom {}", 42));
        assert_eq!(st, precond_status_t::PRECOND_INTERNAL_PANIC);
        let m = last();
        assert!(m.starts_with("precond_test: internal panic"), "{m}");
        assert!(m.contains("boom 42"), "{m}");
        let st = boundary("precond_test", || std::panic::panic_any(7u8));
        assert_eq!(st, precond_status_t::PRECOND_INTERNAL_PANIC);
        assert!(last().contains("non-string panic payload"));
    }

    #[test]
    fn errors_and_success() {
        let mut seen = String::new();
        let st = boundary_with(
            "f",
            || Err(FfiError::null("grads")),
            |m| seen = m.to_string(),
        );
        assert_eq!(st, precond_status_t::PRECOND_NULL_POINTER);
        assert_eq!(seen, "f: argument `grads` is NULL");
        assert_eq!(last(), seen);
        assert_eq!(boundary("g", || Ok(())), precond_status_t::PRECOND_OK);
        // success leaves the last error in place (errno convention)
        assert_eq!(last(), seen);
        clear_last_error();
        assert_eq!(last(), "");
    }

    #[test]
    fn clearing_keeps_the_old_message_until_the_next_failure() {
        let st = boundary("f", || Err(FfiError::invalid("first")));
        assert_eq!(st, precond_status_t::PRECOND_INVALID_ARGUMENT);
        let kept = last_error_ptr();
        clear_last_error();
        assert_eq!(last(), "");
        assert_ne!(
            last_error_ptr(),
            kept,
            "clearing returns the static empty string"
        );
        assert_eq!(boundary("g", || Ok(())), precond_status_t::PRECOND_OK);
        // SAFETY: the contract under test: valid until the next failing call on this thread.
        let text = unsafe { CStr::from_ptr(kept) }.to_str().map(str::to_owned);
        assert_eq!(text.as_deref(), Ok("f: first"));
        // the stored message is still the one `kept` points to
        LAST_ERROR.with(|e| assert_eq!(e.borrow().message.as_ptr(), kept));
        let _ = boundary("h", || Err(FfiError::invalid("second")));
        assert_eq!(last(), "h: second");
    }

    #[test]
    fn nul_in_message_is_replaced() {
        assert_eq!(to_cstring("a\0b").to_str().ok(), Some("a?b"));
    }

    #[test]
    fn status_values_are_stable() {
        for (i, s) in precond_status_t::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32, "{}", s.name());
            assert_eq!(precond_status_t::from_code(i as i32), Some(*s));
            assert_eq!(s.c_name().to_str().ok(), Some(s.name()));
            assert_eq!(format!("{s:?}"), s.name());
        }
        assert_eq!(precond_status_t::ALL.len(), 10);
        assert_eq!(precond_status_t::from_code(10), None);
        assert_eq!(precond_status_t::from_code(-1), None);
    }
}
