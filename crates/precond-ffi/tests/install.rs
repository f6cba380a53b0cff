//! `make -C ffi-examples install PREFIX=<tmp>` and what a user of the installed library does with
//! it: the files, the versioned shared library (real file `libprecond.so.MAJOR.MINOR.PATCH` with
//! the SONAME `libprecond.so.MAJOR`, links `libprecond.so.MAJOR` and `libprecond.so`), the
//! pkg-config file, a program compiled with `pkg-config --cflags --libs precond`, and the CMake
//! package: `ffi-examples/cmake-consumer` configured with `find_package(precond 0.1 CONFIG
//! REQUIRED)`, built and run (shared, static and C++ targets), and version requests the package
//! must refuse.
//!
//! `cmake` is required: without it the test fails, unless `PRECOND_SKIP_CMAKE=1` is set (then the
//! CMake part is skipped with a loud message). The library is the one cargo built for this test
//! run (`libprecond_ffi.{a,so}` next to the test binary), as in `tests/examples.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-test")
}

/// The directory holding `libprecond_ffi.{a,so}` of this build.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory").to_path_buf();
    for dir in [deps.clone(), deps.join("..")] {
        if dir.join("libprecond_ffi.a").exists() && dir.join("libprecond_ffi.so").exists() {
            return dir;
        }
    }
    panic!("libprecond_ffi.a/.so not found next to {}", exe.display());
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    check(what, &out);
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Installs once per test binary; returns the prefix.
fn installed() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let _ = std::fs::remove_dir_all(tmp());
        let prefix = tmp().join("prefix");
        run(
            "make install",
            Command::new("make")
                .arg("-C")
                .arg(root().join("ffi-examples"))
                .arg(format!("BUILD={}", tmp().join("build").display()))
                .arg(format!("PRECOND_LIBDIR={}", lib_dir().display()))
                .arg(format!("PREFIX={}", prefix.display()))
                .arg("install"),
        );
        prefix
    })
}

#[test]
fn installs_headers_static_library_and_package_files() {
    let prefix = installed();
    for f in [
        "include/precond.h",
        "include/precond.hpp",
        "lib/libprecond.a",
        "lib/pkgconfig/precond.pc",
        "lib/cmake/precond/precondConfig.cmake",
        "lib/cmake/precond/precondConfigVersion.cmake",
    ] {
        let meta = std::fs::symlink_metadata(prefix.join(f))
            .unwrap_or_else(|_| panic!("{f} not installed"));
        assert!(meta.is_file(), "{f} is not a regular file");
    }
    // the installed headers are the committed ones
    for h in ["precond.h", "precond.hpp"] {
        assert_eq!(
            std::fs::read(prefix.join("include").join(h)).expect("installed header"),
            std::fs::read(root().join("include").join(h)).expect("committed header"),
            "{h}"
        );
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/precond.pc")).expect("pc");
    assert!(
        pc.lines()
            .any(|l| l == format!("prefix={}", prefix.display())),
        "{pc}"
    );
    assert!(pc.contains(&format!("Version: {VERSION}")), "{pc}");
    let cfg = std::fs::read_to_string(prefix.join("lib/cmake/precond/precondConfig.cmake"))
        .expect("config");
    let ver = std::fs::read_to_string(prefix.join("lib/cmake/precond/precondConfigVersion.cmake"))
        .expect("version file");
    for text in [&cfg, &ver] {
        assert!(
            !text.contains('@'),
            "a placeholder was not filled in:\n{text}"
        );
    }
    assert!(cfg.contains(&format!("libprecond.so.{VERSION}")));
    assert!(ver.contains(&format!("set(PACKAGE_VERSION \"{VERSION}\")")));
}

#[test]
fn shared_library_is_versioned_with_its_soname() {
    let lib = installed().join("lib");
    let real = lib.join(format!("libprecond.so.{VERSION}"));
    let meta = std::fs::symlink_metadata(&real).expect("libprecond.so.VERSION installed");
    assert!(meta.is_file(), "{} must be the real file", real.display());
    let link = |name: &str| {
        let p = lib.join(name);
        assert!(
            std::fs::symlink_metadata(&p)
                .expect("installed")
                .file_type()
                .is_symlink(),
            "{name} must be a symlink"
        );
        std::fs::read_link(&p).expect("read_link")
    };
    // relative links, so the prefix can move: .so -> .so.MAJOR -> .so.MAJOR.MINOR.PATCH
    assert_eq!(
        link(&format!("libprecond.so.{MAJOR}")),
        PathBuf::from(format!("libprecond.so.{VERSION}"))
    );
    assert_eq!(
        link("libprecond.so"),
        PathBuf::from(format!("libprecond.so.{MAJOR}"))
    );
    assert_eq!(
        lib.join("libprecond.so").canonicalize().expect("resolves"),
        real.canonicalize().expect("real")
    );
    // the SONAME is set when cargo links the cdylib (build.rs)
    let dynamic = run("readelf -d", Command::new("readelf").arg("-d").arg(&real));
    let soname = dynamic
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .unwrap_or_else(|| panic!("no SONAME in {}:\n{dynamic}", real.display()));
    assert!(
        soname.contains(&format!("[libprecond.so.{MAJOR}]")),
        "{soname}"
    );
}

fn pkg_config_path(prefix: &Path) -> String {
    prefix.join("lib/pkgconfig").display().to_string()
}

#[test]
fn pkg_config_builds_a_program_against_the_installed_library() {
    let prefix = installed();
    let pc = |args: &[&str]| -> String {
        run(
            "pkg-config",
            Command::new("pkg-config")
                .args(args)
                .arg("precond")
                .env("PKG_CONFIG_PATH", pkg_config_path(prefix)),
        )
        .trim()
        .to_string()
    };
    assert_eq!(pc(&["--modversion"]), VERSION);
    let flags = pc(&["--cflags", "--libs"]);
    assert!(
        flags.contains(&format!("-I{}", prefix.join("include").display())),
        "{flags}"
    );
    assert!(
        flags.contains(&format!("-L{}", prefix.join("lib").display())),
        "{flags}"
    );
    let static_libs = pc(&["--static", "--libs"]);
    for l in ["-lprecond", "-lm", "-lpthread", "-ldl"] {
        assert!(static_libs.contains(l), "{static_libs}");
    }
    // the consumer program, linked by exactly the flags pkg-config prints
    let exe = tmp().join("consumer_pkg_config");
    let mut cc = Command::new("cc");
    cc.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O2",
    ])
    .arg(root().join("ffi-examples/cmake-consumer/consumer.c"))
    .arg("-o")
    .arg(&exe)
    .args(flags.split_whitespace())
    .arg("-lm");
    run("cc $(pkg-config --cflags --libs precond)", &mut cc);
    let needed = run("readelf -d", Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        needed.contains(&format!("Shared library: [libprecond.so.{MAJOR}]")),
        "the program must record the SONAME:\n{needed}"
    );
    let out = run(
        "consumer_pkg_config",
        Command::new(&exe).env("LD_LIBRARY_PATH", prefix.join("lib")),
    );
    assert_eq!(out.trim(), format!("consumer ok {VERSION}"));
}

fn cmake_available() -> bool {
    let found = Command::new("cmake")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if std::env::var("PRECOND_SKIP_CMAKE").as_deref() == Ok("1") {
        eprintln!(
            "\n******** cmake is not installed and PRECOND_SKIP_CMAKE=1: the CMake package of \
             the installed library is NOT tested ********\n"
        );
        return false;
    }
    panic!(
        "cmake is not installed: the CMake package cannot be tested. Install cmake \
         (apt-get install cmake; .ci/run does), or set PRECOND_SKIP_CMAKE=1 to skip this part"
    );
}

/// Configures `ffi-examples/cmake-consumer` against the prefix, requesting `version` (with
/// `EXTRA` definitions); returns the configure output.
fn cmake_configure(build: &Path, prefix: &Path, version: &str) -> Output {
    let _ = std::fs::remove_dir_all(build);
    Command::new("cmake")
        .arg("-S")
        .arg(root().join("ffi-examples/cmake-consumer"))
        .arg("-B")
        .arg(build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg(format!("-DPRECOND_REQUEST={version}"))
        .arg("-DCMAKE_BUILD_TYPE=Release")
        .output()
        .expect("run cmake")
}

#[test]
fn cmake_find_package_builds_and_runs_the_consumer() {
    if !cmake_available() {
        return;
    }
    let prefix = installed();
    let build = tmp().join("cmake-consumer");
    check("cmake configure", &cmake_configure(&build, prefix, "0.1"));
    run(
        "cmake --build",
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .args(["--parallel", "2"]),
    );
    // the shared consumer finds libprecond.so.MAJOR through the rpath CMake gives it
    let exe = build.join("consumer_c");
    let needed = run("readelf -d", Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        needed.contains(&format!("Shared library: [libprecond.so.{MAJOR}]")),
        "{needed}"
    );
    assert_eq!(
        run("consumer_c", &mut Command::new(&exe)).trim(),
        format!("consumer ok {VERSION}")
    );
    // the static one does not need the shared library at all
    let static_exe = build.join("consumer_c_static");
    let needed = run(
        "readelf -d",
        Command::new("readelf").arg("-d").arg(&static_exe),
    );
    assert!(!needed.contains("libprecond"), "{needed}");
    assert_eq!(
        run("consumer_c_static", &mut Command::new(&static_exe)).trim(),
        format!("consumer ok {VERSION}")
    );
    assert_eq!(
        run(
            "consumer_cpp",
            &mut Command::new(build.join("consumer_cpp"))
        )
        .trim(),
        format!("consumer_cpp ok {VERSION}")
    );
    // and ctest runs all three
    run(
        "ctest",
        Command::new("ctest")
            .arg("--test-dir")
            .arg(&build)
            .arg("--output-on-failure"),
    );
}

#[test]
fn cmake_package_version_is_same_major_compatible() {
    if !cmake_available() {
        return;
    }
    let prefix = installed();
    let major: u32 = MAJOR.parse().expect("major");
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().expect("minor");
    // accepted: the exact version, MAJOR alone, and a range inside MAJOR
    for ok in [
        VERSION.to_string(),
        MAJOR.to_string(),
        format!("{major}.0...{major}.{}", minor + 5),
    ] {
        let build = tmp().join("cmake-version-ok");
        check(
            &format!("find_package(precond {ok})"),
            &cmake_configure(&build, prefix, &ok),
        );
    }
    // refused: a newer minor than installed, another major, a range reaching into the next major
    for refused in [
        format!("{major}.{}", minor + 1),
        format!("{}.0", major + 1),
        format!("{major}.0...{}.0", major + 2),
    ] {
        let build = tmp().join("cmake-version-refused");
        let out = cmake_configure(&build, prefix, &refused);
        assert!(
            !out.status.success(),
            "find_package(precond {refused}) accepted version {VERSION}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("precondConfigVersion.cmake") || stderr.contains(VERSION),
            "refused for another reason:\n{stderr}"
        );
    }
}
