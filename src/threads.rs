//! How many threads the kernels may use, like `torch.set_num_threads`.
//!
//! The default comes from the environment variable `TAPEGRAD_NUM_THREADS`, else the number of cores.
//! Any setting is clamped to `1..=`[`MAX_THREADS`]: asking for `usize::MAX` threads gives
//! `MAX_THREADS`, not a hang. Results do not depend on the setting: work is split at points that
//! depend only on the sizes (see the summation kernel and the dropout mask's chunks).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most threads a kernel will use, whatever is asked for. Far above the cores of any machine
/// tapegrad runs on; a matrix product split into more parts than this spends its time splitting.
pub const MAX_THREADS: usize = 256;

static OVERRIDE: AtomicUsize = AtomicUsize::new(0);
static DEFAULT: OnceLock<usize> = OnceLock::new();

/// The number of threads kernels may use, in `1..=MAX_THREADS`.
///
/// ```
/// tapegrad::set_num_threads(1);
/// assert_eq!(tapegrad::num_threads(), 1);
/// tapegrad::set_num_threads(usize::MAX);
/// assert_eq!(tapegrad::num_threads(), tapegrad::MAX_THREADS);
/// tapegrad::set_num_threads(0); // back to the default
/// ```
pub fn num_threads() -> usize {
    match OVERRIDE.load(Ordering::Relaxed) {
        0 => *DEFAULT.get_or_init(|| {
            std::env::var("TAPEGRAD_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .min(MAX_THREADS)
        }),
        n => n,
    }
}

/// Sets the number of threads kernels may use (clamped to [`MAX_THREADS`]); 0 restores the
/// default.
pub fn set_num_threads(n: usize) {
    OVERRIDE.store(n.min(MAX_THREADS), Ordering::Relaxed);
}
