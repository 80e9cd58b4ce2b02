//! Forward + backward of convolution and pooling in f32 (every input requiring a gradient, the
//! loss the sum of the output).
//!
//! - `cargo bench --bench ops_conv` — criterion, every workload (the headline one at 1 and 2
//!   threads, the others at 1);
//! - `CONV_BEST_OF=1 cargo bench --bench ops_conv` — instead, the fastest of many single steps of
//!   each workload at 1 and 2 threads, printed as the table `benches/ops_conv_pytorch.py` prints
//!   for PyTorch, for a side-by-side comparison.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{
    AvgPool2dOptions, Conv1dOptions, Conv2dOptions, MaxPool2dOptions, Param, Result, Tape, Tensor,
    Var,
};

/// A workload's parameters: the input first.
struct Workload {
    name: &'static str,
    params: Vec<Param<f32>>,
    step: for<'t> fn(&[Var<'t, f32>]) -> Result<Var<'t, f32>>,
}

fn param(rng: &mut Pcg64, dims: &[usize]) -> Param<f32> {
    let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
    let std = if dims.len() > 1 {
        1.0 / (fan_in as f32).sqrt()
    } else {
        1.0
    };
    Param::new("p", Tensor::normal(dims, 0.0, std, rng).unwrap())
}

fn workloads() -> Vec<Workload> {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = |dims: &[&[usize]]| -> Vec<Param<f32>> {
        dims.iter().map(|d| param(&mut rng, d)).collect()
    };
    vec![
        Workload {
            name: "conv2d_64x3x32x32_k3",
            params: p(&[&[64, 3, 32, 32], &[32, 3, 3, 3], &[32]]),
            step: |v| v[0].conv2d(v[1], Some(v[2]), Conv2dOptions::default().padding(1)),
        },
        Workload {
            name: "digits_cnn_64x1x8x8",
            params: p(&[
                &[64, 1, 8, 8],
                &[32, 1, 3, 3],
                &[32],
                &[64, 32, 3, 3],
                &[64],
            ]),
            step: |v| {
                let same = Conv2dOptions::default().padding(1);
                v[0].conv2d(v[1], Some(v[2]), same)?
                    .relu()?
                    .max_pool2d(MaxPool2dOptions::new(2))?
                    .conv2d(v[3], Some(v[4]), same)
            },
        },
        Workload {
            name: "conv2d_64x32x4x4_k3_digits_conv2",
            params: p(&[&[64, 32, 4, 4], &[64, 32, 3, 3], &[64]]),
            step: |v| v[0].conv2d(v[1], Some(v[2]), Conv2dOptions::default().padding(1)),
        },
        Workload {
            name: "conv2d_32x16x32x32_k3_s2",
            params: p(&[&[32, 16, 32, 32], &[32, 16, 3, 3], &[32]]),
            step: |v| {
                v[0].conv2d(
                    v[1],
                    Some(v[2]),
                    Conv2dOptions::default().padding(1).stride(2),
                )
            },
        },
        Workload {
            name: "conv2d_32x32x32x32_depthwise_k3",
            params: p(&[&[32, 32, 32, 32], &[32, 1, 3, 3], &[32]]),
            step: |v| {
                v[0].conv2d(
                    v[1],
                    Some(v[2]),
                    Conv2dOptions::default().padding(1).groups(32),
                )
            },
        },
        Workload {
            name: "conv2d_32x64x16x16_k1",
            params: p(&[&[32, 64, 16, 16], &[64, 64, 1, 1], &[64]]),
            step: |v| v[0].conv2d(v[1], Some(v[2]), Conv2dOptions::default()),
        },
        Workload {
            name: "conv1d_64x16x128_k5",
            params: p(&[&[64, 16, 128], &[32, 16, 5], &[32]]),
            step: |v| v[0].conv1d(v[1], Some(v[2]), Conv1dOptions::default().padding(2)),
        },
        Workload {
            name: "max_pool2d_64x32x32x32_k2",
            params: p(&[&[64, 32, 32, 32]]),
            step: |v| v[0].max_pool2d(MaxPool2dOptions::new(2)),
        },
        Workload {
            name: "max_pool2d_64x32x32x32_k3_s2_p1",
            params: p(&[&[64, 32, 32, 32]]),
            step: |v| v[0].max_pool2d(MaxPool2dOptions::new(3).stride(2).padding(1)),
        },
        Workload {
            name: "avg_pool2d_64x32x32x32_k2",
            params: p(&[&[64, 32, 32, 32]]),
            step: |v| v[0].avg_pool2d(AvgPool2dOptions::new(2)),
        },
        Workload {
            name: "adaptive_avg_pool2d_64x32x32x32_to_1",
            params: p(&[&[64, 32, 32, 32]]),
            step: |v| v[0].adaptive_avg_pool2d(1),
        },
    ]
}

/// One forward + backward step of a workload.
fn step(w: &Workload) {
    let tape = Tape::new();
    let vars: Vec<Var<'_, f32>> = w.params.iter().map(|p| tape.param(p)).collect();
    let out = (w.step)(&vars).unwrap();
    let _ = black_box(out.sum().unwrap().backward().unwrap());
}

fn conv_benches(c: &mut Criterion) {
    let workloads = workloads();
    let mut group = c.benchmark_group("conv_forward_backward_f32");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for (k, w) in workloads.iter().enumerate() {
        let threads: &[usize] = if k == 0 { &[1, 2] } else { &[1] };
        for &t in threads {
            tapegrad::set_num_threads(t);
            group.bench_function(format!("{}/threads={t}", w.name), |b| b.iter(|| step(w)));
        }
    }
    tapegrad::set_num_threads(0);
    group.finish();
}

/// The fastest of `rounds` single steps (after a warm-up), in µs: the least disturbed step on a
/// shared machine.
fn fastest(w: &Workload, rounds: usize) -> f64 {
    for _ in 0..5 {
        step(w);
    }
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            step(w);
            start.elapsed().as_secs_f64() * 1e6
        })
        .fold(f64::INFINITY, f64::min)
}

fn best_of() {
    println!("tapegrad: fastest of 50 steps (forward + backward, f32), µs");
    for w in workloads() {
        let times: Vec<String> = [1, 2]
            .iter()
            .map(|&t| {
                tapegrad::set_num_threads(t);
                format!("{:>9.0}", fastest(&w, 50))
            })
            .collect();
        println!(
            "{:<40} threads=1 {}  threads=2 {}",
            w.name, times[0], times[1]
        );
    }
    tapegrad::set_num_threads(0);
}

criterion_group!(benches, conv_benches);

fn main() {
    if std::env::var_os("CONV_BEST_OF").is_some() {
        best_of();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
