//! `precond report` end to end: `--quick` runs, every verdict holds, `results.json` parses and
//! its numbers appear in the page, and the page is well-formed XML (XHTML-compatible markup).

use std::path::PathBuf;
use std::process::Command;

use precond_cli::report::fmt_num;
use serde_json::Value;

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("precond-report-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn precond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_precond"))
        .args(args)
        .output()
        .expect("precond runs")
}

/// Every finite number of the tables and checks, as the page prints it.
fn page_numbers(j: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in j["experiments"].as_array().expect("experiments") {
        for t in e["evidence"]["tables"].as_array().expect("tables") {
            for row in t["rows"].as_array().expect("rows") {
                for c in row.as_array().expect("row") {
                    if let Some(v) = c.as_f64() {
                        out.push(fmt_num(v));
                    }
                }
            }
        }
        for c in e["evidence"]["checks"].as_array().expect("checks") {
            for k in ["value", "bound", "margin"] {
                if let Some(v) = c[k].as_f64() {
                    out.push(fmt_num(v));
                }
            }
        }
        if let Some(m) = e["margin"].as_f64() {
            out.push(fmt_num(m));
        }
    }
    out
}

#[test]
fn quick_report_runs_and_every_claim_holds() {
    let dir = out_dir("quick");
    let out = precond(&["report", "--quick", "--out", dir.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("claims hold"), "{stdout}");
    // No progress bar output when stderr is not a terminal.
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("results.json")).expect("results.json"),
    )
    .expect("results.json parses");
    let exps = json["experiments"].as_array().expect("experiments array");
    let registry = precond_cli::experiments::registry();
    assert_eq!(
        exps.len(),
        registry.len(),
        "every registered experiment ran"
    );
    for e in exps {
        let id = e["id"].as_str().expect("id");
        assert_eq!(
            e["verdict"],
            "holds",
            "{id}: {}",
            serde_json::to_string_pretty(&e["evidence"]["checks"]).unwrap_or_default()
        );
        let checks = e["evidence"]["checks"].as_array().expect("checks");
        assert!(!checks.is_empty(), "{id} has checks");
        for c in checks {
            assert_eq!(c["holds"], true, "{id}: {c}");
            assert!(
                c["margin"].as_f64().expect("finite margin") >= 0.0,
                "{id}: {c}"
            );
        }
        assert!(
            !e["evidence"]["plots"].as_array().expect("plots").is_empty(),
            "{id} has a plot"
        );
        assert!(
            stdout.contains(e["title"].as_str().expect("title")),
            "summary names {id}"
        );
    }
    assert_eq!(json["holds"].as_u64(), Some(exps.len() as u64));

    let html = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
    for n in page_numbers(&json) {
        assert!(
            html.contains(&n),
            "number {n} of results.json is not in the page"
        );
    }
    // Well-formed: the whole page parses as XML, one <svg> per plot, a section per experiment.
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&html, opts)
        .expect("index.html is well-formed XHTML");
    let svgs = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "svg")
        .count();
    let plots: usize = exps
        .iter()
        .map(|e| e["evidence"]["plots"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(svgs, plots);
    // Each plot is also written as a standalone, well-formed SVG file.
    let files: Vec<_> = std::fs::read_dir(dir.join("plots"))
        .expect("plots dir")
        .collect();
    assert_eq!(files.len(), plots);
    for f in files {
        let svg = std::fs::read_to_string(f.expect("entry").path()).expect("svg");
        roxmltree::Document::parse(&svg).expect("standalone SVG is well-formed");
    }
    for e in exps {
        let id = e["id"].as_str().expect("id");
        assert!(
            doc.descendants().any(|n| n.attribute("id") == Some(id)),
            "section {id}"
        );
    }
    // Self-contained: no external resources.
    for bad in ["<script src", "<link ", "http://cdn", "https://"] {
        assert!(
            !html.contains(bad),
            "page references an external resource: {bad}"
        );
    }
    in_headless_chromium(&dir.join("index.html"), plots);
}

/// The Chromium binary: `$PRECOND_CHROMIUM`, else `chromium` or `chromium-browser` on the `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRECOND_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Opens the page in headless Chromium: no console error, no script error, every plot rendered
/// with a non-zero size (the page's own check records the counts on `<html>`, read from the
/// DOM Chromium dumps after load). Skipped with a message when Chromium is absent, unless
/// `PRECOND_REQUIRE_CHROMIUM=1` (CI installs it and sets that).
fn in_headless_chromium(page: &std::path::Path, plots: usize) {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("PRECOND_REQUIRE_CHROMIUM").is_none(),
            "PRECOND_REQUIRE_CHROMIUM is set but no chromium was found"
        );
        eprintln!(
            "skipped the headless-browser check: no chromium on PATH (apt-get install chromium)"
        );
        return;
    };
    let profile = out_dir("chromium-profile");
    let out = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    let attr = |name: &str| -> Option<usize> {
        let key = format!("{name}=\"");
        let at = dom.find(&key)? + key.len();
        dom[at..].split('"').next()?.parse().ok()
    };
    assert_eq!(
        attr("data-plots"),
        Some(plots),
        "plots in the rendered page\n{log}"
    );
    assert_eq!(
        attr("data-plots-rendered"),
        Some(plots),
        "plots with a non-zero size\n{log}"
    );
    assert_eq!(attr("data-errors"), Some(0), "script errors\n{log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
}

#[test]
fn only_selects_by_id_or_number_and_rejects_unknown() {
    let dir = out_dir("only");
    let out = precond(&[
        "report",
        "--quick",
        "--only",
        "3,gd_rate",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("json"))
            .expect("parses");
    let ids: Vec<&str> = json["experiments"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["gd_rate", "van_der_sluis"]);

    let out = precond(&[
        "report",
        "--only",
        "nope",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown experiment is a usage error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: invalid argument --only: unknown experiment 'nope': expected one of 1 (gd_rate)"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_seed_same_numbers() {
    let (a, b) = (out_dir("seed-a"), out_dir("seed-b"));
    for d in [&a, &b] {
        let out = precond(&[
            "report",
            "--quick",
            "--only",
            "3",
            "--seed",
            "7",
            "--out",
            d.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success());
    }
    let strip = |d: &PathBuf| {
        let mut j: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).expect("json"))
                .expect("parses");
        j["seconds"] = Value::Null;
        for e in j["experiments"].as_array_mut().expect("array") {
            e["seconds"] = Value::Null;
        }
        j
    };
    assert_eq!(strip(&a), strip(&b));
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn out_writes_only_its_files_never_through_a_link_and_removes_stale_plots() {
    let dir = out_dir("links");
    let elsewhere = out_dir("links-elsewhere");
    std::fs::create_dir_all(dir.join("plots")).expect("dirs");
    std::fs::create_dir_all(&elsewhere).expect("dirs");
    let target = elsewhere.join("precious.json");
    std::fs::write(&target, "keep me").expect("write");
    std::os::unix::fs::symlink(&target, dir.join("results.json")).expect("symlink");
    let plot_target = elsewhere.join("plot.svg");
    std::fs::write(&plot_target, "<svg/>").expect("write");
    std::fs::write(dir.join("plots/old.svg"), "<svg/>").expect("write");
    std::os::unix::fs::symlink(&plot_target, dir.join("plots/stale-link.svg")).expect("symlink");
    std::fs::write(dir.join("plots/notes.txt"), "mine").expect("write");
    std::fs::write(dir.join("mine.txt"), "mine").expect("write");

    let out = precond(&[
        "report",
        "--quick",
        "--only",
        "3",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // not written through the link: its target is unchanged, the link became the real file
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep me");
    let meta = std::fs::symlink_metadata(dir.join("results.json")).expect("results.json");
    assert!(meta.is_file(), "results.json is now a regular file");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("json"))
            .expect("parses");
    assert_eq!(json["experiments"][0]["id"], "van_der_sluis");
    // stale plots removed (the link itself, not its target); other files kept
    assert!(!dir.join("plots/old.svg").exists());
    assert!(std::fs::symlink_metadata(dir.join("plots/stale-link.svg")).is_err());
    assert_eq!(
        std::fs::read_to_string(&plot_target).expect("kept"),
        "<svg/>"
    );
    assert!(dir.join("plots/notes.txt").exists());
    assert!(dir.join("mine.txt").exists());
    let svgs: Vec<String> = std::fs::read_dir(dir.join("plots"))
        .expect("plots")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    assert!(!svgs.is_empty());
    assert!(
        svgs.iter().all(|n| n.starts_with("03-van_der_sluis-")),
        "{svgs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn a_bad_out_folder_fails_before_any_experiment_runs() {
    let base = out_dir("badout");
    std::fs::create_dir_all(&base).expect("dir");
    let file = base.join("a-file");
    std::fs::write(&file, "x").expect("write");
    let real = base.join("real");
    std::fs::create_dir_all(&real).expect("dir");
    let link = base.join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let cases = [
        (file.clone(), "exists and is not a directory"),
        (link.clone(), "symbolic link"),
        // not writable, even for root
        (
            PathBuf::from("/proc"),
            "cannot create a file in this folder",
        ),
    ];
    for (path, want) in cases {
        let p = path.to_str().expect("utf-8");
        let t = std::time::Instant::now();
        // the full (not --quick) run takes minutes: failing fast shows nothing ran
        let out = precond(&["report", "--out", p]);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(out.status.code(), Some(1), "{p}");
        assert!(out.stdout.is_empty(), "{p}: nothing ran, no summary");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("error: cannot write {p}: ")),
            "{err}"
        );
        assert!(err.contains(want), "{p}: {err}");
        assert!(secs < 20.0, "{p}: failed after {secs} s");
    }
    assert!(
        std::fs::read_dir(&real).expect("real").next().is_none(),
        "nothing written via the link"
    );
    let _ = std::fs::remove_dir_all(&base);
}
