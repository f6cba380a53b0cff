//! Parameter groups resolved into segments: contiguous ranges of the flat buffer, sorted, covering
//! `0..n`, each with its own learning rate, weight decay and regularization (gaps between groups
//! get the top-level values).

use crate::config::OptimizerConfig;
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
        });
        pos = g.end;
    }
    if pos < n || n == 0 {
        segments.push(top(pos, n));
    }
    Ok(segments)
}
