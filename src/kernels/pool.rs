//! A per-thread cache of large buffers, so hot loops do not pay for fresh memory every step.
//!
//! A fresh 64 MiB allocation costs tens of milliseconds of page faults (the system allocator hands
//! buffers above 32 MiB back to the OS on free, and takes new ones from it on allocation), more than
//! the arithmetic done in it. Tensors of at least [`POOLED_BYTES`] give their buffer back here when
//! dropped, and new tensors take one from here first. The cache holds at most [`MAX_BUFFERS`]
//! buffers per element type and thread, so it never holds more than a training step's working set.
//!
//! Safety without `unsafe`: a cached buffer keeps its length, i.e. it is a fully initialised `Vec`
//! whose values are left over from the tensor it belonged to. [`try_dirty`] hands such a buffer to
//! kernels that overwrite every element, which is what saves the cost of zeroing it.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Buffers smaller than this come from the system allocator and go back to it.
pub(crate) const POOLED_BYTES: usize = 1 << 14;

/// Buffers cached per element type and thread.
pub(crate) const MAX_BUFFERS: usize = 16;

/// Storage for one element type's cache.
type Cache<T> = RefCell<Vec<Vec<T>>>;

/// An element type with a cache of its own: the tensor elements and the mask words.
pub trait Pooled: Copy + Default + 'static {
    /// Runs `f` with this thread's cache for this type.
    fn with_cache<R>(f: impl FnOnce(&Cache<Self>) -> R) -> R;
}

macro_rules! pooled_type {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn with_cache<R>(f: impl FnOnce(&Cache<Self>) -> R) -> R {
                thread_local! {
                    static CACHE: Cache<$t> = const { RefCell::new(Vec::new()) };
                }
                CACHE.with(f)
            }
        }
    )*};
}
pooled_type!(f32, f64, u64, usize);

fn pooled<T: Pooled>(len: usize) -> bool {
    len.saturating_mul(std::mem::size_of::<T>()) >= POOLED_BYTES
}

/// The cached buffer that fits `len` best (capacity at least `len`, at most 4·len), if any.
fn take_cached<T: Pooled>(len: usize) -> Option<Vec<T>> {
    if !pooled::<T>(len) {
        return None;
    }
    T::with_cache(|cache| {
        let mut cache = cache.borrow_mut();
        let best = cache
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() / 4 <= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        Some(cache.swap_remove(best))
    })
}

/// Reserves room for `len` elements in `buffer` without aborting: the one place where tapegrad
/// asks the allocator for memory, so that a size too large to allocate is an
/// [`Error::OutOfMemory`] naming `op` and the bytes, never a process abort.
///
/// A request larger than the machine's memory (RAM + swap, read once from `/proc/meminfo` on
/// Linux) is refused before the allocator is asked: with the kernel's overcommit, such a request
/// could succeed and the process be killed later, when the pages are touched.
fn reserve<T>(op: &'static str, buffer: &mut Vec<T>, len: usize) -> Result<()> {
    let bytes = (len as u128) * (std::mem::size_of::<T>() as u128);
    let out_of_memory = || Error::OutOfMemory { op, bytes };
    if bytes > LARGE_BYTES && machine_memory().is_some_and(|total| bytes > total) {
        return Err(out_of_memory());
    }
    buffer
        .try_reserve_exact(len.saturating_sub(buffer.len()))
        .map_err(|_| out_of_memory())
}

/// Requests above this size are compared with the machine's memory before allocating.
const LARGE_BYTES: u128 = 1 << 30;

/// RAM + swap in bytes, if the platform tells (Linux's `/proc/meminfo`); read once.
fn machine_memory() -> Option<u128> {
    static TOTAL: OnceLock<Option<u128>> = OnceLock::new();
    *TOTAL.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib = |key: &str| -> Option<u128> {
            let line = info.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
    })
}

/// An empty vector with room for `len` elements (for kernels that `extend`).
pub(crate) fn try_empty<T: Pooled>(op: &'static str, len: usize) -> Result<Vec<T>> {
    match take_cached(len) {
        Some(mut buffer) => {
            buffer.clear();
            Ok(buffer)
        }
        None => {
            let mut buffer = Vec::new();
            reserve(op, &mut buffer, len)?;
            Ok(buffer)
        }
    }
}

/// `len` initialised elements of unspecified value, for kernels that overwrite every one.
pub(crate) fn try_dirty<T: Pooled>(op: &'static str, len: usize) -> Result<Vec<T>> {
    match take_cached(len) {
        Some(mut buffer) => {
            // Elements beyond the old length are zeroed; the rest keep their old values.
            buffer.resize(len, T::default());
            buffer.truncate(len);
            Ok(buffer)
        }
        None => try_filled(op, len, T::default()),
    }
}

/// `len` copies of `value`.
pub(crate) fn try_filled<T: Pooled>(op: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut buffer = try_empty(op, len)?;
    buffer.resize(len, value);
    Ok(buffer)
}

/// `len` zeros.
pub(crate) fn try_zeroed<T: Pooled>(op: &'static str, len: usize) -> Result<Vec<T>> {
    try_filled(op, len, T::default())
}

/// A copy of `data` in a (possibly recycled) buffer.
pub(crate) fn try_copy<T: Pooled>(op: &'static str, data: &[T]) -> Result<Vec<T>> {
    let mut buffer = try_empty(op, data.len())?;
    buffer.extend_from_slice(data);
    Ok(buffer)
}

/// A vector from an iterator of known length, through the fallible path.
pub(crate) fn try_collect<T: Pooled>(
    op: &'static str,
    len: usize,
    values: impl IntoIterator<Item = T>,
) -> Result<Vec<T>> {
    let mut buffer = try_empty(op, len)?;
    buffer.extend(values);
    Ok(buffer)
}

/// Gives a buffer back to the cache (or to the allocator, if it is small or the cache is full).
pub(crate) fn recycle<T: Pooled>(buffer: Vec<T>) {
    if !pooled::<T>(buffer.capacity()) {
        return;
    }
    T::with_cache(|cache| {
        // `try_borrow_mut`: a buffer dropped while the cache is borrowed (never expected) is simply freed.
        if let Ok(mut cache) = cache.try_borrow_mut()
            && cache.len() < MAX_BUFFERS
        {
            cache.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused_and_small_ones_are_not() {
        let big = 1 << 18; // 1 MiB of f32
        let a: Vec<f32> = try_dirty("test", big).unwrap();
        let ptr = a.as_ptr();
        recycle(a);
        let b: Vec<f32> = try_dirty("test", big - 10).unwrap();
        assert_eq!(b.as_ptr(), ptr, "the cached buffer is handed out again");
        assert_eq!(b.len(), big - 10);
        recycle(b);
        let z: Vec<f32> = try_zeroed("test", big).unwrap();
        assert!(z.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn sizes_beyond_memory_are_an_error_not_an_abort() {
        let err = try_zeroed::<f32>("zeros", 1 << 60).unwrap_err();
        assert!(matches!(err, Error::OutOfMemory { op: "zeros", bytes } if bytes == 1u128 << 62));
        assert!(try_empty::<f64>("x", usize::MAX).is_err());
        // More than the machine has (RAM + swap), refused before asking the allocator.
        if let Some(total) = machine_memory() {
            let len = usize::try_from(total / 4 + 1).unwrap_or(usize::MAX);
            assert!(matches!(
                try_empty::<f32>("big", len),
                Err(Error::OutOfMemory { op: "big", .. })
            ));
        }
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_buffers() {
        for _ in 0..(MAX_BUFFERS + 5) {
            recycle(vec![0f64; 1 << 18]);
        }
        f64::with_cache(|c| assert!(c.borrow().len() <= MAX_BUFFERS));
    }
}
