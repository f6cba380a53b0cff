//! [`MpiComm`]: the [`Communicator`] over Open MPI's `MPI_COMM_WORLD` (feature `mpi`).

use crate::comm::Communicator;
use crate::error::{DpError, Result};
use mpi::Count;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator as _;
use mpi::traits::*;

/// `MPI_COMM_WORLD` of an initialized MPI environment (finalized when this is dropped).
/// MPI's default error handler aborts the whole job on a communication failure (a rank that
/// died makes the others' collectives fail, and `mpirun` exits non-zero).
pub struct MpiComm {
    world: SimpleCommunicator,
    // dropped last: finalizes MPI
    _universe: Universe,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.rank(), self.size())
    }
}

impl MpiComm {
    /// Initializes MPI (single-threaded: only the thread that calls collectives talks to MPI).
    ///
    /// # Errors
    /// [`DpError::Comm`] when MPI was already initialized (one [`MpiComm`] per process).
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| DpError::Comm("MPI is already initialized in this process".into()))?;
        let world = universe.world();
        Ok(Self {
            world,
            _universe: universe,
        })
    }
}

fn counts_displs(what: &'static str, counts: &[usize]) -> Result<(Vec<Count>, Vec<Count>)> {
    let mut c = Vec::with_capacity(counts.len());
    let mut d = Vec::with_capacity(counts.len());
    let mut at: usize = 0;
    for &n in counts {
        let too_big = || DpError::Comm(format!("{what}: {n} values exceed MPI's int counts"));
        c.push(Count::try_from(n).map_err(|_| too_big())?);
        d.push(Count::try_from(at).map_err(|_| too_big())?);
        at += n;
    }
    Ok((c, d))
}

fn check(what: &'static str, counts: &[usize], size: usize, len: usize) -> Result<()> {
    let total: usize = counts.iter().sum();
    if counts.len() != size || total != len {
        return Err(DpError::Comm(format!(
            "{what}: {} counts adding up to {total} for {size} ranks and a buffer of {len}",
            counts.len()
        )));
    }
    Ok(())
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_to_all_v(
        &self,
        send: &[f64],
        send_counts: &[usize],
        recv: &mut [f64],
        recv_counts: &[usize],
    ) -> Result<()> {
        check("all_to_all_v send", send_counts, self.size(), send.len())?;
        check("all_to_all_v recv", recv_counts, self.size(), recv.len())?;
        let (sc, sd) = counts_displs("all_to_all_v", send_counts)?;
        let (rc, rd) = counts_displs("all_to_all_v", recv_counts)?;
        let s = Partition::new(send, &sc[..], &sd[..]);
        let mut r = PartitionMut::new(recv, &rc[..], &rd[..]);
        self.world.all_to_all_varcount_into(&s, &mut r);
        Ok(())
    }
    fn all_gather_v(&self, local: &[f64], recv: &mut [f64], counts: &[usize]) -> Result<()> {
        check("all_gather_v", counts, self.size(), recv.len())?;
        if counts[self.rank()] != local.len() {
            return Err(DpError::Comm(format!(
                "all_gather_v: local chunk of {} values, count {}",
                local.len(),
                counts[self.rank()]
            )));
        }
        let (c, d) = counts_displs("all_gather_v", counts)?;
        let mut r = PartitionMut::new(recv, &c[..], &d[..]);
        self.world.all_gather_varcount_into(local, &mut r);
        Ok(())
    }
    fn all_reduce_max(&self, v: u64) -> Result<u64> {
        let mut out = 0u64;
        self.world
            .all_reduce_into(&v, &mut out, SystemOperation::max());
        Ok(out)
    }
    fn gather_bytes(&self, local: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let n = local.len() as u64;
        let root = self.world.process_at_rank(0);
        if self.rank() == 0 {
            let mut lens = vec![0u64; self.size()];
            root.gather_into_root(&n, &mut lens[..]);
            let lens: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
            let (c, d) = counts_displs("gather_bytes", &lens)?;
            let mut buf = vec![0u8; lens.iter().sum()];
            {
                let mut r = PartitionMut::new(&mut buf[..], &c[..], &d[..]);
                root.gather_varcount_into_root(local, &mut r);
            }
            let mut out = Vec::with_capacity(lens.len());
            let mut at = 0;
            for l in lens {
                out.push(buf[at..at + l].to_vec());
                at += l;
            }
            Ok(Some(out))
        } else {
            root.gather_into(&n);
            root.gather_varcount_into(local);
            Ok(None)
        }
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>) -> Result<()> {
        let root = self.world.process_at_rank(0);
        let mut n = buf.len() as u64;
        root.broadcast_into(&mut n);
        if self.rank() != 0 {
            buf.clear();
            buf.resize(n as usize, 0);
        }
        root.broadcast_into(&mut buf[..]);
        Ok(())
    }
}
