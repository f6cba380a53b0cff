//! Helpers shared by the C ABI integration tests: the thread's and a handle's last message.

use std::ffi::CStr;

use precond_ffi::{precond_last_error, precond_optimizer_last_error, precond_optimizer_t};

/// The calling thread's last error message.
#[allow(dead_code)]
pub fn last() -> String {
    // SAFETY: never NULL, NUL-terminated.
    unsafe { CStr::from_ptr(precond_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The last error message of handle `opt` (a live handle, or NULL).
#[allow(dead_code)]
pub fn handle_msg(opt: *const precond_optimizer_t) -> String {
    // SAFETY: a live handle (or NULL); the result is NUL-terminated.
    unsafe { CStr::from_ptr(precond_optimizer_last_error(opt)) }
        .to_string_lossy()
        .into_owned()
}

/// `libprecond_ffi.a` of this build, next to the test binary (cargo builds every crate type of
/// the lib).
#[allow(dead_code)]
pub fn static_lib() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory").to_path_buf();
    [deps.clone(), deps.join("..")]
        .into_iter()
        .map(|d| d.join("libprecond_ffi.a"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libprecond_ffi.a not found next to {}", exe.display()))
}

/// Compiles the C++17 program `source` (which includes `precond.hpp`) with g++ (warnings as
/// errors) against the static library next to the test binary, runs it and returns its
/// standard output; panics with the compiler's or the program's stderr on failure.
#[allow(dead_code)]
pub fn run_cpp(name: &str, source: &str) -> String {
    let lib = static_lib();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-cpp"));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let src = dir.join(format!("{name}.cpp"));
    std::fs::write(&src, source).expect("write source");
    let bin = dir.join(name);
    let out = std::process::Command::new("g++")
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
        ])
        .arg("-I")
        .arg(root.join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .arg(&lib)
        .args(["-lm", "-lpthread", "-ldl"])
        .output()
        .expect("run g++");
    assert!(
        out.status.success(),
        "g++ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::process::Command::new(&bin).output().expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8(run.stdout).expect("utf-8")
}
