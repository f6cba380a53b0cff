//! Helpers shared by the C ABI integration tests: the thread's and a handle's last message.

use std::ffi::CStr;

use precond_ffi::{precond_last_error, precond_optimizer_last_error, precond_optimizer_t};

/// The calling thread's last error message.
pub fn last() -> String {
    // SAFETY: never NULL, NUL-terminated.
    unsafe { CStr::from_ptr(precond_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The last error message of handle `opt` (a live handle, or NULL).
pub fn handle_msg(opt: *const precond_optimizer_t) -> String {
    // SAFETY: a live handle (or NULL); the result is NUL-terminated.
    unsafe { CStr::from_ptr(precond_optimizer_last_error(opt)) }
        .to_string_lossy()
        .into_owned()
}
