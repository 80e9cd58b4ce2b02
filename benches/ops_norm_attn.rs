//! Forward + backward of the normalisation and attention ops, f32, the loss being the sum of the
//! output. Run: `cargo bench --bench ops_norm_attn`; the PyTorch side of the two headline
//! workloads is `python3 benches/ops_norm_attn_pytorch.py`.
//!
//! - `layer_norm_4096x768`: `F.layer_norm(x, (768,), w, b)`, x [4096, 768], w and b [768].
//! - `attention_8x4x128x32`: causal `F.scaled_dot_product_attention(q, k, v, is_causal=True)`,
//!   q, k, v [8, 4, 128, 32], all requiring gradients.
//!
//! Each is timed at 1 and 2 threads (`/t1`, `/t2`); the others at 1 thread.
//!
//! `cargo bench --bench ops_norm_attn -- --fastest` instead prints, for the two headline workloads
//! at 1 and 2 threads, the fastest of 7 rounds in milliseconds per step (the convention of
//! `examples/bench.rs`: on a shared machine interference only adds time), one line each in the
//! format of the PyTorch script, so that the two can be run alternately and compared.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{AttnMask, Param, RunningStats, Tape, Tensor};

fn param(name: &str, dims: &[usize], rng: &mut Pcg64) -> Param<f32> {
    Param::new(name, Tensor::normal(dims, 0.0, 1.0, rng).unwrap())
}

fn headline(c: &mut Criterion) {
    let mut rng = Pcg64::seed_from_u64(0);
    let x = param("x", &[4096, 768], &mut rng);
    let w = param("w", &[768], &mut rng);
    let b = param("b", &[768], &mut rng);
    let q = param("q", &[8, 4, 128, 32], &mut rng);
    let k = param("k", &[8, 4, 128, 32], &mut rng);
    let v = param("v", &[8, 4, 128, 32], &mut rng);
    let mut group = c.benchmark_group("norm_attn_forward_backward_f32");
    for threads in [1, 2] {
        tapegrad::set_num_threads(threads);
        group.bench_function(format!("layer_norm_4096x768/t{threads}"), |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let y = tape
                    .param(&x)
                    .layer_norm(&[768], Some(tape.param(&w)), Some(tape.param(&b)), 1e-5)
                    .unwrap();
                let _ = black_box(y.sum().unwrap().backward().unwrap());
            })
        });
        group.bench_function(format!("attention_8x4x128x32/t{threads}"), |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let out = tape
                    .param(&q)
                    .scaled_dot_product_attention(
                        tape.param(&k),
                        tape.param(&v),
                        None,
                        true,
                        0.0,
                        &mut rng,
                    )
                    .unwrap();
                let _ = black_box(out.sum().unwrap().backward().unwrap());
            })
        });
    }
    group.finish();
    tapegrad::set_num_threads(0);
}

fn others(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(1);
    let x = param("x", &[4096, 768], &mut rng);
    let w = param("w", &[768], &mut rng);
    let images = param("images", &[32, 64, 16, 16], &mut rng);
    let gamma = param("gamma", &[64], &mut rng);
    let beta = param("beta", &[64], &mut rng);
    let q = param("q", &[8, 4, 128, 32], &mut rng);
    let k = param("k", &[8, 4, 128, 32], &mut rng);
    let v = param("v", &[8, 4, 128, 32], &mut rng);
    let padding = Tensor::from_vec(
        (0..8 * 128).map(|i| f32::from(i % 128 < 100)).collect(),
        &[8, 1, 1, 128],
    )
    .unwrap();
    let (mut running_mean, mut running_var) = (
        Tensor::<f32>::zeros(&[64]).unwrap(),
        Tensor::<f32>::ones(&[64]).unwrap(),
    );
    let mut group = c.benchmark_group("norm_attn_forward_backward_f32");
    group.bench_function("rms_norm_4096x768/t1", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let y = tape
                .param(&x)
                .rms_norm(&[768], Some(tape.param(&w)), None)
                .unwrap();
            let _ = black_box(y.sum().unwrap().backward().unwrap());
        })
    });
    group.bench_function("batch_norm_train_32x64x16x16/t1", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let stats = RunningStats {
                mean: &mut running_mean,
                var: &mut running_var,
            };
            let y = tape
                .param(&images)
                .batch_norm(
                    Some(tape.param(&gamma)),
                    Some(tape.param(&beta)),
                    Some(stats),
                    true,
                    0.1,
                    1e-5,
                )
                .unwrap();
            let _ = black_box(y.sum().unwrap().backward().unwrap());
        })
    });
    group.bench_function("attention_padding_mask_dropout_8x4x128x32/t1", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let mask = AttnMask::Keep(tape.constant(padding.clone()));
            let out = tape
                .param(&q)
                .scaled_dot_product_attention(
                    tape.param(&k),
                    tape.param(&v),
                    Some(mask),
                    false,
                    0.1,
                    &mut rng,
                )
                .unwrap();
            let _ = black_box(out.sum().unwrap().backward().unwrap());
        })
    });
    group.finish();
    tapegrad::set_num_threads(0);
}

/// Milliseconds per call of `step`: the fastest of 7 rounds of `steps` calls, after a warm-up.
fn fastest(steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..steps {
        step();
    }
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..steps {
                step();
            }
            start.elapsed().as_secs_f64() * 1e3 / steps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn print_fastest() {
    let mut rng = Pcg64::seed_from_u64(0);
    let x = param("x", &[4096, 768], &mut rng);
    let w = param("w", &[768], &mut rng);
    let b = param("b", &[768], &mut rng);
    let q = param("q", &[8, 4, 128, 32], &mut rng);
    let k = param("k", &[8, 4, 128, 32], &mut rng);
    let v = param("v", &[8, 4, 128, 32], &mut rng);
    for threads in [1, 2] {
        tapegrad::set_num_threads(threads);
        let ln = fastest(20, || {
            let tape = Tape::new();
            let y = tape
                .param(&x)
                .layer_norm(&[768], Some(tape.param(&w)), Some(tape.param(&b)), 1e-5)
                .unwrap();
            let _ = black_box(y.sum().unwrap().backward().unwrap());
        });
        let attention = fastest(20, || {
            let tape = Tape::new();
            let out = tape
                .param(&q)
                .scaled_dot_product_attention(
                    tape.param(&k),
                    tape.param(&v),
                    None,
                    true,
                    0.0,
                    &mut rng,
                )
                .unwrap();
            let _ = black_box(out.sum().unwrap().backward().unwrap());
        });
        println!(
            "tapegrad threads {threads} layer_norm_4096x768 {ln:.3} ms attention_8x4x128x32 {attention:.3} ms"
        );
    }
    tapegrad::set_num_threads(0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = headline, others
}

fn main() {
    if std::env::args().any(|a| a == "--fastest") {
        print_fastest();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
