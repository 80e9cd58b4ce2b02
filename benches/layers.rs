//! Forward + backward of two small models built from `tapegrad::nn` layers, f32, one thread, the
//! loss being the sum of the output. Run: `cargo bench --bench layers`; the PyTorch side is
//! `python3 benches/layers_pytorch.py`.
//!
//! - `block_8x64x128`: a pre-norm transformer `Block` (E = 128, 4 heads, causal, dropout 0) in
//!   training mode on x [8, 64, 128].
//! - `cnn_32x1x28x28`: the CNN of `docs/layers.md` (Conv2d 1→8 3×3, BatchNorm2d, ReLU,
//!   MaxPool2d 2, Conv2d 8→16 3×3 groups 2, GELU, AvgPool2d 2, Flatten, Linear 784→10) in
//!   training mode on x [32, 1, 28, 28].
//!
//! `cargo bench --bench layers -- --fastest` prints the fastest of 7 rounds in milliseconds per
//! step, one line in the format of the PyTorch script, so that the two can be compared.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::{
    AvgPool2d, BatchNorm2d, Block, Context, Conv2d, Flatten, Forward, GELU, Linear, MaxPool2d,
    ReLU, Sequential,
};
use tapegrad::{Conv2dOptions, Tape, Tensor};

struct Workloads {
    block: Block<f32>,
    block_x: Tensor<f32>,
    cnn: Sequential<f32>,
    cnn_x: Tensor<f32>,
}

fn workloads() -> Workloads {
    let mut rng = Pcg64::seed_from_u64(0);
    let same = Conv2dOptions::new().padding(1);
    Workloads {
        block: Block::new(128, 4, 0.0, &mut rng).unwrap(),
        block_x: Tensor::normal(&[8, 64, 128], 0.0, 1.0, &mut rng).unwrap(),
        cnn: Sequential::new()
            .push(Conv2d::with_options(1, 8, 3, same, false, &mut rng).unwrap())
            .push(BatchNorm2d::new(8).unwrap())
            .push(ReLU)
            .push(MaxPool2d::new(2).unwrap())
            .push(Conv2d::with_options(8, 16, 3, same.groups(2), true, &mut rng).unwrap())
            .push(GELU::new())
            .push(AvgPool2d::new(2).unwrap())
            .push(Flatten::new())
            .push(Linear::new(16 * 7 * 7, 10, &mut rng).unwrap()),
        cnn_x: Tensor::normal(&[32, 1, 28, 28], 0.0, 1.0, &mut rng).unwrap(),
    }
}

fn step<M: Forward<f32>>(model: &M, x: &Tensor<f32>) {
    let tape = Tape::new();
    let y = model
        .forward(&mut Context::train_deterministic(), tape.leaf(x.clone()))
        .unwrap();
    let _ = black_box(y.sum().unwrap().backward().unwrap());
}

fn layers(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let w = workloads();
    let mut group = c.benchmark_group("layers_forward_backward_f32");
    group.bench_function("block_8x64x128/t1", |b| {
        b.iter(|| step(&w.block, &w.block_x))
    });
    group.bench_function("cnn_32x1x28x28/t1", |b| b.iter(|| step(&w.cnn, &w.cnn_x)));
    group.finish();
    tapegrad::set_num_threads(0);
}

/// Milliseconds per call of `f`: the fastest of 7 rounds of `steps` calls, after a warm-up.
fn fastest(steps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..steps {
        f();
    }
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..steps {
                f();
            }
            start.elapsed().as_secs_f64() * 1e3 / steps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn print_fastest() {
    tapegrad::set_num_threads(1);
    let w = workloads();
    let block = fastest(10, || step(&w.block, &w.block_x));
    let cnn = fastest(10, || step(&w.cnn, &w.cnn_x));
    println!("tapegrad threads 1 block_8x64x128 {block:.3} ms cnn_32x1x28x28 {cnn:.3} ms");
    tapegrad::set_num_threads(0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = layers
}

fn main() {
    if std::env::args().any(|a| a == "--fastest") {
        print_fastest();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
