//! Memory, counted by a global allocator that tracks live bytes: a training step's tape is freed
//! when the step ends, and 10,000 steps of the lesson's model do not grow after step 100.
//!
//! One test binary with one test, so no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, tape_step};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is bookkeeping.
// (The library itself forbids `unsafe`; a global allocator cannot be written without it.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

#[test]
fn the_tape_is_freed_every_step_and_ten_thousand_steps_do_not_grow() {
    tapegrad::set_num_threads(1);
    let (data, mut weights) = LessonConfig::default().generate::<f32>().unwrap();
    let mut rng = Pcg64::seed_from_u64(1);

    // A first step fills the caches that live for the whole process (the matrix kernel's
    // per-thread workspace); after it, a step leaves nothing of its tape behind.
    let warmup = tape_step(&data, &weights, 0.5, &mut rng).unwrap();
    weights.sgd_step(&warmup.grads, 0.5);
    drop(warmup);
    let before = live();
    let step = tape_step(&data, &weights, 0.5, &mut rng).unwrap();
    let grads_bytes: isize = step
        .grads
        .tensors()
        .iter()
        .map(|t| (t.numel() * 4) as isize)
        .sum();
    assert!(
        live() - before <= grads_bytes + 1024,
        "a step left {} bytes beyond its gradients",
        live() - before
    );
    weights.sgd_step(&step.grads, 0.5);
    drop(step);

    let mut at_step_100 = 0;
    for i in 1..=10_000 {
        let step = tape_step(&data, &weights, 0.5, &mut rng).unwrap();
        weights.sgd_step(&step.grads, 0.5);
        drop(step);
        if i == 100 {
            at_step_100 = live();
        }
    }
    let at_end = live();
    assert_eq!(
        at_end, at_step_100,
        "live bytes grew from {at_step_100} to {at_end} between steps 100 and 10,000"
    );

    // Dropout's saved state: one bit per element (plus the scale).
    let tape = tapegrad::Tape::<f32>::new();
    let h = tape.leaf(tapegrad::Tensor::ones(&[128, 64]).unwrap());
    let before = live();
    let _ = h.dropout(0.5, &mut rng).unwrap();
    assert_eq!(tape.saved_bytes(), 128 * 64 / 8 + 4);
    let added = live() - before;
    // The output (32 KiB of f32), the mask (1 KiB), and the node's small bookkeeping.
    assert!(added < 128 * 64 * 4 + 128 * 64 / 8 + 1024, "{added}");
}
