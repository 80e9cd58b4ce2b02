//! A deadline on progress, for the failures MPI does not detect: a peer that hangs without dying.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the watchdog thread and its owner share.
#[derive(Debug)]
struct State {
    deadline: Instant,
    stopped: bool,
}

/// Fires if [`pet`](Self::pet) is not called for `timeout`: by default it prints which rank gave
/// up and after how long, then aborts this process, which makes the launcher (`mpirun`, `srun`)
/// end every other rank. Call `pet` once per training step, with a timeout well above the
/// slowest step (and above the time a checkpoint save takes).
///
/// MPI ends the job when a rank dies or calls `MPI_Abort`; it does nothing about a rank that
/// stays alive but stops making progress (a deadlock, an endless loop, a stalled network or file
/// system): the others wait in their next collective forever. The watchdog bounds that wait. It
/// runs on its own thread and never calls MPI (a process abort is safe from any thread).
///
/// PyTorch equivalent: the `timeout` of `init_process_group` (NCCL/Gloo watchdog).
pub struct Watchdog {
    shared: Arc<(Mutex<State>, Condvar)>,
    timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watchdog(timeout {:?})", self.timeout)
    }
}

impl Watchdog {
    /// Starts a watchdog for rank `rank` that aborts the process after `timeout` without a `pet`.
    pub fn start(rank: usize, timeout: Duration) -> Self {
        Self::with_action(timeout, move || {
            eprintln!(
                "rank {rank}: no progress for {timeout:?} (a peer is probably stuck); aborting \
                 all ranks"
            );
            std::process::abort();
        })
    }

    /// Starts a watchdog that runs `action` (once) after `timeout` without a `pet`, instead of
    /// aborting.
    pub fn with_action(timeout: Duration, action: impl FnOnce() + Send + 'static) -> Self {
        let shared = Arc::new((
            Mutex::new(State {
                deadline: Instant::now() + timeout,
                stopped: false,
            }),
            Condvar::new(),
        ));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tapegrad-watchdog".into())
            .spawn(move || {
                let (lock, wake) = &*theirs;
                let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if state.stopped {
                        return;
                    }
                    let now = Instant::now();
                    if now >= state.deadline {
                        break;
                    }
                    let wait = state.deadline - now;
                    state = wake
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                drop(state);
                action();
            })
            .ok();
        Watchdog {
            shared,
            timeout,
            thread,
        }
    }

    /// Progress was made: the deadline moves to `timeout` from now.
    pub fn pet(&self) {
        let (lock, _) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        state.deadline = Instant::now() + self.timeout;
    }

    /// Whether the watchdog thread is running (it could not be started if the system refused a
    /// thread; then it never fires).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Watchdog {
    /// Stops the watchdog without firing.
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
