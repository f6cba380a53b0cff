//! The collectives data-parallel training needs, over one process, threads, or Open MPI.

use crate::error::{DpError, Result};
use std::sync::{Arc, Barrier, Mutex};

/// A group of `size()` ranks and the few collectives of ZeRO-1 training. Every rank must call
/// the same collectives in the same order with agreeing sizes (as in MPI); a size that does not
/// fit is a [`DpError::Comm`] on the rank that sees it.
pub trait Communicator {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// All-to-all with varying counts: `send` is `size()` consecutive chunks of
    /// `send_counts[s]` values, chunk `s` going to rank `s`; `recv` receives `size()` consecutive
    /// chunks of `recv_counts[s]` values, chunk `s` from rank `s`.
    fn all_to_all_v(
        &self,
        send: &[f64],
        send_counts: &[usize],
        recv: &mut [f64],
        recv_counts: &[usize],
    ) -> Result<()>;
    /// All-gather with varying counts: `recv` receives the `local` of every rank in rank order,
    /// chunk `s` of `counts[s]` values (`counts[rank()] == local.len()`).
    fn all_gather_v(&self, local: &[f64], recv: &mut [f64], counts: &[usize]) -> Result<()>;
    /// The maximum of `v` over all ranks.
    fn all_reduce_max(&self, v: u64) -> Result<u64>;
    /// Rank 0 receives every rank's bytes (`Some`, in rank order); the others get `None`.
    fn gather_bytes(&self, local: &[u8]) -> Result<Option<Vec<Vec<u8>>>>;
    /// Rank 0's `buf` replaces every other rank's `buf` (lengths may differ).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>) -> Result<()>;

    /// Whether `flag` is set on any rank (an all-reduce).
    fn any(&self, flag: bool) -> Result<bool> {
        Ok(self.all_reduce_max(u64::from(flag))? != 0)
    }
    /// The minimum of `v` over all ranks (an all-reduce).
    fn all_reduce_min(&self, v: u64) -> Result<u64> {
        Ok(u64::MAX - self.all_reduce_max(u64::MAX - v)?)
    }
}

fn check_counts(what: &'static str, counts: &[usize], size: usize, len: usize) -> Result<()> {
    if counts.len() != size {
        return Err(DpError::Comm(format!(
            "{what}: {} counts for {size} ranks",
            counts.len()
        )));
    }
    let total: usize = counts.iter().sum();
    if total != len {
        return Err(DpError::Comm(format!(
            "{what}: counts add up to {total}, the buffer holds {len}"
        )));
    }
    Ok(())
}

/// One rank: every collective is a copy. Always available (no MPI needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_to_all_v(
        &self,
        send: &[f64],
        send_counts: &[usize],
        recv: &mut [f64],
        recv_counts: &[usize],
    ) -> Result<()> {
        check_counts("all_to_all_v send", send_counts, 1, send.len())?;
        check_counts("all_to_all_v recv", recv_counts, 1, recv.len())?;
        if send.len() != recv.len() {
            return Err(DpError::Comm(format!(
                "all_to_all_v: sends {} values to itself, receives {}",
                send.len(),
                recv.len()
            )));
        }
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_gather_v(&self, local: &[f64], recv: &mut [f64], counts: &[usize]) -> Result<()> {
        check_counts("all_gather_v", counts, 1, recv.len())?;
        if local.len() != recv.len() {
            return Err(DpError::Comm(format!(
                "all_gather_v: local chunk of {} values, count {}",
                local.len(),
                recv.len()
            )));
        }
        recv.copy_from_slice(local);
        Ok(())
    }
    fn all_reduce_max(&self, v: u64) -> Result<u64> {
        Ok(v)
    }
    fn gather_bytes(&self, local: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        Ok(Some(vec![local.to_vec()]))
    }
    fn broadcast_bytes(&self, _buf: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
}

struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

/// `size` ranks as threads of one process (for tests of multi-rank code without MPI): each
/// collective is an exchange of every rank's bytes through shared memory between two barriers.
/// Build the group with [`ThreadComm::group`] and move one member into each thread.
pub struct ThreadComm {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

impl ThreadComm {
    /// The `size` members of a new group, rank `r` at index `r` (`size == 0` gives none).
    pub fn group(size: usize) -> Vec<ThreadComm> {
        let shared = Arc::new(Shared {
            barrier: Barrier::new(size.max(1)),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                size,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    /// Every rank's `mine`, in rank order.
    fn exchange(&self, mine: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        let poisoned = || DpError::Comm("a rank thread panicked".into());
        self.shared.slots.lock().map_err(|_| poisoned())?[self.rank] = mine;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().map_err(|_| poisoned())?.clone();
        self.shared.barrier.wait();
        Ok(all)
    }
}

fn to_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_f64s(b: &[u8], out: &mut [f64]) -> Result<()> {
    if b.len() != out.len() * 8 {
        return Err(DpError::Comm(format!(
            "received {} bytes where {} values were expected",
            b.len(),
            out.len()
        )));
    }
    for (o, c) in out.iter_mut().zip(b.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        *o = f64::from_le_bytes(a);
    }
    Ok(())
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_to_all_v(
        &self,
        send: &[f64],
        send_counts: &[usize],
        recv: &mut [f64],
        recv_counts: &[usize],
    ) -> Result<()> {
        let ok_send = check_counts("all_to_all_v send", send_counts, self.size, send.len());
        let ok_recv = check_counts("all_to_all_v recv", recv_counts, self.size, recv.len());
        // every rank takes part in the exchanges even after a local error, so that no other
        // rank waits forever; the send counts travel with the values
        let mut mine: Vec<u8> = Vec::new();
        if ok_send.is_ok() {
            mine.extend(send_counts.iter().flat_map(|&c| (c as u64).to_le_bytes()));
            mine.extend(to_bytes(send));
        }
        let all = self.exchange(mine)?;
        ok_send?;
        ok_recv?;
        let mut pos = 0;
        for (s, theirs) in all.iter().enumerate() {
            let head = 8 * self.size;
            if theirs.len() < head {
                return Err(DpError::Comm(format!(
                    "all_to_all_v: rank {s} sent nothing"
                )));
            }
            let cs: Vec<usize> = theirs[..head]
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    u64::from_le_bytes(a) as usize
                })
                .collect();
            let n = recv_counts[s];
            if cs[self.rank] != n {
                return Err(DpError::Comm(format!(
                    "all_to_all_v: rank {s} sends {} values to rank {}, which expects {n}",
                    cs[self.rank], self.rank
                )));
            }
            let start = head + 8 * cs[..self.rank].iter().sum::<usize>();
            read_f64s(&theirs[start..start + 8 * n], &mut recv[pos..pos + n])?;
            pos += n;
        }
        Ok(())
    }
    fn all_gather_v(&self, local: &[f64], recv: &mut [f64], counts: &[usize]) -> Result<()> {
        let ok = check_counts("all_gather_v", counts, self.size, recv.len());
        let all = self.exchange(to_bytes(local))?;
        ok?;
        let mut pos = 0;
        for (s, theirs) in all.iter().enumerate() {
            read_f64s(theirs, &mut recv[pos..pos + counts[s]])?;
            pos += counts[s];
        }
        Ok(())
    }
    fn all_reduce_max(&self, v: u64) -> Result<u64> {
        let all = self.exchange(v.to_le_bytes().to_vec())?;
        let mut m = 0;
        for b in all {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b);
            m = m.max(u64::from_le_bytes(a));
        }
        Ok(m)
    }
    fn gather_bytes(&self, local: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let all = self.exchange(local.to_vec())?;
        Ok((self.rank == 0).then_some(all))
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>) -> Result<()> {
        let all = self.exchange(if self.rank == 0 {
            buf.clone()
        } else {
            Vec::new()
        })?;
        if self.rank != 0 {
            *buf = all.into_iter().next().unwrap_or_default();
        }
        Ok(())
    }
}
