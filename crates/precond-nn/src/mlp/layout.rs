//! The flat parameter buffer: which range holds which weight, bias, gain and shift.

use super::config::MlpConfig;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What a parameter block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A weight matrix `W^ℓ` (row-major `out × in`).
    Weight,
    /// A bias vector `b^ℓ`.
    Bias,
    /// A normalization gain `γ`.
    Gain,
    /// A normalization shift `β`.
    Shift,
}

/// A named range of the flat parameter buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamBlock {
    /// `layers.{ℓ}.weight` etc.
    pub name: String,
    /// Kind of the block.
    pub kind: ParamKind,
    /// Layer it belongs to (0-based).
    pub layer: usize,
    /// Indices in the flat buffer.
    pub range: Range<usize>,
    /// Shape `(rows, cols)`: `(out, in)` for weights (row-major), `(len, 1)` otherwise.
    pub shape: (usize, usize),
}

/// The documented layout of the flat parameter buffer. Blocks are grouped **by kind**, so each
/// kind is one contiguous range ([`ParamLayout::kind_range`]):
/// 1. every layer's weight `W^ℓ`, stored **row-major** (`out × in`, as torch's `Linear.weight`),
///    so row `i` (the unit's `w_i` of Theorem 5) is contiguous;
/// 2. every layer's bias `b^ℓ`;
/// 3. every normalization gain `γ` (BatchNorm affine: one per feature; LayerNorm: 1 or `d`);
/// 4. every normalization shift `β`.
///
/// "No weight decay on biases and gains" is the single range `kind_range(Bias).start..len()`.
/// Blocks are named `layers.{ℓ}.weight`, `layers.{ℓ}.bias`, `layers.{ℓ}.norm.gain`,
/// `layers.{ℓ}.norm.shift` (ℓ 0-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamLayout {
    blocks: Vec<ParamBlock>,
    len: usize,
}

impl ParamLayout {
    pub(crate) fn new(config: &MlpConfig) -> Self {
        let mut blocks = Vec::new();
        let mut off = 0usize;
        let mut push =
            |blocks: &mut Vec<ParamBlock>, name: String, kind, layer, shape: (usize, usize)| {
                let n = shape.0 * shape.1;
                if n > 0 {
                    blocks.push(ParamBlock {
                        name,
                        kind,
                        layer,
                        range: off..off + n,
                        shape,
                    });
                    off += n;
                }
            };
        let mut fan_in = config.input_dim;
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.weight"),
                ParamKind::Weight,
                l,
                (s.width, fan_in),
            );
            fan_in = s.width;
        }
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.bias"),
                ParamKind::Bias,
                l,
                (s.width, 1),
            );
        }
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.norm.gain"),
                ParamKind::Gain,
                l,
                (s.norm.n_affine(s.width), 1),
            );
        }
        for (l, s) in config.layers.iter().enumerate() {
            push(
                &mut blocks,
                format!("layers.{l}.norm.shift"),
                ParamKind::Shift,
                l,
                (s.norm.n_affine(s.width), 1),
            );
        }
        ParamLayout { blocks, len: off }
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the network has no parameters (never true for a valid network).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All blocks in buffer order.
    pub fn blocks(&self) -> &[ParamBlock] {
        &self.blocks
    }

    /// The block with this name.
    pub fn block(&self, name: &str) -> Option<&ParamBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The block of this kind in this layer (gains/shifts absent without affine normalization).
    pub fn find(&self, kind: ParamKind, layer: usize) -> Option<&ParamBlock> {
        self.blocks
            .iter()
            .find(|b| b.kind == kind && b.layer == layer)
    }

    /// The contiguous range holding every block of `kind` (empty range if none).
    pub fn kind_range(&self, kind: ParamKind) -> Range<usize> {
        let mut it = self.blocks.iter().filter(|b| b.kind == kind);
        match it.next() {
            None => {
                // empty range at the position the kind would start
                let start = self
                    .blocks
                    .iter()
                    .filter(|b| (b.kind as u8) < (kind as u8))
                    .map(|b| b.range.end)
                    .max()
                    .unwrap_or(0);
                start..start
            }
            Some(first) => {
                let end = it.next_back().map_or(first.range.end, |b| b.range.end);
                first.range.start..end
            }
        }
    }

    /// Index of the bias `b_i` and range of the weight row `w_i` of unit `i` of `layer`: the
    /// parameter block `[b_i; w_i]` of Theorem 5.
    pub fn unit(&self, layer: usize, unit: usize) -> Option<(usize, Range<usize>)> {
        let w = self.find(ParamKind::Weight, layer)?;
        let b = self.find(ParamKind::Bias, layer)?;
        if unit >= w.shape.0 {
            return None;
        }
        let cols = w.shape.1;
        let start = w.range.start + unit * cols;
        Some((b.range.start + unit, start..start + cols))
    }
}
