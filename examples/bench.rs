//! The speed comparison: one JSON line per workload, `{"workload": ..., "threads": N, "us_per_step": X}`,
//! with the same workloads as `benches/pytorch_reference.py` runs in PyTorch.
//!
//! Run: `cargo run --release --example bench -- --json --threads 1`
//! Options: `--threads N` (default: the `tapegrad::num_threads` default), `--only NAME` to run one
//! workload (each in its own process gives a clean peak-memory figure), `--sweep` to run the
//! lesson's step over a grid of batch sizes N and hidden sizes H instead (`sweep_n{N}_h{H}`),
//! `--accuracy` to print the summation kernel's relative error against an f64 sum instead.

use std::hint::black_box;
use std::time::Instant;

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, manual_step};
use tapegrad::nn::{Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
use tapegrad::{BackwardOptions, Result, Tape, Tensor};

/// What one workload reports.
struct Measured {
    us_per_step: f64,
    /// Extra JSON fields (already formatted as `"key": value`).
    extra: Vec<String>,
}

/// Times `steps` calls of `step` after `warmup` untimed ones, in 7 rounds, and reports the fastest
/// round: on a shared machine, interference only ever adds time, so the minimum is the most
/// repeatable estimate (the PyTorch side is timed the same way).
fn time_steps(warmup: usize, steps: usize, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        step()?;
    }
    let mut rounds = Vec::with_capacity(7);
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        rounds.push(start.elapsed().as_secs_f64() * 1e6 / steps as f64);
    }
    Ok(rounds.into_iter().fold(f64::INFINITY, f64::min))
}

/// Resident memory of this process (current, peak) in KiB, from /proc (0 where unavailable).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn seed_manual() -> Result<Measured> {
    let (data, mut weights) = LessonConfig::default().generate::<f32>()?;
    let mut rng = Pcg64::seed_from_u64(1);
    let us = time_steps(20, 200, || {
        let step = manual_step(&data, &weights, 0.5, &mut rng)?;
        weights.sgd_step(&step.grads, 0.5);
        Ok(())
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![],
    })
}

fn mlp(dims: &[usize], p: f64, rng: &mut Pcg64) -> Result<Sequential<f32>> {
    let mut model = Sequential::new();
    for (i, pair) in dims.windows(2).enumerate() {
        model = model.push(Linear::new(pair[0], pair[1], rng)?);
        if i + 2 < dims.len() {
            model = model.push(ReLU).push(Dropout::new(p)?);
        }
    }
    Ok(model)
}

/// Steps of Sequential + CrossEntropyLoss + SGD on random data, with RSS after step 2 and at the end.
fn train_steps(n: usize, dims: &[usize], lr: f64, warmup: usize, steps: usize) -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Tensor::<f32>::normal(&[n, dims[0]], 0.0, 1.0, &mut rng)?;
    let classes = *dims.last().expect("dims has an output size");
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % classes).collect();
    let model = mlp(dims, 0.5, &mut rng)?;
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr,
            ..Default::default()
        },
    )?;
    let loss_fn = CrossEntropyLoss::default();
    let mut step = || -> Result<()> {
        let tape = Tape::new();
        let logits = model.forward(&mut Context::train(&mut rng), tape.constant(x.clone()))?;
        let loss = loss_fn.forward(logits, &labels)?;
        let grads = loss.backward()?;
        drop(tape);
        sgd.step(&grads)
    };
    step()?;
    step()?;
    let (after_two, _) = rss_kib();
    for _ in 0..8 {
        step()?;
    }
    let (after_ten, _) = rss_kib();
    let us = time_steps(warmup, steps, &mut step)?;
    let (end, peak) = rss_kib();
    Ok(Measured {
        us_per_step: us,
        extra: vec![
            format!(
                "\"rss_growth_after_step2_kib\": {}",
                end as i64 - after_two as i64
            ),
            format!(
                "\"rss_growth_after_step10_kib\": {}",
                end as i64 - after_ten as i64
            ),
            format!("\"peak_rss_kib\": {peak}"),
        ],
    })
}

fn matmul_1024() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    // Parameters are shared with the tape, not copied, so each step times the product alone.
    let a = tapegrad::Param::new(
        "a",
        Tensor::<f32>::normal(&[1024, 1024], 0.0, 1.0, &mut rng)?,
    );
    let b = tapegrad::Param::new(
        "b",
        Tensor::<f32>::normal(&[1024, 1024], 0.0, 1.0, &mut rng)?,
    );
    let us = time_steps(3, 10, || {
        let tape = Tape::no_grad();
        let _ = black_box(tape.param(&a).matmul(tape.param(&b))?);
        Ok(())
    })?;
    let gflops = 2.0 * 1024f64.powi(3) / us / 1e3;
    Ok(Measured {
        us_per_step: us,
        extra: vec![format!("\"gflops\": {gflops:.1}")],
    })
}

fn dropout_4096() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    // The input is a parameter (shared with the tape, not copied) and the seed gradient is moved in
    // and taken back out, so each step times dropout's forward and backward alone.
    let x = tapegrad::Param::new(
        "x",
        Tensor::<f32>::normal(&[4096, 4096], 0.0, 1.0, &mut rng)?,
    );
    let mut g = Some(Tensor::<f32>::normal(&[4096, 4096], 0.0, 1.0, &mut rng)?);
    let mut saved_bytes = 0;
    let us = time_steps(2, 10, || {
        let tape = Tape::new();
        let y = tape.param(&x).dropout(0.5, &mut rng)?;
        saved_bytes = tape.saved_bytes();
        let seed = g.take().expect("the seed gradient is put back every step");
        let mut grads =
            y.backward_with(BackwardOptions::new().seed(seed).keep_intermediate(true))?;
        black_box(grads.param(&x));
        g = grads.take(y);
        Ok(())
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![format!("\"saved_bytes\": {saved_bytes}")],
    })
}

/// Relative error of an f32 sum of n uniform draws in [0, 1) against the f64 sum of the same
/// values, for the pairwise kernel every reduction uses and for the running f32 total it replaced.
fn summation_accuracy() -> Result<()> {
    for n in [1_000_000usize, 10_000_000, 1 << 26] {
        let x = Tensor::<f32>::uniform(&[n], 0.0, 1.0, &mut Pcg64::seed_from_u64(n as u64))?;
        let exact = x.cast::<f64>()?.sum_all();
        let rel = |s: f32| ((f64::from(s) - exact) / exact).abs();
        let running: f32 = x.data().iter().copied().sum();
        println!(
            "{{\"accuracy\": \"sum_uniform_f32\", \"n\": {n}, \"pairwise_rel_err\": {:.2e}, \"running_total_rel_err\": {:.2e}}}",
            rel(x.sum_all()),
            rel(running)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(n) = flag("--threads").and_then(|n| n.parse().ok()) {
        tapegrad::set_num_threads(n);
    }
    let threads = tapegrad::num_threads();
    let json_only = args.iter().any(|a| a == "--json");
    let only = flag("--only");

    type Workload = (&'static str, fn() -> Result<Measured>);
    let workloads: [Workload; 6] = [
        ("seed_manual_200", seed_manual),
        ("seed_autograd_200", || {
            train_steps(128, &[20, 64, 5], 0.5, 20, 200)
        }),
        ("mlp_1024x784x1024x10", || {
            train_steps(1024, &[784, 1024, 10], 0.01, 2, 10)
        }),
        ("mlp_1024x784x4096x10", || {
            train_steps(1024, &[784, 4096, 10], 0.01, 2, 10)
        }),
        ("matmul_1024", matmul_1024),
        ("dropout_4096x4096", dropout_4096),
    ];
    if args.iter().any(|a| a == "--accuracy") {
        return summation_accuracy();
    }
    if args.iter().any(|a| a == "--sweep") {
        for n in [32, 128, 512, 2048] {
            for h in [64, 256, 1024] {
                let m = train_steps(n, &[20, h, 5], 0.1, 5, 50)?;
                println!(
                    "{{\"workload\": \"sweep_n{n}_h{h}\", \"threads\": {threads}, \"us_per_step\": {:.1}}}",
                    m.us_per_step
                );
            }
        }
        return Ok(());
    }
    for (name, run) in workloads {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let m = run()?;
        let mut fields = vec![
            format!("\"workload\": \"{name}\""),
            format!("\"threads\": {threads}"),
            format!("\"us_per_step\": {:.1}", m.us_per_step),
        ];
        fields.extend(m.extra);
        println!("{{{}}}", fields.join(", "));
    }
    if !json_only {
        eprintln!("(tapegrad, {threads} threads, fastest of 7 rounds)");
    }
    Ok(())
}
