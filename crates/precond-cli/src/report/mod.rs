//! `precond report`: runs the registered experiments, and writes one self-contained HTML page
//! (`index.html`: inline CSS, inline SVG plots from `plotters`, tables, and for each experiment
//! the claim, the evidence and a verdict computed from the numbers) plus `results.json` (every
//! number of the page, and the plotted data).
//!
//! An experiment is one file in `src/experiments/` implementing [`Experiment`]; it returns
//! [`Evidence`]: tables, plots and [`Check`]s. The verdict of an experiment is "holds" when every
//! check holds; its margin is the smallest check margin.

mod format;
mod html;
mod plot;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::CliError;

pub use format::fmt_num;
pub use html::render_html;
pub use plot::render_svg;

/// What an experiment is given: the run's mode and seed.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Smaller problems and fewer repetitions (CI; seconds).
    pub quick: bool,
    /// The run's seed; every random number of an experiment derives from it.
    pub seed: u64,
}

impl Ctx {
    /// A seeded generator for one independent stream of an experiment (`stream` distinguishes
    /// the experiment's uses, so adding one does not shift the others).
    pub fn rng(&self, stream: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// `full` in a default run, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// One experiment of the report: a claim of THEORY.md and the code that tests it.
pub trait Experiment: Sync {
    /// Short identifier used by `--only` and as the HTML anchor (e.g. `gd_rate`).
    fn id(&self) -> &'static str;
    /// Number of the experiment in the report (1–10).
    fn number(&self) -> u32;
    /// Title.
    fn title(&self) -> &'static str;
    /// Where the claim comes from (e.g. "Theorem 1, eq. (3)").
    fn theory(&self) -> &'static str;
    /// The claim, in one or two sentences.
    fn claim(&self) -> &'static str;
    /// Runs the experiment.
    ///
    /// # Errors
    /// [`CliError`] when a library call fails (a bug, since the inputs are generated).
    fn run(&self, ctx: &Ctx) -> Result<Evidence, CliError>;
}

/// A table cell: a number (formatted with [`fmt_num`] in the page; `null` in JSON when infinite)
/// or text.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// A number.
    Num(f64),
    /// Text.
    Text(String),
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Num(v)
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        Cell::Num(v as f64)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}

/// A table of the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows (each as long as `columns`).
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with the given caption and headers and no rows yet.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    /// Appends a row.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesKind {
    /// Solid line.
    Line,
    /// Dashed line (predictions, bounds).
    Dashed,
    /// Markers only.
    Points,
}

/// One data series of a plot.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Drawing style.
    pub kind: SeriesKind,
    /// Palette index (series with the same index share a colour).
    pub color: usize,
    /// Abscissae.
    pub x: Vec<f64>,
    /// Ordinates.
    pub y: Vec<f64>,
}

impl Series {
    /// A series from parallel coordinate vectors.
    pub fn new(
        name: impl Into<String>,
        kind: SeriesKind,
        color: usize,
        x: Vec<f64>,
        y: Vec<f64>,
    ) -> Self {
        Series {
            name: name.into(),
            kind,
            color,
            x,
            y,
        }
    }
}

/// A 2-D plot, rendered to inline SVG by [`render_svg`].
#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    /// Caption.
    pub title: String,
    /// Horizontal axis label.
    pub x_label: String,
    /// Vertical axis label.
    pub y_label: String,
    /// Logarithmic horizontal axis.
    pub log_x: bool,
    /// Logarithmic vertical axis.
    pub log_y: bool,
    /// The data.
    pub series: Vec<Series>,
}

impl Plot {
    /// An empty plot.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        log_x: bool,
        log_y: bool,
    ) -> Self {
        Plot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x,
            log_y,
            series: Vec::new(),
        }
    }
}

/// The comparison a check makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Relation {
    /// `value ≤ bound`.
    #[serde(rename = "<=")]
    Le,
    /// `value ≥ bound`.
    #[serde(rename = ">=")]
    Ge,
}

/// One numeric test behind a verdict: `value` against `bound`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is compared, in words.
    pub what: String,
    /// The measured number.
    pub value: f64,
    /// `<=` or `>=`.
    pub relation: Relation,
    /// The number it must not cross.
    pub bound: f64,
    /// Whether it holds.
    pub holds: bool,
    /// Relative margin: `(bound − value)/|bound|` for `<=`, `(value − bound)/|bound|` for `>=`
    /// (positive when the check holds).
    pub margin: f64,
}

impl Check {
    fn make(what: impl Into<String>, value: f64, relation: Relation, bound: f64) -> Self {
        let diff = match relation {
            Relation::Le => bound - value,
            Relation::Ge => value - bound,
        };
        let scale = if bound.abs() > 0.0 { bound.abs() } else { 1.0 };
        let holds = value.is_finite() && diff >= 0.0;
        Check {
            what: what.into(),
            value,
            relation,
            bound,
            holds,
            margin: if value.is_finite() {
                diff / scale
            } else {
                f64::NEG_INFINITY
            },
        }
    }
    /// The check `value ≤ bound`.
    pub fn le(what: impl Into<String>, value: f64, bound: f64) -> Self {
        Self::make(what, value, Relation::Le, bound)
    }
    /// The check `value ≥ bound`.
    pub fn ge(what: impl Into<String>, value: f64, bound: f64) -> Self {
        Self::make(what, value, Relation::Ge, bound)
    }
}

/// What an experiment shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Evidence {
    /// A paragraph describing the setup and what was measured.
    pub setup: String,
    /// Tables.
    pub tables: Vec<Table>,
    /// Plots.
    pub plots: Vec<Plot>,
    /// The checks the verdict is computed from.
    pub checks: Vec<Check>,
}

/// One experiment's record in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentResult {
    /// [`Experiment::id`].
    pub id: String,
    /// [`Experiment::number`].
    pub number: u32,
    /// [`Experiment::title`].
    pub title: String,
    /// [`Experiment::theory`].
    pub theory: String,
    /// [`Experiment::claim`].
    pub claim: String,
    /// `"holds"` or `"does not hold"`.
    pub verdict: String,
    /// The smallest check margin.
    pub margin: f64,
    /// Wall time of the experiment, seconds.
    pub seconds: f64,
    /// The evidence.
    pub evidence: Evidence,
}

impl ExperimentResult {
    /// True when every check holds.
    pub fn holds(&self) -> bool {
        self.evidence.checks.iter().all(|c| c.holds)
    }
}

/// The whole report: what `results.json` contains.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Program version.
    pub version: String,
    /// The seed.
    pub seed: u64,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Total wall time, seconds.
    pub seconds: f64,
    /// Number of experiments whose verdict holds.
    pub holds: usize,
    /// The experiments, in order.
    pub experiments: Vec<ExperimentResult>,
}

impl Report {
    /// The exit status of `precond report` for this report: [`crate::exit::OK`] when every
    /// experiment's verdict holds, [`crate::exit::CLAIM_FAILS`] otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.holds == self.experiments.len() {
            crate::exit::OK
        } else {
            crate::exit::CLAIM_FAILS
        }
    }
}

/// Options of `precond report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `--quick`.
    pub quick: bool,
    /// `--only`: experiment ids or numbers; empty = all.
    pub only: Vec<String>,
    /// `--seed`.
    pub seed: u64,
    /// `--out`.
    pub out: PathBuf,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

/// Selects the experiments named by `only` (ids or numbers; empty selects all).
///
/// # Errors
/// [`CliError::Argument`] naming an unknown entry and listing the valid ones.
pub fn select<'a>(
    all: &'a [Box<dyn Experiment>],
    only: &[String],
) -> Result<Vec<&'a dyn Experiment>, CliError> {
    if only.is_empty() {
        return Ok(all.iter().map(|e| e.as_ref()).collect());
    }
    let mut out: Vec<&dyn Experiment> = Vec::new();
    for name in only {
        let name = name.trim();
        let found = all
            .iter()
            .find(|e| e.id() == name || e.number().to_string() == name)
            .ok_or_else(|| CliError::Argument {
                arg: "--only",
                message: format!(
                    "unknown experiment '{name}': expected one of {}",
                    all.iter()
                        .map(|e| format!("{} ({})", e.number(), e.id()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        if !out.iter().any(|e| e.id() == found.id()) {
            out.push(found.as_ref());
        }
    }
    out.sort_by_key(|e| e.number());
    Ok(out)
}

/// Runs the selected experiments and returns the report (writes nothing).
///
/// # Errors
/// The first experiment error.
pub fn run_experiments(
    selected: &[&dyn Experiment],
    ctx: &Ctx,
    progress: bool,
) -> Result<Report, CliError> {
    let start = Instant::now();
    let bar = if progress && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(selected.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut results = Vec::new();
    for e in selected {
        bar.set_message(format!("{}. {}", e.number(), e.title()));
        let t = Instant::now();
        let evidence = e.run(ctx)?;
        let seconds = t.elapsed().as_secs_f64();
        let margin = evidence
            .checks
            .iter()
            .map(|c| c.margin)
            .fold(f64::INFINITY, f64::min);
        let mut r = ExperimentResult {
            id: e.id().into(),
            number: e.number(),
            title: e.title().into(),
            theory: e.theory().into(),
            claim: e.claim().into(),
            verdict: String::new(),
            margin,
            seconds,
            evidence,
        };
        r.verdict = if r.holds() && !r.evidence.checks.is_empty() {
            "holds".into()
        } else {
            "does not hold".into()
        };
        results.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Report {
        version: env!("CARGO_PKG_VERSION").into(),
        seed: ctx.seed,
        quick: ctx.quick,
        seconds: start.elapsed().as_secs_f64(),
        holds: results.iter().filter(|r| r.verdict == "holds").count(),
        experiments: results,
    })
}

/// The files of the report directly in the output folder.
const OWN_FILES: [&str; 2] = ["index.html", "results.json"];

fn write_error(path: &Path, message: impl Into<String>) -> CliError {
    CliError::Write {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Checks a folder the report may be written to: absent (then created, with its parents), or a
/// real directory (not a symbolic link to one) in which a file can be created. Its `plots`
/// subfolder, `index.html` and `results.json`, when present, must not be folders or links to
/// folders that the report cannot replace. `precond report` calls this before it runs any
/// experiment, so a bad `--out` fails at once.
///
/// # Errors
/// [`CliError::Write`] naming the path: it exists and is not a directory, it is a symbolic link,
/// it cannot be created, or a file cannot be created in it.
pub fn prepare_out_dir(dir: &Path) -> Result<(), CliError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(write_error(
                dir,
                "the output folder is a symbolic link; give the folder it points to",
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(write_error(dir, "exists and is not a directory"));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e.to_string()))?;
        }
        Err(e) => return Err(write_error(dir, e.to_string())),
    }
    let plots = dir.join("plots");
    match std::fs::symlink_metadata(&plots) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(write_error(
                &plots,
                "is a symbolic link; the report writes its plots only into a real folder",
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(write_error(&plots, "exists and is not a directory"));
        }
        _ => {}
    }
    for name in OWN_FILES {
        let p = dir.join(name);
        if let Ok(m) = std::fs::symlink_metadata(&p)
            && m.is_dir()
        {
            return Err(write_error(
                &p,
                "is a directory; the report writes a file there",
            ));
        }
    }
    // Writable: create (exclusively) and remove a probe file.
    let probe = dir.join(format!(".precond-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| write_error(dir, format!("cannot create a file in this folder: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| write_error(&probe, e.to_string()))?;
    Ok(())
}

/// Writes `bytes` to `path` without following a symbolic link there: into a new temporary file
/// of the same folder (created exclusively), then renamed over `path`. A link at `path` is
/// replaced by the regular file, its target is left untouched.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_error(path, e.to_string())
    })
}

/// Writes `index.html`, `results.json` and `plots/NN-id-k.svg` (each plot as its own file)
/// into `dir`, after the checks of [`prepare_out_dir`]. Only these files are written, each
/// through a temporary file renamed into place, so a symbolic link at one of these names is
/// replaced by the file and never written through. `.svg` files of `plots/` that this run did
/// not write (plots of an earlier run) are removed; other files are left alone.
///
/// # Errors
/// [`CliError::Write`] naming the path.
pub fn write_report(report: &Report, dir: &Path) -> Result<(), CliError> {
    prepare_out_dir(dir)?;
    let html = render_html(report)?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| write_error(&dir.join("results.json"), e.to_string()))?;
    write_replacing(&dir.join("index.html"), html.as_bytes())?;
    write_replacing(&dir.join("results.json"), (json + "\n").as_bytes())?;
    // Every plot also as its own SVG file, for embedding elsewhere (README, slides).
    let pd = dir.join("plots");
    if std::fs::symlink_metadata(&pd).is_err() {
        std::fs::create_dir(&pd).map_err(|e| write_error(&pd, e.to_string()))?;
    }
    let mut written = std::collections::HashSet::new();
    for e in &report.experiments {
        for (k, p) in e.evidence.plots.iter().enumerate() {
            let name = format!("{:02}-{}-{}.svg", e.number, e.id, k + 1);
            write_replacing(&pd.join(&name), render_svg(p, 720, 480)?.as_bytes())?;
            written.insert(std::ffi::OsString::from(name));
        }
    }
    let entries = std::fs::read_dir(&pd).map_err(|e| write_error(&pd, e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| write_error(&pd, e.to_string()))?;
        let name = entry.file_name();
        let is_svg = Path::new(&name)
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("svg"));
        // file_type() does not follow links: a stale link is removed, not its target.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_svg && !is_dir && !written.contains(&name) {
            let p = entry.path();
            std::fs::remove_file(&p)
                .map_err(|e| write_error(&p, format!("cannot remove a stale plot: {e}")))?;
        }
    }
    Ok(())
}

/// The short terminal summary.
pub fn summary(report: &Report, dir: &Path) -> String {
    let mut s = String::new();
    for r in &report.experiments {
        s.push_str(&format!(
            "{:>2}. {:<52} {:<14} margin {:>9}  ({:.1} s)\n",
            r.number,
            r.title,
            r.verdict,
            fmt_num(r.margin),
            r.seconds
        ));
    }
    s.push_str(&format!(
        "{} of {} claims hold; {:.1} s. Report: {}\n",
        report.holds,
        report.experiments.len(),
        report.seconds,
        dir.join("index.html").display()
    ));
    s
}
