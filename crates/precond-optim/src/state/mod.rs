//! Saved optimizer state: a serde struct and an exact binary encoding with a format version.

use crate::error::{OptimError, Result};
use crate::float::Dtype;
use serde::{Deserialize, Serialize};

mod load;

/// Everything an [`crate::Optimizer`] needs to continue exactly where it was: step count, base
/// learning rate and the per-element slots (moments, accumulators, momentum buffers; named by
/// [`crate::Optimizer::slot_names`]). `f32` slots are stored widened to `f64` (exact).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerState {
    /// [`OptimizerState::FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Optimizer kind and slot names, e.g. `"adam:exp_avg_sq,exp_avg"`.
    pub layout: String,
    /// Number of parameters.
    pub n_params: u64,
    /// Steps taken.
    pub step: u64,
    /// Top-level base learning rate.
    pub base_lr: f64,
    /// Dtype of the slots (`None` before the first step).
    pub dtype: Option<Dtype>,
    /// The state arrays in [`crate::Optimizer::slot_names`] order: per-element slots (one value
    /// per index of their part), then a matrix optimizer's fixed-length arrays (none before the
    /// first step); last, for each group with `"bnp"`, its running statistics `bnp_mean` (`d`),
    /// `bnp_var` (`d`) and `bnp_observations` (1), present before the first step too (see
    /// [`crate::Optimizer::layout`] and [`crate::Optimizer::load`]).
    pub slots: Vec<Vec<f64>>,
}

const MAGIC: &[u8; 8] = b"PRCNDOPT";

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| OptimError::state("truncated state bytes"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

impl OptimizerState {
    /// The state format this build writes and reads (3: arrays of any length, each with its
    /// length, for optimizers with several parts and matrix optimizers; 2 had `n_params`-long
    /// slots only, 1 no checksum: both refused).
    pub const FORMAT_VERSION: u32 = 3;

    /// Binary encoding, all integers little-endian: magic `PRCNDOPT`, version (u32), layout (u32
    /// length + UTF-8), dtype (u8: 0 none, 1 f32, 2 f64), n (u64), step (u64), base_lr (f64 bits),
    /// array count (u32), each array as its length (u64) then its values in the dtype, then the
    /// CRC-32C
    /// (Castagnoli polynomial, as iSCSI and ext4 use) of every preceding byte (u32).
    /// Round-trips bit-exactly.
    pub fn to_bytes(&self) -> Vec<u8> {
        let width = match self.dtype {
            Some(Dtype::F32) => 4,
            _ => 8,
        };
        let mut out = Vec::with_capacity(
            52 + self.layout.len()
                + self
                    .slots
                    .iter()
                    .map(|s| 8 + s.len() * width)
                    .sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.format_version.to_le_bytes());
        out.extend_from_slice(&(self.layout.len() as u32).to_le_bytes());
        out.extend_from_slice(self.layout.as_bytes());
        out.push(match self.dtype {
            None => 0,
            Some(Dtype::F32) => 1,
            Some(Dtype::F64) => 2,
        });
        out.extend_from_slice(&self.n_params.to_le_bytes());
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&self.base_lr.to_bits().to_le_bytes());
        out.extend_from_slice(&(self.slots.len() as u32).to_le_bytes());
        for s in &self.slots {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            for &v in s {
                if width == 4 {
                    out.extend_from_slice(&(v as f32).to_le_bytes());
                } else {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode [`Self::to_bytes`]; refuses wrong magic, another format version, a checksum that
    /// does not match (any flipped bit), truncated or trailing bytes. Every
    /// size is checked against the bytes actually present before anything is allocated, so a
    /// short crafted blob cannot make it reserve more than the blob's own size.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader { b, pos: 0 };
        if r.take(8).ok() != Some(&MAGIC[..]) {
            return Err(OptimError::state("not a precond-optim state (bad magic)"));
        }
        let format_version = r.u32()?;
        if format_version != Self::FORMAT_VERSION {
            return Err(OptimError::state(format!(
                "format version {format_version} (this build reads {})",
                Self::FORMAT_VERSION
            )));
        }
        let body_len = b
            .len()
            .checked_sub(4)
            .filter(|&l| l >= r.pos)
            .ok_or_else(|| OptimError::state("truncated state bytes"))?;
        let (body, tail) = b.split_at(body_len);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let crc = crc32c::crc32c(body);
        if crc != stored {
            return Err(OptimError::state(format!(
                "checksum mismatch (CRC-32C {crc:#010x}, stored {stored:#010x}): the bytes are corrupt or truncated"
            )));
        }
        // parse the checksummed body only
        let b = body;
        let mut r = Reader { b, pos: r.pos };
        let ll = r.u32()? as usize;
        let layout = std::str::from_utf8(r.take(ll)?)
            .map_err(|_| OptimError::state("layout is not UTF-8"))?
            .to_string();
        let dtype = match r.u8()? {
            0 => None,
            1 => Some(Dtype::F32),
            2 => Some(Dtype::F64),
            d => return Err(OptimError::state(format!("unknown dtype tag {d}"))),
        };
        let n_params = r.u64()?;
        let step = r.u64()?;
        let base_lr = f64::from_bits(r.u64()?);
        let k = r.u32()? as usize;
        let width = if dtype == Some(Dtype::F32) { 4 } else { 8 };
        // each array takes at least its 8-byte length: a count the bytes cannot hold is refused
        // before anything is reserved
        if k > (b.len() - r.pos) / 8 {
            return Err(OptimError::state(format!(
                "{k} arrays announced, the {} remaining bytes cannot hold them",
                b.len() - r.pos
            )));
        }
        let mut slots = Vec::with_capacity(k);
        for j in 0..k {
            let len = r.u64()?;
            let bytes = usize::try_from(len)
                .ok()
                .and_then(|l| l.checked_mul(width))
                .filter(|&need| need <= b.len() - r.pos)
                .ok_or_else(|| {
                    OptimError::state(format!(
                        "array {j} announces {len} values, only {} bytes remain",
                        b.len() - r.pos
                    ))
                })?;
            let raw = r.take(bytes)?;
            let v: Vec<f64> = if width == 4 {
                raw.chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect()
            } else {
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect()
            };
            slots.push(v);
        }
        if r.pos != b.len() {
            return Err(OptimError::state(format!(
                "{} trailing bytes after the last array",
                b.len() - r.pos
            )));
        }
        Ok(OptimizerState {
            format_version,
            layout,
            n_params,
            step,
            base_lr,
            dtype,
            slots,
        })
    }
}
