//! The committed `include/precond.h` must equal what cbindgen generates from the current sources
//! (build.rs writes it to `OUT_DIR`). `PRECOND_BLESS=1` rewrites the committed copy.

use std::path::Path;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/precond.h"));

#[test]
fn committed_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include/precond.h");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != GENERATED {
        if std::env::var_os("PRECOND_BLESS").is_some() {
            std::fs::write(&path, GENERATED).expect("write include/precond.h");
            return;
        }
        let line = committed
            .lines()
            .zip(GENERATED.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(GENERATED.lines().count()),
                |i| i,
            );
        panic!(
            "{} is out of date (first difference at line {}); regenerate it with \
             `PRECOND_BLESS=1 cargo test -p precond-ffi --test header`",
            path.display(),
            line + 1
        );
    }
}

#[test]
fn header_version_macros_agree_with_the_crate() {
    let v = env!("CARGO_PKG_VERSION");
    assert!(GENERATED.contains(&format!("#define PRECOND_VERSION \"{v}\"")));
    for (name, val) in [
        ("MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            GENERATED.contains(&format!("#define PRECOND_VERSION_{name} {val}\n")),
            "PRECOND_VERSION_{name}"
        );
    }
}

#[test]
fn every_exported_function_is_declared() {
    // every `pub unsafe extern "C" fn` / `pub extern "C" fn` in src appears in the header
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut n = 0;
    for e in std::fs::read_dir(&src).expect("src dir") {
        let p = e.expect("entry").path();
        let text = std::fs::read_to_string(&p).expect("read source");
        for line in text.lines() {
            let l = line.trim_start();
            if let Some(rest) = l
                .strip_prefix("pub unsafe extern \"C\" fn ")
                .or_else(|| l.strip_prefix("pub extern \"C\" fn "))
            {
                let name = rest.split('(').next().unwrap_or_default();
                let declared = GENERATED.lines().any(|h| {
                    !h.trim_start().starts_with('*')
                        && (h.contains(&format!(" {name}(")) || h.contains(&format!("*{name}(")))
                });
                assert!(declared, "{name} is not declared in precond.h");
                n += 1;
            }
        }
    }
    assert!(n >= 25, "only {n} exported functions found");
}

#[test]
fn every_exported_function_has_a_panic_boundary() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut n = 0;
    for e in std::fs::read_dir(&src).expect("src dir") {
        let text = std::fs::read_to_string(e.expect("entry").path()).expect("read source");
        for (i, _) in text.match_indices("extern \"C\" fn ") {
            let rest = &text[i..];
            let name = rest["extern \"C\" fn ".len()..]
                .split('(')
                .next()
                .unwrap_or_default();
            let body = &rest[..rest.find("\n}\n").expect("function end")];
            assert!(
                [
                    "boundary(",
                    "with_handle(",
                    "with_handle_step(",
                    "with_handle_ref(",
                    "with_handle_ref_full(",
                    "free_box(",
                    "catch_unwind("
                ]
                .iter()
                .any(|b| body.contains(b)),
                "{name} has no panic boundary"
            );
            n += 1;
        }
    }
    assert!(n >= 25, "only {n} exported functions found");
}
