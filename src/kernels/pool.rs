//! A per-thread cache of large buffers, so hot loops do not pay for fresh memory every step.
//!
//! A fresh 64 MiB allocation costs tens of milliseconds of page faults (the system allocator hands
//! buffers above 32 MiB back to the OS on free, and takes new ones from it on allocation), more than
//! the arithmetic done in it. Tensors of at least [`POOLED_BYTES`] give their buffer back here when
//! dropped, and new tensors take one from here first. The cache holds at most [`MAX_BUFFERS`]
//! buffers per element type and thread, so it never holds more than a training step's working set.
//!
//! Safety without `unsafe`: a cached buffer keeps its length, i.e. it is a fully initialised `Vec`
//! whose values are left over from the tensor it belonged to. [`dirty`] hands such a buffer to
//! kernels that overwrite every element, which is what saves the cost of zeroing it.

use std::cell::RefCell;

/// Buffers smaller than this come from the system allocator and go back to it.
pub(crate) const POOLED_BYTES: usize = 1 << 17;

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
pooled_type!(f32, f64, u64);

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

/// An empty vector with room for `len` elements (for kernels that `extend`).
pub(crate) fn empty<T: Pooled>(len: usize) -> Vec<T> {
    match take_cached(len) {
        Some(mut buffer) => {
            buffer.clear();
            buffer
        }
        None => Vec::with_capacity(len),
    }
}

/// `len` initialised elements of unspecified value, for kernels that overwrite every one.
pub(crate) fn dirty<T: Pooled>(len: usize) -> Vec<T> {
    match take_cached(len) {
        Some(mut buffer) => {
            // Elements beyond the old length are zeroed; the rest keep their old values.
            buffer.resize(len, T::default());
            buffer.truncate(len);
            buffer
        }
        None => vec![T::default(); len],
    }
}

/// `len` zeros.
pub(crate) fn zeroed<T: Pooled>(len: usize) -> Vec<T> {
    let mut buffer = dirty(len);
    buffer.fill(T::default());
    buffer
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
        let a: Vec<f32> = dirty(big);
        let ptr = a.as_ptr();
        recycle(a);
        let b: Vec<f32> = dirty(big - 10);
        assert_eq!(b.as_ptr(), ptr, "the cached buffer is handed out again");
        assert_eq!(b.len(), big - 10);
        recycle(b);
        let z: Vec<f32> = zeroed(big);
        assert!(z.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_buffers() {
        for _ in 0..(MAX_BUFFERS + 5) {
            recycle(vec![0f64; 1 << 18]);
        }
        f64::with_cache(|c| assert!(c.borrow().len() <= MAX_BUFFERS));
    }
}
