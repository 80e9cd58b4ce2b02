//! Peak memory of a training step, counted by a global allocator that tracks live and peak bytes:
//! the fused linear layer keeps one tensor fewer on the tape than `matmul_t` + `add`, and ReLU and
//! dropout mask their incoming gradient in place, so a backward pass through them allocates one
//! gradient, not one per op. Each measurement runs on a fresh thread, whose buffer cache starts
//! empty, so every buffer a step needs is a fresh allocation.
//!
//! One test binary with one test, so no other test allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::{Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::{Tape, Tensor};

/// The system allocator, counting the bytes currently allocated and their high-water mark.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are bookkeeping.
// (The library itself forbids `unsafe`; a global allocator cannot be written without it.)
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size() as isize, Ordering::SeqCst) + layout.size() as isize;
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grow = new_size as isize - layout.size() as isize;
        let now = LIVE.fetch_add(grow, Ordering::SeqCst) + grow;
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes above the starting level at the high-water mark of `f`, on this thread.
fn peak_during<R>(f: impl FnOnce() -> R) -> (isize, R) {
    let start = LIVE.load(Ordering::SeqCst);
    PEAK.store(start, Ordering::SeqCst);
    let out = f();
    (PEAK.load(Ordering::SeqCst) - start, out)
}

/// [`peak_during`] on a fresh thread, whose buffer cache starts empty.
fn peak_of(f: impl FnOnce() + Send + 'static) -> isize {
    std::thread::spawn(move || peak_during(f).0)
        .join()
        .expect("the measured step runs")
}

const N: usize = 256;
const IN: usize = 256;
const HIDDEN: usize = 1024;
/// Bytes of one [N, HIDDEN] f32 tensor: 1 MiB.
const H: isize = (N * HIDDEN * 4) as isize;

#[test]
fn fused_linear_and_in_place_masks_lower_the_peak() {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(0);
    let x = std::sync::Arc::new(Tensor::<f32>::normal(&[N, IN], 0.0, 1.0, &mut rng).unwrap());
    let labels: Vec<usize> = (0..N).map(|i| i % 10).collect();
    let model = Sequential::new()
        .push(Linear::<f32>::new(IN, HIDDEN, &mut rng).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.5).unwrap())
        .push(Linear::new(HIDDEN, 10, &mut rng).unwrap());
    let params: Vec<_> = model
        .named_params()
        .into_iter()
        .map(|(_, p)| p.value())
        .collect();

    // The layers: one fused node per Linear.
    let (m, xs, ls) = (model.clone(), x.clone(), labels.clone());
    let fused = peak_of(move || {
        let mut rng = Pcg64::seed_from_u64(1);
        let tape = Tape::new();
        let input = tape.constant_shared(xs);
        let logits = m.forward(&mut Context::train(&mut rng), input).unwrap();
        let loss = CrossEntropyLoss::default().forward(logits, &ls).unwrap();
        let _ = loss.backward().unwrap();
    });
    // The same step with the product and the bias addition as two nodes.
    let (xs, ls, ps) = (x.clone(), labels.clone(), params.clone());
    let unfused = peak_of(move || {
        let mut rng = Pcg64::seed_from_u64(1);
        let tape = Tape::new();
        let v: Vec<_> = ps.iter().map(|p| tape.leaf((**p).clone())).collect();
        let hidden = tape
            .constant_shared(xs)
            .matmul_t(v[0])
            .unwrap()
            .add(v[1])
            .unwrap()
            .relu()
            .unwrap()
            .dropout(0.5, &mut rng)
            .unwrap();
        let logits = hidden.matmul_t(v[2]).unwrap().add(v[3]).unwrap();
        let _ = logits.cross_entropy(&ls).unwrap().backward().unwrap();
    });
    assert!(
        unfused - fused >= H * 9 / 10,
        "the fused layer should keep one [N, hidden] tensor fewer: fused peak {fused} B, \
         unfused {unfused} B, one tensor {H} B"
    );

    // ReLU then dropout, backward only: the gradient of the sum is the one tensor allocated; both
    // masks are applied to it in place and it becomes x's gradient.
    let backward_peak = std::thread::spawn(|| {
        let mut rng = Pcg64::seed_from_u64(2);
        let tape = Tape::new();
        let x = tape.leaf(Tensor::<f32>::normal(&[N, HIDDEN], 0.0, 1.0, &mut rng).unwrap());
        let loss = x
            .relu()
            .unwrap()
            .dropout(0.5, &mut rng)
            .unwrap()
            .sum()
            .unwrap();
        let (peak, grads) = peak_during(|| loss.backward().unwrap());
        assert_eq!(grads.wrt(x).unwrap().numel(), N * HIDDEN);
        peak
    })
    .join()
    .unwrap();
    assert!(
        backward_peak <= H + H / 8,
        "a backward through ReLU and dropout should allocate one gradient of {H} B, peaked at \
         {backward_peak} B"
    );
}
