//! Cross-checks the Julia package `ffi-examples/julia/Precond` against the generated header
//! (Julia is not installable on the CI machines): every `ccall` in the package's Julia files
//! (`src/`, `test/`, `examples/`) names a function of `precond.h` with the same number of
//! arguments and compatible C types, passes as many values as it declares types, every header
//! function is wrapped, the Julia mirrors of the C structs have the C fields in the same order
//! with the same types, and the Julia constants equal the header's enum values. When `julia` is
//! on PATH, the example script and the package's tests are also run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const HEADER: &str = include_str!("../../../include/precond.h");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Julia package directory.
fn package() -> PathBuf {
    root().join("ffi-examples/julia/Precond")
}

/// The module `src/Precond.jl` (structs and constants live there).
fn julia_source() -> String {
    std::fs::read_to_string(package().join("src/Precond.jl")).expect("Precond.jl")
}

/// Every `.jl` file of the package (sorted), with its text.
fn julia_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "jl") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&package(), &mut paths);
    paths.sort();
    let files: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read .jl");
            (p, text)
        })
        .collect();
    for want in ["src/Precond.jl", "test/runtests.jl", "examples/example.jl"] {
        assert!(
            files.iter().any(|(p, _)| p.ends_with(want)),
            "{want} missing from the Julia package"
        );
    }
    files
}

/// A C type reduced to what matters for the ABI: base name and pointer depth.
#[derive(Debug, Clone, PartialEq)]
struct CType {
    base: String,
    ptr: usize,
}

fn ctype(decl: &str) -> CType {
    let ptr = decl.matches('*').count();
    let base = decl
        .replace('*', " ")
        .split_whitespace()
        .filter(|t| !matches!(*t, "const" | "struct" | "enum"))
        .collect::<Vec<_>>()
        .join(" ");
    CType { base, ptr }
}

/// Splits `type name` into the type part (the identifier at the end is the name).
fn split_decl(decl: &str) -> (CType, String) {
    let decl = decl.trim();
    let name_start = decl
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    (ctype(&decl[..name_start]), decl[name_start..].to_string())
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("*/").map_or(rest.len(), |j| i + j + 2);
        rest = &rest[j..];
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

struct Header {
    functions: HashMap<String, (CType, Vec<CType>)>,
    structs: HashMap<String, Vec<(String, CType)>>,
    enum_values: HashMap<String, i64>,
}

fn parse_header() -> Header {
    let text = strip_comments(HEADER);
    let mut structs = HashMap::new();
    let mut enum_values = HashMap::new();
    let mut rest = String::new();
    let mut s = text.as_str();
    // typedef blocks `typedef struct|enum NAME { ... } NAME;`
    while let Some(i) = s.find("typedef ") {
        rest.push_str(&s[..i]);
        let after = &s[i..];
        let end_stmt = after.find(';').expect("typedef ends");
        match (after.find('{'), after.find('}')) {
            (Some(open), Some(close)) if open < end_stmt => {
                let head: Vec<&str> = after[..open].split_whitespace().collect();
                let (kind, name) = (head[1], head[2].to_string());
                let body = &after[open + 1..close];
                if kind == "struct" {
                    let fields = body
                        .split(';')
                        .filter(|f| !f.trim().is_empty())
                        .map(|f| {
                            let (t, n) = split_decl(f);
                            (n, t)
                        })
                        .collect();
                    structs.insert(name, fields);
                } else {
                    for v in body.split(',').filter(|v| !v.trim().is_empty()) {
                        let (k, val) = v.split_once('=').expect("explicit enum values");
                        enum_values.insert(
                            k.trim().to_string(),
                            val.trim().parse().expect("integer enum value"),
                        );
                    }
                }
                let semi = after[close..].find(';').expect("typedef ends") + close;
                s = &after[semi + 1..];
            }
            _ => {
                s = &after[end_stmt + 1..];
            }
        }
    }
    rest.push_str(s);
    let mut functions = HashMap::new();
    for stmt in rest.split(';') {
        let stmt = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        // the first prototype follows the C++ guard `extern "C" {`
        let stmt = stmt.trim_start_matches("extern \"C\" {").trim().to_string();
        let Some(open2) = stmt.find('(') else {
            continue;
        };
        let (ret, name) = split_decl(&stmt[..open2]);
        let args_text = &stmt[open2 + 1..stmt.rfind(')').expect("closing paren")];
        let args = if args_text.trim() == "void" {
            Vec::new()
        } else {
            args_text.split(',').map(|a| split_decl(a).0).collect()
        };
        functions.insert(name, (ret, args));
    }
    Header {
        functions,
        structs,
        enum_values,
    }
}

/// Splits at top-level commas (outside (), {}, [] and strings).
fn split_top(s: &str) -> Vec<String> {
    let (mut depth, mut in_str, mut cur, mut out) = (0i32, false, String::new(), Vec::new());
    let mut prev = ' ';
    for c in s.chars() {
        if in_str {
            if c == '"' && prev != '\\' {
                in_str = false;
            }
        } else {
            match c {
                '"' => in_str = true,
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(cur.trim().to_string());
                    cur.clear();
                    prev = c;
                    continue;
                }
                _ => {}
            }
        }
        cur.push(c);
        prev = c;
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The text inside the parenthesis opening at byte `open` of `s`.
fn balanced(s: &str, open: usize) -> &str {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parenthesis at byte {open}");
}

struct Ccall {
    name: String,
    ret: String,
    types: Vec<String>,
    n_values: usize,
    line: usize,
}

fn parse_ccalls(src: &str) -> Vec<Ccall> {
    let mut out = Vec::new();
    for (pos, _) in src.match_indices("ccall(") {
        let inner = balanced(src, pos + "ccall".len());
        let items = split_top(inner);
        let line = src[..pos].lines().count();
        assert!(items.len() >= 3, "line {line}: malformed ccall");
        let target = items[0]
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or_else(|| panic!("line {line}: (:name, libprecond())"));
        let (sym, lib) = target.split_once(',').expect("(:name, lib)");
        // the library is chosen at run time by `libprecond()` (PRECOND_LIB or the default path)
        assert_eq!(lib.trim(), "libprecond()", "line {line}: library");
        let name = sym.trim().trim_start_matches(':').to_string();
        let tuple = items[2].trim();
        assert!(
            tuple.starts_with('(') && tuple.ends_with(')'),
            "line {line}: argument types must be a tuple"
        );
        let types = split_top(&tuple[1..tuple.len() - 1]);
        out.push(Ccall {
            name,
            ret: items[1].clone(),
            types,
            n_values: items.len() - 3,
            line,
        });
    }
    out
}

/// Julia struct name of each C struct.
const STRUCTS: [(&str, &str); 8] = [
    ("precond_cond2_t", "Cond2"),
    ("precond_root_info_t", "RootInfo"),
    ("precond_matrix_block_t", "MatrixBlock"),
    ("precond_spectrum_t", "Spectrum"),
    ("precond_preconditioned_cond_t", "PreconditionedCond"),
    ("precond_cond_estimate_t", "CondEstimate"),
    ("precond_dataset_kappa_t", "DatasetKappa"),
    ("precond_optimizer_config_t", "OptimizerConfig"),
];

/// Does the Julia type `j` have the ABI of the C type `c`?
fn compatible(c: &CType, j: &str) -> bool {
    let j = j.trim();
    if c.ptr > 0 {
        if c.base == "char" && c.ptr == 1 && j == "Cstring" {
            return true;
        }
        for wrap in ["Ptr{", "Ref{"] {
            if let Some(inner) = j.strip_prefix(wrap).and_then(|r| r.strip_suffix('}')) {
                let pointee = CType {
                    base: c.base.clone(),
                    ptr: c.ptr - 1,
                };
                return compatible(&pointee, inner);
            }
        }
        return false;
    }
    let allowed: &[&str] = match c.base.as_str() {
        "double" => &["Cdouble", "Float64"],
        "float" => &["Cfloat", "Float32"],
        "size_t" => &["Csize_t", "UInt"],
        "int32_t" | "precond_status_t" => &["Cint", "Int32"],
        "uint32_t" => &["UInt32", "Cuint"],
        "uint64_t" => &["UInt64"],
        "int64_t" => &["Int64"],
        "uint8_t" => &["UInt8"],
        "char" => &["Cchar", "UInt8"],
        "void" => &["Cvoid", "Nothing"],
        // opaque handles
        "precond_optimizer_t" | "precond_sym_root_t" => &["Cvoid"],
        // the gradient callback of precond_grad_norm_regularize: an @cfunction pointer
        "precond_gradient_fn" => &["Ptr{Cvoid}"],
        other => {
            return STRUCTS.iter().any(|(cn, jn)| *cn == other && *jn == j);
        }
    };
    allowed.contains(&j)
}

#[test]
fn every_ccall_matches_the_header() {
    let h = parse_header();
    assert!(
        h.functions.len() >= 28,
        "parsed only {} functions",
        h.functions.len()
    );
    let mut calls = Vec::new();
    for (path, src) in julia_files() {
        let file = path
            .strip_prefix(package())
            .unwrap_or(&path)
            .display()
            .to_string();
        calls.extend(parse_ccalls(&src).into_iter().map(|c| (file.clone(), c)));
    }
    assert!(calls.len() >= 28, "only {} ccalls", calls.len());
    for (file, c) in &calls {
        let (ret, args) = h
            .functions
            .get(&c.name)
            .unwrap_or_else(|| panic!("{file}:{}: `{}` is not in precond.h", c.line, c.name));
        assert!(
            compatible(ret, &c.ret),
            "{file}:{}: {} returns {ret:?}, ccall says {}",
            c.line,
            c.name,
            c.ret
        );
        assert_eq!(
            c.types.len(),
            args.len(),
            "{file}:{}: {} takes {} arguments, ccall declares {}",
            c.line,
            c.name,
            args.len(),
            c.types.len()
        );
        assert_eq!(
            c.n_values,
            c.types.len(),
            "{file}:{}: {} declares {} types but passes {} values",
            c.line,
            c.name,
            c.types.len(),
            c.n_values
        );
        for (i, (ct, jt)) in args.iter().zip(&c.types).enumerate() {
            assert!(
                compatible(ct, jt),
                "{file}:{}: argument {i} of {}: C {ct:?} vs Julia {jt}",
                c.line,
                c.name
            );
        }
    }
    let wrapped: Vec<&str> = calls
        .iter()
        .filter(|(file, _)| file.ends_with("Precond.jl"))
        .map(|(_, c)| c.name.as_str())
        .collect();
    for f in h.functions.keys() {
        assert!(
            wrapped.contains(&f.as_str()),
            "{f} is not wrapped in src/Precond.jl"
        );
    }
}

#[test]
fn julia_structs_mirror_the_c_structs() {
    let h = parse_header();
    let src = julia_source();
    for (cname, jname) in STRUCTS {
        let cfields = h
            .structs
            .get(cname)
            .unwrap_or_else(|| panic!("{cname} not in precond.h"));
        let start = src
            .find(&format!("struct {jname}\n"))
            .unwrap_or_else(|| panic!("struct {jname} not in Precond.jl"));
        let body = &src[start..];
        let body = &body[..body.find("\nend").expect("struct end")];
        let jfields: Vec<(&str, &str)> = body
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().split_once("::"))
            .collect();
        assert_eq!(
            jfields.len(),
            cfields.len(),
            "{jname} vs {cname}: field count"
        );
        for ((jn, jt), (cn, ct)) in jfields.iter().zip(cfields) {
            assert_eq!(jn, cn, "{jname}: field order/name");
            assert!(compatible(ct, jt), "{jname}.{jn}: C {ct:?} vs Julia {jt}");
        }
    }
}

#[test]
fn julia_constants_equal_the_header_enums() {
    let h = parse_header();
    assert!(h.enum_values.len() >= 20, "{:?}", h.enum_values);
    let src = julia_source();
    let mut seen = 0;
    for line in src.lines() {
        let Some(rest) = line.strip_prefix("const PRECOND_") else {
            continue;
        };
        let (name, val) = rest.split_once('=').expect("const NAME = Cint(v)");
        let name = format!("PRECOND_{}", name.trim());
        let v: i64 = val
            .trim()
            .trim_start_matches("Cint(")
            .trim_end_matches(')')
            .parse()
            .expect("integer constant");
        assert_eq!(h.enum_values.get(&name), Some(&v), "{name}");
        seen += 1;
    }
    assert_eq!(
        seen,
        h.enum_values.len(),
        "every header enum value has a Julia constant"
    );
}

/// `julia` on PATH, or `None` (then the Julia code is only cross-checked statically).
fn julia() -> Option<&'static str> {
    let out = Command::new("julia").arg("--version").output();
    if out.is_ok_and(|o| o.status.success()) {
        Some("julia")
    } else {
        eprintln!("julia is not on PATH: the Julia package is only cross-checked statically");
        None
    }
}

/// `libprecond_ffi.so` of this build (next to the test binary).
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent()
        .expect("deps")
        .join("libprecond_ffi.so")
        .canonicalize()
        .expect("libprecond_ffi.so next to the test binary")
}

#[test]
fn julia_example_runs_when_julia_is_installed() {
    let Some(julia) = julia() else {
        return;
    };
    let out = Command::new(julia)
        .arg(format!("--project={}", package().display()))
        .arg(package().join("examples/example.jl"))
        .arg(root().join("crates/precond-nn/data/breast_cancer.csv"))
        .env("PRECOND_LIB", library())
        .output()
        .expect("run julia");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("error PRECOND_NON_FINITE"), "{stdout}");
    assert!(
        stdout.contains("error PRECOND_INVALID_ARGUMENT"),
        "{stdout}"
    );
    let kappa: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kappa_H "))
        .and_then(|v| v.parse().ok())
        .expect("kappa_H line");
    assert!(
        (kappa / 83_714.568_902_505_65 - 1.0).abs() < 1e-9,
        "{kappa}"
    );
}

#[test]
fn julia_package_tests_pass_when_julia_is_installed() {
    let Some(julia) = julia() else {
        return;
    };
    let out = Command::new(julia)
        .arg(format!("--project={}", package().display()))
        .args(["-e", "using Pkg; Pkg.test()"])
        .env("PRECOND_LIB", library())
        .output()
        .expect("run julia");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
