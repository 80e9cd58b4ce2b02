//! Data-parallel training over MPI (cargo feature `mpi`): every rank holds a full copy of the
//! model, trains on its own shard of each batch, and averages gradients with the others after
//! every backward pass, so that N ranks with batch B each take the same steps as one process with
//! batch N·B.
//!
//! PyTorch equivalent: `torch.distributed` with the MPI backend — `init_process_group("mpi")`,
//! `DistributedDataParallel`, `DistributedSampler`.
//!
//! - [`init`]: rank and world size from the environment `mpirun` or `srun` sets up; without a
//!   launcher, a local world of size 1 that never touches MPI.
//! - [`DistributedDataParallel`]: parameters and buffers broadcast from rank 0 at the start,
//!   gradients averaged across ranks with all-reduce over flattened, fixed-size buckets in a fixed
//!   order; the result is a [`GradSource`](crate::optim::GradSource) every optimizer steps on.
//! - [`DistributedSampler`]: each rank's disjoint shard of a data set, reshuffled every epoch from
//!   a shared seed, padded (or cut) to equal length.
//! - [`Distributed::save_checkpoint`] / [`Distributed::load_checkpoint`]: rank 0 writes
//!   (atomically) and reads; every rank learns whether it worked. A checkpoint holds no trace of
//!   the world size, so training resumes on any number of ranks.
//! - [`rank_rng`]: the generator each rank's dropout draws from, derived from `(seed, rank)`.
//! - Faults: [`Distributed::install_panic_abort`], [`Distributed::abort_on_error`] and
//!   [`Watchdog`] make a failing or stuck rank stop the whole job instead of leaving the others
//!   waiting in a collective forever. See `docs/distributed.md` for what MPI guarantees and what
//!   it does not.
//!
//! Every collective is called from the thread that called [`init`] (MPI is initialised with
//! `MPI_THREAD_FUNNELED`); the thread pool that runs the kernels never calls MPI.

mod ddp;
mod sampler;
mod watchdog;

pub use ddp::{AveragedGradients, BucketLayout, DdpOptions, DistributedDataParallel};
pub use sampler::DistributedSampler;
pub use watchdog::Watchdog;

use std::any::Any;
use std::fmt;
use std::path::Path;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use rand_pcg::Pcg64;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::nn::StateDict;

/// Which launcher started this process, as told by the environment it set.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher: a plain process, run as a world of size 1 without MPI.
    None,
    /// Open MPI's `mpirun`/`mpiexec` (`OMPI_COMM_WORLD_SIZE`).
    OpenMpi,
    /// A PMI launcher: MPICH's Hydra `mpiexec`, or PMIx (`PMI_SIZE`, `PMIX_RANK`).
    Pmi,
    /// SLURM's `srun` (`SLURM_STEP_NUM_TASKS` with `SLURM_PROCID`: a job step, not the batch
    /// script itself, which runs as a plain process).
    Slurm,
}

impl Launcher {
    /// The launcher the environment names, and the world size it announces (if it does).
    pub fn detect() -> (Launcher, Option<usize>) {
        let var = |name: &str| std::env::var(name).ok();
        let size = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
        if var("OMPI_COMM_WORLD_SIZE").is_some() {
            (Launcher::OpenMpi, size("OMPI_COMM_WORLD_SIZE"))
        } else if var("PMI_SIZE").is_some() || var("PMIX_RANK").is_some() {
            (Launcher::Pmi, size("PMI_SIZE"))
        } else if var("SLURM_PROCID").is_some() && var("SLURM_STEP_NUM_TASKS").is_some() {
            (Launcher::Slurm, size("SLURM_STEP_NUM_TASKS"))
        } else {
            (Launcher::None, None)
        }
    }
}

/// This process's place in the job: its rank, the world size, and the MPI communicator (none in
/// a local world of size 1). Dropping it finalises MPI.
pub struct Distributed {
    rank: usize,
    size: usize,
    launcher: Launcher,
    world: Option<SimpleCommunicator>,
    // Kept alive for as long as the communicator is used: dropping it calls `MPI_Finalize`.
    _universe: Option<Universe>,
}

impl fmt::Debug for Distributed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Distributed(rank {} of {}, {:?}{})",
            self.rank,
            self.size,
            self.launcher,
            if self.world.is_some() { ", MPI" } else { "" }
        )
    }
}

/// Joins the job this process was launched in.
///
/// Under `mpirun`, `mpiexec` or `srun` (detected from the environment they set) this initialises
/// MPI and returns the rank and world size of `MPI_COMM_WORLD`. Launched without any of them, it
/// returns a local world of size 1 without initialising MPI, so a single-process run needs no MPI
/// runtime at all and every collective is a copy.
///
/// Errors ([`Error::InvalidArgument`], op `distributed::init`): MPI was already initialised in
/// this process; or the launcher announced N processes but MPI sees a different world size (the
/// program is linked against a different MPI implementation than the launcher's, so each process
/// came up as a singleton).
///
/// PyTorch equivalent: `torch.distributed.init_process_group("mpi")`.
pub fn init() -> Result<Distributed> {
    let (launcher, announced) = Launcher::detect();
    if launcher == Launcher::None {
        return Ok(Distributed::local());
    }
    init_mpi(launcher, announced)
}

/// Initialises MPI even without a launcher (an MPI singleton of size 1), for testing the MPI
/// path itself. Same errors as [`init`].
pub fn init_mpi_singleton() -> Result<Distributed> {
    let (launcher, announced) = Launcher::detect();
    init_mpi(launcher, announced)
}

fn init_mpi(launcher: Launcher, announced: Option<usize>) -> Result<Distributed> {
    let fail = |reason: String| Error::InvalidArgument {
        op: "distributed::init",
        reason,
    };
    if mpi::environment::is_finalized() {
        return Err(fail("MPI was finalised already in this process".into()));
    }
    let Some((universe, _threading)) = mpi::initialize_with_threading(mpi::Threading::Funneled)
    else {
        return Err(fail(
            "MPI is initialised already in this process (call distributed::init once)".into(),
        ));
    };
    let world = universe.world();
    let rank = usize::try_from(world.rank()).map_err(|_| fail("negative MPI rank".into()))?;
    let size = usize::try_from(world.size()).map_err(|_| fail("negative world size".into()))?;
    if let Some(expected) = announced
        && expected != size
    {
        return Err(fail(format!(
            "the launcher ({launcher:?}) started {expected} processes but MPI sees a world of \
             {size}: this program is linked against a different MPI library than the launcher's"
        )));
    }
    Ok(Distributed {
        rank,
        size,
        launcher,
        world: Some(world),
        _universe: Some(universe),
    })
}

/// A slice of `f32` or `f64`, seen through its concrete type so MPI can name the datatype.
enum Floats<'a> {
    F32(&'a mut Vec<f32>),
    F64(&'a mut Vec<f64>),
}

// A `Vec`, not a slice: `Any` can only name sized types.
#[allow(clippy::ptr_arg)]
fn floats<T: Float>(v: &mut Vec<T>) -> Result<Floats<'_>> {
    let any: &mut dyn Any = v;
    if any.is::<Vec<f32>>() {
        if let Some(v) = any.downcast_mut::<Vec<f32>>() {
            return Ok(Floats::F32(v));
        }
    } else if let Some(v) = any.downcast_mut::<Vec<f64>>() {
        return Ok(Floats::F64(v));
    }
    // `Float` is sealed to f32 and f64, so this is unreachable; an error keeps it panic-free.
    Err(Error::InvalidArgument {
        op: "distributed",
        reason: format!("element type {} has no MPI datatype", T::DTYPE),
    })
}

impl Distributed {
    /// A world of size 1 with no MPI behind it: every collective is a copy.
    pub fn local() -> Distributed {
        Distributed {
            rank: 0,
            size: 1,
            launcher: Launcher::None,
            world: None,
            _universe: None,
        }
    }

    /// This process's rank, 0 ≤ rank < world size.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes in the job.
    pub fn world_size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, the one that logs and writes checkpoints.
    pub fn is_rank0(&self) -> bool {
        self.rank == 0
    }

    /// The launcher that started this process.
    pub fn launcher(&self) -> Launcher {
        self.launcher
    }

    /// Whether MPI is in use (false for the local world of size 1).
    pub fn is_mpi(&self) -> bool {
        self.world.is_some()
    }

    /// Prints a line on rank 0 only (PyTorch scripts' `if rank == 0: print(...)`).
    pub fn log(&self, message: impl fmt::Display) {
        if self.is_rank0() {
            println!("{message}");
        }
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self) {
        if let Some(world) = &self.world {
            world.barrier();
        }
    }

    /// Element-wise sum of `send` over all ranks into `recv` (resized to `send`'s length), the
    /// same on every rank. Every rank must call it with the same length.
    pub fn all_reduce_sum<T: Float>(&self, send: &mut Vec<T>, recv: &mut Vec<T>) -> Result<()> {
        recv.resize(send.len(), T::ZERO);
        let Some(world) = &self.world else {
            recv.copy_from_slice(send);
            return Ok(());
        };
        match (floats(send)?, floats(recv)?) {
            (Floats::F32(s), Floats::F32(r)) => {
                world.all_reduce_into(&s[..], &mut r[..], SystemOperation::sum())
            }
            (Floats::F64(s), Floats::F64(r)) => {
                world.all_reduce_into(&s[..], &mut r[..], SystemOperation::sum())
            }
            // Both vectors hold the same `T`, so the types always match.
            _ => {
                return Err(Error::InvalidArgument {
                    op: "distributed::all_reduce_sum",
                    reason: "send and receive buffers of different element types".into(),
                });
            }
        }
        Ok(())
    }

    /// Overwrites `buf` on every rank with rank 0's `buf`. Every rank must call it with the same
    /// length.
    pub fn broadcast_from_rank0<T: Float>(&self, buf: &mut Vec<T>) -> Result<()> {
        let Some(world) = &self.world else {
            return Ok(());
        };
        let root = world.process_at_rank(0);
        match floats(buf)? {
            Floats::F32(b) => root.broadcast_into(&mut b[..]),
            Floats::F64(b) => root.broadcast_into(&mut b[..]),
        }
        Ok(())
    }

    /// Rank 0's value of `value`, on every rank.
    pub fn broadcast_u64(&self, value: u64) -> u64 {
        let mut v = value;
        if let Some(world) = &self.world {
            world.process_at_rank(0).broadcast_into(&mut v);
        }
        v
    }

    /// The smallest and largest `value` over all ranks.
    pub fn min_max_u64(&self, value: u64) -> (u64, u64) {
        let Some(world) = &self.world else {
            return (value, value);
        };
        let (mut lo, mut hi) = (0u64, 0u64);
        world.all_reduce_into(&value, &mut lo, SystemOperation::min());
        world.all_reduce_into(&value, &mut hi, SystemOperation::max());
        (lo, hi)
    }

    /// Whether `ok` holds on every rank (each rank learns the same answer).
    pub fn all_ok(&self, ok: bool) -> bool {
        self.min_max_u64(u64::from(ok)).0 == 1
    }

    /// Fails on every rank, with the same error, unless every rank passed the same `value` (a
    /// fingerprint of a model's layout, say). `op` and `what` name it in the error.
    pub fn check_same(&self, op: &'static str, what: &str, value: u64) -> Result<()> {
        let (lo, hi) = self.min_max_u64(value);
        if lo == hi {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "the ranks disagree on {what} (fingerprints from {lo:#018x} to {hi:#018x}); \
                     every rank must build the same model"
                ),
            })
        }
    }

    /// Ends the whole job: `MPI_Abort` on `MPI_COMM_WORLD` (the launcher then kills every rank),
    /// or, in a local world, this process with `code`.
    pub fn abort(&self, code: i32) -> ! {
        match &self.world {
            Some(world) => world.abort(code),
            None => std::process::exit(code),
        }
    }

    /// The value of `result`, or — on an error — the error printed with this rank's number and
    /// the whole job aborted with exit code 1. A rank that simply returned its error would leave
    /// the others waiting in their next collective forever.
    pub fn abort_on_error<R>(&self, result: Result<R>) -> R {
        match result {
            Ok(value) => value,
            Err(e) => {
                eprintln!(
                    "rank {} of {}: error: {e}; aborting all ranks",
                    self.rank, self.size
                );
                self.abort(1)
            }
        }
    }

    /// Makes a panic on any thread of this process abort the whole job (after the usual panic
    /// message, and a line naming the rank), instead of leaving the other ranks waiting in a
    /// collective forever. Call it once, right after [`init`]. In a local world (no MPI) there is
    /// no one to wait, and panics are left as they are.
    pub fn install_panic_abort(&self) {
        if !self.is_mpi() {
            return;
        }
        let (rank, size) = (self.rank, self.size);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            eprintln!("rank {rank} of {size}: panicked; aborting all ranks");
            if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
                SimpleCommunicator::world().abort(101);
            }
            std::process::abort();
        }));
    }

    /// Saves `state` to `path` on rank 0 only, atomically (a temporary file renamed over the old
    /// one, so the last good checkpoint survives any failure), and tells every rank whether it
    /// worked: rank 0 returns its own error, the others an [`Error::InvalidArgument`] saying rank
    /// 0 failed. Every rank must call it.
    pub fn save_checkpoint<T: Float>(
        &self,
        state: &StateDict<T>,
        path: impl AsRef<Path>,
    ) -> Result<()> {
        let saved = if self.is_rank0() {
            state.save(path.as_ref())
        } else {
            Ok(())
        };
        let ok = self.broadcast_u64(u64::from(saved.is_ok())) == 1;
        match saved {
            Err(e) => Err(e),
            Ok(()) if ok => Ok(()),
            Ok(()) => Err(Error::InvalidArgument {
                op: "distributed::save_checkpoint",
                reason: format!(
                    "rank 0 failed to save {} (see its error)",
                    path.as_ref().display()
                ),
            }),
        }
    }

    /// Reads a checkpoint on rank 0 and hands its bytes to every rank, so the other ranks need no
    /// access to rank 0's file system. `Ok(None)` on every rank if there is no file at `path`.
    /// Every rank must call it.
    pub fn load_checkpoint<T: Float>(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Option<StateDict<T>>> {
        const FAILED: u64 = u64::MAX;
        const ABSENT: u64 = u64::MAX - 1;
        let path = path.as_ref();
        let mut read = Ok(Vec::new());
        let mut code = 0;
        if self.is_rank0() {
            read = match std::fs::read(path) {
                Ok(bytes) => Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(None),
                Err(source) => Err(Some(Error::Io {
                    op: "distributed::load_checkpoint",
                    path: path.display().to_string(),
                    source,
                })),
            };
            code = match &read {
                Ok(bytes) => bytes.len() as u64,
                Err(None) => ABSENT,
                Err(Some(_)) => FAILED,
            };
        }
        let code = self.broadcast_u64(code);
        match (code, read) {
            (_, Err(Some(e))) => Err(e),
            (ABSENT, _) => Ok(None),
            (FAILED, _) => Err(Error::InvalidArgument {
                op: "distributed::load_checkpoint",
                reason: format!("rank 0 failed to read {} (see its error)", path.display()),
            }),
            (len, Ok(mut bytes)) => {
                let len = usize::try_from(len).map_err(|_| Error::OutOfMemory {
                    op: "distributed::load_checkpoint",
                    bytes: u128::from(len),
                })?;
                if !self.is_rank0() {
                    bytes
                        .try_reserve_exact(len)
                        .map_err(|_| Error::OutOfMemory {
                            op: "distributed::load_checkpoint",
                            bytes: len as u128,
                        })?;
                    bytes.resize(len, 0);
                }
                if let Some(world) = &self.world {
                    world.process_at_rank(0).broadcast_into(&mut bytes[..]);
                }
                StateDict::from_bytes(&bytes).map(Some)
            }
            // Rank 0 read nothing only in the two cases above.
            (_, Err(None)) => Ok(None),
        }
    }
}

/// SplitMix64's output function: spreads a 64-bit seed over all bits.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator rank `rank` draws its dropout masks (and anything else random and per-rank)
/// from: PCG64 with state `(splitmix64(seed) << 64) | seed` and stream `rank`.
///
/// Every rank uses the same `seed` and gets its own PCG stream (distinct streams never share a
/// sequence), so masks differ between ranks — as they must, since each rank sees different
/// samples — yet a run is reproduced exactly by the same `(seed, world size)`. Replaying a
/// distributed run's masks in a single process means drawing rank r's part of each batch from
/// `rank_rng(seed, r)`.
///
/// PyTorch equivalent: none built in; PyTorch scripts seed each rank with `seed + rank`.
pub fn rank_rng(seed: u64, rank: usize) -> Pcg64 {
    let state = (u128::from(splitmix64(seed)) << 64) | u128::from(seed);
    Pcg64::new(state, rank as u128)
}

/// An FNV-1a hash, stable across processes and builds (unlike `std`'s hasher), for comparing
/// layouts and parameter bits between ranks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub(crate) fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}
