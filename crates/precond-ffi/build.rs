//! Generates `precond.h` with cbindgen into `OUT_DIR` (the committed `include/precond.h` is
//! checked against it by `tests/header.rs`), adding the version macros from the crate version,
//! and, on Linux, gives the shared library the SONAME `libprecond.so.MAJOR` (it is installed as
//! `libprecond.so.MAJOR.MINOR.PATCH` with the links `libprecond.so.MAJOR` and `libprecond.so` by
//! `make -C ffi-examples install`). Reads only files of this crate and writes only to `OUT_DIR`,
//! so it works from the packaged crate too.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    let mut config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let v = |k: &str| std::env::var(k).expect("cargo version variable");
    let (major, minor, patch) = (
        v("CARGO_PKG_VERSION_MAJOR"),
        v("CARGO_PKG_VERSION_MINOR"),
        v("CARGO_PKG_VERSION_PATCH"),
    );
    let num = |s: &str| s.parse::<u32>().expect("numeric version component");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libprecond.so.{major}");
    }
    config.after_includes = Some(format!(
        "\n/** The version of this header, \"MAJOR.MINOR.PATCH\" (compare with precond_version()). */\n\
         #define PRECOND_VERSION \"{}\"\n\
         /** Major version of this header. */\n#define PRECOND_VERSION_MAJOR {major}\n\
         /** Minor version of this header. */\n#define PRECOND_VERSION_MINOR {minor}\n\
         /** Patch version of this header. */\n#define PRECOND_VERSION_PATCH {patch}\n\
         /** MAJOR * 10000 + MINOR * 100 + PATCH (compare with precond_version_number()). */\n\
         #define PRECOND_VERSION_NUMBER {}\n",
        v("CARGO_PKG_VERSION"),
        num(&major) * 10000 + num(&minor) * 100 + num(&patch)
    ));
    cbindgen::Builder::new()
        .with_src(dir.join("src/lib.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate precond.h")
        .write_to_file(out.join("precond.h"));
}
