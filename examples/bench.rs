//! The speed comparison: one JSON line per workload, `{"workload": ..., "threads": N, "us_per_step": X}`,
//! with the same workloads as `benches/pytorch_reference.py` runs in PyTorch.
//!
//! Every line also carries `"cpu_us_per_step"`: the CPU time of all the process's threads per step
//! (from `/proc/self/task/*/schedstat`), in the same fastest round. On a machine shared with other
//! jobs, wall time includes the time the scheduler gave to others; CPU time does not, so at one
//! thread it is the better estimate of the cost of a step (it still includes cache interference).
//!
//! `fp32_peak` measures the machine's FP32 peak with a loop of independent fused multiply-adds,
//! through `pulp`'s run-time dispatch (AVX-512 where the CPU has it, else AVX2+FMA), on `--threads`
//! threads: `{"workload": "fp32_peak", "threads": N, "gflops": X, "isa": "avx512", "cpu": "..."}`
//! (and `fp32_peak_avx2` for the AVX2 path on a CPU with AVX-512), so that matmul can be reported
//! as a fraction of the peak the same run measured. Its `"gflops_per_cpu_second"` is one thread's
//! rate per second of its own CPU time: the per-core peak, unaffected by time given to other jobs.
//!
//! Run: `cargo run --release --example bench -- --json --threads 1`
//! `--only fp32_peak` runs the FMA loop alone.
//! Options: `--threads N` (default: the `tapegrad::num_threads` default), `--only NAME` to run one
//! workload (each in its own process gives a clean peak-memory figure), `--sweep` to run the
//! lesson's step over a grid of batch sizes N and hidden sizes H instead (`sweep_n{N}_h{H}`),
//! `--accuracy` to print the summation kernel's relative error against an f64 sum instead.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, manual_step};
use tapegrad::nn::{Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential};
use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
use tapegrad::{BackwardOptions, Result, Tape, Tensor};

#[path = "digits_cnn/model.rs"]
mod digits_cnn_model;
#[path = "gpt/model.rs"]
mod gpt_model;
#[path = "makemore/model.rs"]
mod makemore_model;

/// What one workload reports.
struct Measured {
    us_per_step: f64,
    /// Extra JSON fields (already formatted as `"key": value`).
    extra: Vec<String>,
}

/// CPU time (ns) spent so far by all threads of this process, from `/proc/self/task/*/schedstat`
/// (0 where unavailable). Threads that have exited are not counted: rayon's pool lives as long as
/// the process, so rounds are still comparable.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// The fastest round: wall time and CPU time (all threads) per step, in µs.
#[derive(Clone, Copy)]
struct Timing {
    wall_us: f64,
    cpu_us: f64,
}

/// Times `steps` calls of `step` after `warmup` untimed ones, in 7 rounds, and reports the fastest
/// round (wall and CPU time, each the minimum over the rounds): on a shared machine, interference
/// only ever adds time, so the minimum is the most repeatable estimate (the PyTorch side is timed
/// the same way).
fn time_steps_cpu(
    warmup: usize,
    steps: usize,
    mut step: impl FnMut() -> Result<()>,
) -> Result<Timing> {
    for _ in 0..warmup {
        step()?;
    }
    let mut best = Timing {
        wall_us: f64::INFINITY,
        cpu_us: f64::INFINITY,
    };
    for _ in 0..7 {
        let (start, cpu_start) = (Instant::now(), cpu_ns());
        for _ in 0..steps {
            step()?;
        }
        let wall = start.elapsed().as_secs_f64() * 1e6 / steps as f64;
        let cpu = (cpu_ns() - cpu_start) as f64 / 1e3 / steps as f64;
        best.wall_us = best.wall_us.min(wall);
        best.cpu_us = best.cpu_us.min(cpu);
    }
    CPU_US.with(|c| c.set(best.cpu_us));
    Ok(best)
}

thread_local! {
    /// The CPU time per step of the last timed workload, printed with its line.
    static CPU_US: std::cell::Cell<f64> = const { std::cell::Cell::new(f64::NAN) };
}

/// [`time_steps_cpu`]'s wall time (the CPU time goes to the JSON line through `CPU_US`).
fn time_steps(warmup: usize, steps: usize, step: impl FnMut() -> Result<()>) -> Result<f64> {
    Ok(time_steps_cpu(warmup, steps, step)?.wall_us)
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
    // Shared with each step's tape, not copied (as the peers use one tensor for every step).
    let x = Arc::new(Tensor::<f32>::normal(&[n, dims[0]], 0.0, 1.0, &mut rng)?);
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
        let logits = model.forward(
            &mut Context::train(&mut rng),
            tape.constant_shared(Arc::clone(&x)),
        )?;
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
    let flops = 2.0 * 1024f64.powi(3);
    let cpu_us = CPU_US.with(|c| c.get());
    Ok(Measured {
        us_per_step: us,
        extra: vec![
            format!("\"gflops\": {:.1}", flops / us / 1e3),
            format!("\"gflops_per_cpu_second\": {:.1}", flops / cpu_us / 1e3),
        ],
    })
}

/// Parameters of normal values, shared with each step's tape (not copied).
fn params(dims: &[&[usize]], rng: &mut Pcg64) -> Result<Vec<tapegrad::Param<f32>>> {
    dims.iter()
        .enumerate()
        .map(|(i, d)| {
            Ok(tapegrad::Param::new(
                format!("p{i}"),
                Tensor::<f32>::normal(d, 0.0, 1.0, rng)?,
            ))
        })
        .collect()
}

/// `F.conv2d(x [64,3,32,32], w [32,3,3,3], b [32], padding=1).sum()`, forward + backward to all three.
fn conv2d_64x3x32x32() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    let p = params(&[&[64, 3, 32, 32], &[32, 3, 3, 3], &[32]], &mut rng)?;
    let us = time_steps(3, 10, || {
        let tape = Tape::new();
        let out = tape.param(&p[0]).conv2d(
            tape.param(&p[1]),
            Some(tape.param(&p[2])),
            tapegrad::Conv2dOptions::default().padding(1),
        )?;
        let _ = black_box(out.sum()?.backward()?);
        Ok(())
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![],
    })
}

/// `(F.layer_norm(x [4096,768], (768,), w, b, 1e-5) * g).sum()`, forward + backward to x, w, b.
/// `g` is a fixed random tensor, shared with each step's tape as a constant (no copy, no gradient),
/// as in the peers.
fn layer_norm_4096x768() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    let p = params(&[&[4096, 768], &[768], &[768]], &mut rng)?;
    let g = Arc::new(Tensor::<f32>::normal(&[4096, 768], 0.0, 1.0, &mut rng)?);
    let us = time_steps(3, 10, || {
        let tape = Tape::new();
        let out = tape.param(&p[0]).layer_norm(
            &[768],
            Some(tape.param(&p[1])),
            Some(tape.param(&p[2])),
            1e-5,
        )?;
        let loss = out.mul(tape.constant_shared(Arc::clone(&g)))?.sum()?;
        let _ = black_box(loss.backward()?);
        Ok(())
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![],
    })
}

/// Causal `F.scaled_dot_product_attention(q, k, v)` with q, k, v `[8,4,128,32]`, `.sum()`, forward +
/// backward to q, k, v.
fn attention_8x4x128x32() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    let p = params(
        &[&[8, 4, 128, 32], &[8, 4, 128, 32], &[8, 4, 128, 32]],
        &mut rng,
    )?;
    let us = time_steps(10, 50, || {
        let tape = Tape::new();
        let out = tape.param(&p[0]).scaled_dot_product_attention(
            tape.param(&p[1]),
            tape.param(&p[2]),
            None,
            true,
            0.0,
            &mut rng,
        )?;
        let _ = black_box(out.sum()?.backward()?);
        Ok(())
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![],
    })
}

/// Batched matmul `[64,128,64] × [64,64,128]`, forward only (as the references), with "gflops".
fn bmm_64x128x64x128() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    let p = params(&[&[64, 128, 64], &[64, 64, 128]], &mut rng)?;
    let us = time_steps(5, 20, || {
        let tape = Tape::no_grad();
        let _ = black_box(tape.param(&p[0]).matmul(tape.param(&p[1]))?);
        Ok(())
    })?;
    let flops = 2.0 * 64.0 * 128.0 * 64.0 * 128.0;
    Ok(Measured {
        us_per_step: us,
        extra: vec![format!("\"gflops\": {:.1}", flops / us / 1e3)],
    })
}

/// `tanh` of a 256×256 f32 tensor, forward + backward with a given output gradient (the
/// transcendental-function cost that `crate::kernels::vecmath` addresses).
fn tanh_256x256() -> Result<Measured> {
    let mut rng = Pcg64::seed_from_u64(0);
    let x = tapegrad::Param::new("x", Tensor::<f32>::normal(&[256, 256], 0.0, 2.0, &mut rng)?);
    let mut g = Some(Tensor::<f32>::normal(&[256, 256], 0.0, 1.0, &mut rng)?);
    let us = time_steps(20, 200, || {
        let tape = Tape::new();
        let y = tape.param(&x).tanh()?;
        let seed = g.take().expect("the seed gradient is put back every step");
        let mut grads =
            y.backward_with(BackwardOptions::new().seed(seed).keep_intermediate(true))?;
        black_box(grads.param(&x));
        g = grads.take(y);
        Ok(())
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![],
    })
}

/// The CPU's model name, from /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().replace('"', "'"))
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Fused multiply-adds per accumulator and call of [`FmaLoop`].
const FMA_ITERATIONS: usize = 1 << 23;
/// Independent accumulators: enough to cover the FMA latency (4 cycles) on two FMA pipes, and few
/// enough to stay in registers (16 vector registers with AVX2).
const ACCUMULATORS: usize = 12;

/// `acc = acc·a + b`, [`FMA_ITERATIONS`] times on [`ACCUMULATORS`] independent registers; returns
/// the number of floating-point operations and a value that depends on all of them.
struct FmaLoop {
    a: f32,
    b: f32,
}

impl pulp::WithSimd for FmaLoop {
    type Output = (f64, f32);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> (f64, f32) {
        let (a, b) = (simd.splat_f32s(self.a), simd.splat_f32s(self.b));
        let mut acc = [simd.splat_f32s(1.0); ACCUMULATORS];
        for _ in 0..FMA_ITERATIONS {
            for r in acc.iter_mut() {
                *r = simd.mul_add_f32s(*r, a, b);
            }
        }
        let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
        let mut total = simd.splat_f32s(0.0);
        for r in acc {
            total = simd.add_f32s(total, r);
        }
        let flops = 2.0 * (lanes * ACCUMULATORS * FMA_ITERATIONS) as f64;
        (flops, simd.reduce_sum_f32s(total))
    }
}

/// The instruction sets the FMA loop can run on, best first, with their names.
fn peak_isas() -> Vec<(&'static str, pulp::Arch)> {
    let mut isas = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(v4) = pulp::x86::V4::try_new() {
            isas.push(("avx512", pulp::Arch::V4(v4)));
        }
        if let Some(v3) = pulp::x86::V3::try_new() {
            isas.push(("avx2", pulp::Arch::V3(v3)));
        }
    }
    if isas.is_empty() {
        isas.push(("baseline", pulp::Arch::new()));
    }
    isas
}

/// CPU time (ns) of the calling thread so far (0 where unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// FP32 peak on `threads` threads with `arch`, from the fastest of 7 rounds of the FMA loop run by
/// every thread at once: (GFLOP/s of all threads together, GFLOP/s per CPU second of one thread,
/// µs of the fastest round).
fn fp32_peak_with(arch: pulp::Arch, threads: usize) -> (f64, f64, f64) {
    let run = || {
        let start = thread_cpu_ns();
        let (flops, checksum) = arch.dispatch(FmaLoop {
            a: black_box(0.999_999),
            b: black_box(1e-6),
        });
        (flops, checksum, (thread_cpu_ns() - start) as f64)
    };
    run();
    let (mut best, mut best_per_cpu, mut best_us) = (0.0f64, 0.0f64, f64::INFINITY);
    for _ in 0..7 {
        let start = Instant::now();
        let results: Vec<(f64, f32, f64)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(run)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((0.0, 0.0, f64::INFINITY)))
                .collect()
        });
        let us = start.elapsed().as_secs_f64() * 1e6;
        let flops: f64 = results.iter().map(|r| r.0).sum();
        black_box(results.iter().map(|r| r.1).sum::<f32>());
        best = best.max(flops / us / 1e3);
        best_us = best_us.min(us);
        for (flops, _, cpu_ns) in results {
            best_per_cpu = best_per_cpu.max(flops / cpu_ns);
        }
    }
    (best, best_per_cpu, best_us)
}

/// `fp32_peak` (the best instruction set) and, where there is a better one, `fp32_peak_avx2`.
fn fp32_peak(threads: usize) {
    let cpu = cpu_model();
    for (i, (isa, arch)) in peak_isas().into_iter().enumerate() {
        let (gflops, per_cpu, us) = fp32_peak_with(arch, threads);
        let name = if i == 0 {
            "fp32_peak".to_string()
        } else {
            format!("fp32_peak_{isa}")
        };
        // us_per_step: the fastest round (every thread's loop), the field every line has.
        println!(
            "{{\"workload\": \"{name}\", \"threads\": {threads}, \"us_per_step\": {us:.1}, \"gflops\": {gflops:.1}, \"gflops_per_cpu_second\": {per_cpu:.1}, \"isa\": \"{isa}\", \"cpu\": \"{cpu}\"}}"
        );
    }
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

/// One SGD step (lr 0.1) of the makemore model (`examples/makemore/`) on a fixed random batch of
/// 32 contexts: forward, cross-entropy, backward, update.
fn makemore_step() -> Result<Measured> {
    use makemore_model::{BATCH, CONTEXT, Makemore, VOCAB};
    use rand::RngExt;
    let mut rng = Pcg64::seed_from_u64(0);
    let model = Makemore::new(&mut rng)?;
    let x: Vec<usize> = (0..BATCH * CONTEXT)
        .map(|_| rng.random_range(0..VOCAB))
        .collect();
    let y: Vec<usize> = (0..BATCH).map(|_| rng.random_range(0..VOCAB)).collect();
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
    )?;
    let us = time_steps(20, 200, || {
        let tape = Tape::new();
        let grads = model.forward(&tape, &x)?.cross_entropy(&y)?.backward()?;
        sgd.step(&grads)
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![peak_rss_field()],
    })
}

/// The process's peak resident memory as a JSON field (meaningful when the workload runs alone,
/// `--only NAME`, as `benches/compare.py` runs it).
fn peak_rss_field() -> String {
    format!("\"peak_rss_kib\": {}", rss_kib().1)
}

/// One Adam step (lr 1e-3) of the digits CNN (`examples/digits_cnn/`) in training mode (dropout
/// on) on a fixed random batch of 64 images.
fn digits_cnn_step() -> Result<Measured> {
    use rand::RngExt;
    let mut rng = Pcg64::seed_from_u64(0);
    let model = digits_cnn_model::DigitsCnn::new(&mut rng)?;
    let x = Arc::new(Tensor::normal(&[64, 64], 0.0, 1.0, &mut rng)?);
    let y: Vec<usize> = (0..64).map(|_| rng.random_range(0..10)).collect();
    let mut adam =
        tapegrad::optim::Adam::new(model.named_params(), tapegrad::optim::AdamConfig::default())?;
    let us = time_steps(5, 20, || {
        let tape = Tape::new();
        let logits = model.forward(
            &tape,
            &mut Context::train(&mut rng),
            tape.constant_shared(Arc::clone(&x)),
        )?;
        let grads = logits.cross_entropy(&y)?.backward()?;
        adam.step(&grads)
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![peak_rss_field()],
    })
}

/// One training step of the GPT of `examples/gpt/` (vocabulary 65, context 128, 4 layers of 4
/// heads and 128 dimensions, dropout 0.1) on a fixed random batch of 16 windows: forward,
/// backward, `clip_grad_norm` to 1, AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on every
/// parameter, as the PyTorch reference does).
fn gpt_step() -> Result<Measured> {
    use gpt_model::{Gpt, GptConfig};
    use rand::RngExt;
    let (vocab, block, batch) = (65, 128, 16);
    let mut rng = Pcg64::seed_from_u64(0);
    let config = GptConfig {
        vocab,
        block,
        layers: 4,
        heads: 4,
        embed: 128,
        dropout: 0.1,
    };
    let model = Gpt::<f32>::new(config, &mut rng)?;
    let ids: Vec<usize> = (0..batch * block)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let ids = tapegrad::Indices::new(&ids, &[batch, block])?;
    let targets: Vec<usize> = (0..batch * block)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let mut adamw = tapegrad::optim::Adam::new(
        model.named_params(),
        tapegrad::optim::AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.99),
            weight_decay: 0.1,
            ..tapegrad::optim::AdamConfig::adamw()
        },
    )?;
    let us = time_steps(2, 3, || {
        let tape = Tape::new();
        let logits = model.forward(&mut Context::train(&mut rng), &tape, &ids)?;
        let mut grads = logits
            .reshape(&[batch * block, vocab])?
            .cross_entropy(&targets)?
            .backward()?;
        tapegrad::optim::clip_grad_norm(&mut grads, adamw.params(), 1.0, 2.0, false)?;
        adamw.step(&grads)
    })?;
    Ok(Measured {
        us_per_step: us,
        extra: vec![
            format!(
                "\"tokens_per_s\": {:.0}",
                (batch * block) as f64 / (us * 1e-6)
            ),
            peak_rss_field(),
        ],
    })
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
    let workloads: [Workload; 14] = [
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
        ("conv2d_64x3x32x32_k3", conv2d_64x3x32x32),
        ("layer_norm_4096x768", layer_norm_4096x768),
        ("attention_8x4x128x32", attention_8x4x128x32),
        ("bmm_64x128x64x128", bmm_64x128x64x128),
        ("tanh_256x256", tanh_256x256),
        ("makemore_step", makemore_step),
        ("digits_cnn_step", digits_cnn_step),
        ("gpt_step", gpt_step),
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
    if only.as_deref().is_none_or(|o| o.starts_with("fp32_peak")) {
        fp32_peak(threads);
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
            format!("\"cpu_us_per_step\": {:.1}", CPU_US.with(|c| c.get())),
        ];
        fields.extend(m.extra);
        println!("{{{}}}", fields.join(", "));
    }
    if !json_only {
        eprintln!("(tapegrad, {threads} threads, fastest of 7 rounds)");
    }
    Ok(())
}
