//! Parameter groups resolved into segments: contiguous ranges of the flat buffer, sorted, covering
//! `0..n`, each with its own learning rate, weight decay and regularization (gaps between groups
//! get the top-level values), then into the optimizer's parts: the top-level optimizer over its
//! segments, and one part per group that runs its own optimizer or a matrix optimizer.

use crate::config::{MatrixShape, OptimizerConfig};
use crate::error::{OptimError, Result};
use crate::regularization::Regularization;

/// A contiguous range of the flat buffer with its own hyperparameters.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Own base learning rate (`None`: the optimizer's, which `set_lr` changes).
    pub(crate) lr: Option<f64>,
    pub(crate) weight_decay: f64,
    pub(crate) reg: Regularization,
    /// The config group it comes from (`None`: the top level).
    pub(crate) group: Option<usize>,
}

/// The segments of `cfg`'s groups over `n` parameters. Errors: [`OptimError::GroupRange`] (empty or
/// out of `0..n`), [`OptimError::GroupOverlap`].
pub(crate) fn segments(cfg: &OptimizerConfig, n: usize) -> Result<Vec<Segment>> {
    for (i, g) in cfg.groups.iter().enumerate() {
        if g.start >= g.end || g.end > n {
            return Err(OptimError::GroupRange {
                index: i,
                start: g.start,
                end: g.end,
                n_params: n,
            });
        }
    }
    let mut order: Vec<usize> = (0..cfg.groups.len()).collect();
    order.sort_by_key(|&i| cfg.groups[i].start);
    for w in order.windows(2) {
        if cfg.groups[w[0]].end > cfg.groups[w[1]].start {
            let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(OptimError::GroupOverlap {
                first: a,
                second: b,
            });
        }
    }
    let top = |start, end| Segment {
        start,
        end,
        lr: None,
        weight_decay: cfg.weight_decay,
        reg: cfg.regularization,
        group: None,
    };
    let mut segments = Vec::new();
    let mut pos = 0;
    for &i in &order {
        let g = &cfg.groups[i];
        if g.start > pos {
            segments.push(top(pos, g.start));
        }
        segments.push(Segment {
            start: g.start,
            end: g.end,
            lr: g.lr,
            weight_decay: g.weight_decay.unwrap_or(cfg.weight_decay),
            reg: g.regularization.unwrap_or(cfg.regularization),
            group: Some(i),
        });
        pos = g.end;
    }
    if pos < n || n == 0 {
        segments.push(top(pos, n));
    }
    Ok(segments)
}

/// One optimizer over some segments: the top level's, or a group's own or matrix optimizer.
#[derive(Clone, Debug)]
pub(crate) struct PartPlan {
    /// The optimizer's config (a group's own: its inner config with the top level's schedule and
    /// non-finite policy).
    pub(crate) cfg: OptimizerConfig,
    /// Its segments, sorted, in flat-buffer coordinates.
    pub(crate) segments: Vec<Segment>,
    /// The group it runs on (`None`: the top level).
    pub(crate) group: Option<usize>,
    /// The matrix shape (matrix kinds: always set, one segment).
    pub(crate) shape: Option<MatrixShape>,
    /// BNP of the group (`[units, d]` checked against the range; one segment).
    pub(crate) bnp: Option<crate::bnp::BnpSpec>,
}

/// The parts of `cfg` over `n` parameters: the top level first (when it covers any index), then
/// one part per group with its own optimizer or run by a matrix optimizer, in group order.
/// Errors: those of [`segments`]; a matrix optimizer without a matching 2-D shape (naming the
/// group, or the top-level ranges).
pub(crate) fn parts(cfg: &OptimizerConfig, n: usize) -> Result<Vec<PartPlan>> {
    let segs = segments(cfg, n)?;
    let top_matrix = cfg.optimizer.is_matrix();
    let mut top = Vec::new();
    let mut own: Vec<PartPlan> = Vec::new();
    for seg in segs {
        let Some(gi) = seg.group else {
            top.push(seg);
            continue;
        };
        let g = &cfg.groups[gi];
        let path = format!("groups[{gi}]");
        let (pcfg, mut seg) = match &g.optimizer {
            Some(inner) => {
                let mut c = (**inner).clone();
                c.schedule = cfg.schedule.clone();
                c.nonfinite = cfg.nonfinite;
                c.groups = Vec::new();
                c.shape = None;
                let seg = Segment {
                    lr: Some(c.lr),
                    weight_decay: c.weight_decay,
                    reg: c.regularization,
                    ..seg
                };
                (c, seg)
            }
            None if top_matrix && g.bnp.is_none() => (cfg.clone(), seg),
            None if g.bnp.is_some() => {
                // a BNP group without its own optimizer runs the top level's as its own part
                let mut c = cfg.clone();
                c.groups = Vec::new();
                c.shape = None;
                (c, seg)
            }
            None => {
                top.push(seg);
                continue;
            }
        };
        seg.group = Some(gi);
        if g.bnp.is_some() {
            check_bnp(g.shape, seg.end - seg.start, &path, pcfg.optimizer)?;
        } else if pcfg.optimizer.is_matrix() {
            check_shape(g.shape, seg.end - seg.start, &path, pcfg.optimizer.name())?;
        }
        own.push(PartPlan {
            shape: g.shape,
            cfg: pcfg,
            segments: vec![seg],
            group: Some(gi),
            bnp: g.bnp,
        });
    }
    let mut out = Vec::with_capacity(own.len() + 1);
    let top_len: usize = top.iter().map(|s| s.end - s.start).sum();
    if top_matrix && top_len > 0 {
        let ranges: Vec<String> = top
            .iter()
            .map(|s| format!("{}..{}", s.start, s.end))
            .collect();
        if top.len() != 1 {
            return Err(OptimError::config(
                "shape",
                format!(
                    "`{}` preconditions one matrix per group, but the indices {} not in any group are not contiguous; cover them with groups that each give a shape",
                    cfg.optimizer.name(),
                    ranges.join(", ")
                ),
            ));
        }
        check_shape(cfg.shape, top_len, "", cfg.optimizer.name()).map_err(|e| match e {
            OptimError::Config { key, message } => OptimError::Config {
                key,
                message: format!("{message} (the top level covers {})", ranges.join(", ")),
            },
            other => other,
        })?;
    }
    if top_len > 0 || own.is_empty() {
        out.push(PartPlan {
            cfg: cfg.clone(),
            segments: top,
            group: None,
            shape: cfg.shape,
            bnp: None,
        });
    }
    out.extend(own);
    Ok(out)
}

/// A matrix optimizer's shape: present, 2-D, `rows · cols = len`.
fn check_shape(shape: Option<MatrixShape>, len: usize, path: &str, name: &str) -> Result<()> {
    let key = if path.is_empty() {
        "shape".to_string()
    } else {
        format!("{path}.shape")
    };
    match shape {
        None => Err(OptimError::config(
            key,
            format!(
                "`{name}` preconditions a matrix: give the 2-D shape [rows, cols] of these {len} parameters"
            ),
        )),
        Some(s) if s.len() != Some(len) => Err(OptimError::config(
            key,
            format!(
                "[{}, {}] has {} entries, the range has {len}",
                s.rows,
                s.cols,
                s.len()
                    .map_or_else(|| "too many".to_string(), |l| l.to_string())
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// A BNP group: a per-element optimizer, a row-major `shape` `[units, d]` and
/// `units·d + units` entries (the weights then the bias).
fn check_bnp(
    shape: Option<MatrixShape>,
    len: usize,
    path: &str,
    kind: crate::config::OptimizerKind,
) -> Result<()> {
    if kind.is_matrix() {
        return Err(OptimError::config(
            format!("{path}.bnp"),
            format!(
                "BNP preconditions the gradient of a per-element optimizer; `{}` is a matrix optimizer",
                kind.name()
            ),
        ));
    }
    let Some(s) = shape else {
        return Err(OptimError::config(
            format!("{path}.shape"),
            format!(
                "`bnp` needs the layer's shape [units, d] (the range holds units·d weights then units biases; it has {len} entries)"
            ),
        ));
    };
    if s.order != crate::config::MatrixOrder::RowMajor {
        return Err(OptimError::Unsupported(format!(
            "{path}.order: `bnp` takes the weights row-major (\"C\", torch's Linear.weight), not \"F\""
        )));
    }
    let need = s
        .rows
        .checked_mul(s.cols)
        .and_then(|w| w.checked_add(s.rows));
    if need != Some(len) {
        return Err(OptimError::config(
            format!("{path}.shape"),
            format!(
                "`bnp` with [{}, {}] needs units·d + units = {} entries (weights then bias), the range has {len}",
                s.rows,
                s.cols,
                need.map_or_else(|| "too many".to_string(), |l| l.to_string())
            ),
        ));
    }
    Ok(())
}
