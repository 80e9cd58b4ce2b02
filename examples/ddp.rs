//! Data-parallel training of the digits MLP (64→256→256→10) over MPI.
//!
//! Build: `cargo build --release --features mpi --example ddp`, then, as root add
//! `--allow-run-as-root --oversubscribe` to `mpirun`:
//!
//! - `mpirun -np 2 target/release/examples/ddp` trains (SGD, dropout 0.5, batch 32 per rank),
//!   logging on rank 0 and saving a checkpoint after every epoch to `--checkpoint PATH` (default
//!   `target/ddp_checkpoint.safetensors`); a later run resumes from it, with any number of ranks.
//!   Options: `--epochs N` (20), `--batch B` (32 per rank), `--dropout P` (0.5), `--seed S` (0),
//!   `--watchdog SECONDS` (60), and the injected faults `--fail-at STEP`, `--panic-at STEP`,
//!   `--kill-at STEP`, `--hang-at STEP` (on the last rank; STEP counts from the start of the run).
//! - `mpirun -np 2 target/release/examples/ddp --check` trains N ranks × batch B for 50 steps and
//!   one process with batch N·B on the same samples (dropout off), in f64 and f32, and prints
//!   `max relative difference, 2 ranks vs 1 process, 50 steps: X` (the f64 figure; the f32 one
//!   on the line after). Exit code 1 if X > 1e-12 (f64) or > 1e-6 (f32).
//! - `mpirun -np 2 target/release/examples/ddp --bench --threads 1` times the step of the
//!   `mlp_1024x784x1024x10` workload of `examples/bench.rs` (global batch 1024 split over the
//!   ranks) and the share the gradient all-reduce takes.
//!
//! Without `mpirun` it runs as a world of size 1.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::datasets::{Digits, Split};
use tapegrad::distributed::{
    self, DdpOptions, Distributed, DistributedDataParallel, DistributedSampler, Watchdog,
};
use tapegrad::lesson::accuracy;
use tapegrad::nn::{
    Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential, StateDict,
};
use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
use tapegrad::{Error, Float, Result, Tape, Tensor};

const TEST_COUNT: usize = 360;
const SPLIT_SEED: u64 = 0;
const INIT_SEED: u64 = 1;
const CHECK_STEPS: usize = 50;

/// Command-line options.
struct Args {
    raw: Vec<String>,
}

impl Args {
    fn has(&self, name: &str) -> bool {
        self.raw.iter().any(|a| a == name)
    }

    fn value<V: std::str::FromStr>(&self, name: &str, default: V) -> Result<V> {
        match self.raw.iter().position(|a| a == name) {
            None => Ok(default),
            Some(i) => self
                .raw
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::InvalidArgument {
                    op: "ddp example",
                    reason: format!("{name} needs a value of the right kind"),
                }),
        }
    }
}

fn mlp<T: Float>(dims: &[usize], p: f64, seed: u64) -> Result<Sequential<T>> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut model = Sequential::new();
    for (i, pair) in dims.windows(2).enumerate() {
        model = model.push(Linear::new(pair[0], pair[1], &mut rng)?);
        if i + 2 < dims.len() {
            model = model.push(ReLU).push(Dropout::new(p)?);
        }
    }
    Ok(model)
}

/// The rows `idx` of a split, as a batch.
fn batch<T: Float>(split: &Split<T>, idx: &[usize]) -> Result<(Tensor<T>, Vec<usize>)> {
    let width = split.x.dims()[1];
    let x = split.x.data();
    let rows: Vec<T> = idx
        .iter()
        .flat_map(|&i| x[i * width..(i + 1) * width].iter().copied())
        .collect();
    let labels = idx.iter().map(|&i| split.labels[i]).collect();
    Ok((Tensor::from_vec(rows, &[idx.len(), width])?, labels))
}

/// One forward and backward pass: the loss and the gradients.
fn loss_and_grads<T: Float>(
    model: &Sequential<T>,
    cx: &mut Context<'_>,
    x: Tensor<T>,
    labels: &[usize],
) -> Result<(f64, tapegrad::Gradients<T>)> {
    let tape = Tape::new();
    let logits = model.forward(cx, tape.constant(x))?;
    let loss = CrossEntropyLoss::default().forward(logits, labels)?;
    let value = loss.value().item()?.to_f64();
    Ok((value, loss.backward()?))
}

/// `max ‖a − b‖∞ / ‖b‖∞` over the tensors of two models.
fn max_relative_difference<T: Float>(a: &Sequential<T>, b: &Sequential<T>) -> f64 {
    let mut worst = 0.0f64;
    for ((_, pa), (_, pb)) in a.named_params().iter().zip(b.named_params().iter()) {
        let (va, vb) = (pa.value(), pb.value());
        let diff = va
            .data()
            .iter()
            .zip(vb.data())
            .map(|(x, y)| (x.to_f64() - y.to_f64()).abs())
            .fold(0.0, f64::max);
        let scale = vb
            .data()
            .iter()
            .map(|y| y.to_f64().abs())
            .fold(0.0, f64::max);
        worst = worst.max(if scale > 0.0 { diff / scale } else { diff });
    }
    worst
}

/// N ranks × batch B for 50 steps against one process × batch N·B on the same samples (rank 0
/// trains the single-process model itself, after the distributed run). Returns the difference on
/// rank 0 (0 elsewhere).
fn check<T: Float>(dist: &Distributed, per_rank: usize) -> Result<f64> {
    let digits = Digits::load_shipped()?;
    let (train, _) = digits.split::<T>(TEST_COUNT, SPLIT_SEED)?;
    let n = train.labels.len();
    let world = dist.world_size();
    let config = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        ..Default::default()
    };
    let dims = [64, 256, 256, 10];
    let steps_per_epoch = (n / world) / per_rank.max(1);
    if steps_per_epoch == 0 {
        return Err(Error::InvalidArgument {
            op: "ddp --check",
            reason: format!("batch {per_rank} x {world} ranks exceeds the {n} training samples"),
        });
    }

    // Distributed: each rank its shard, gradients averaged.
    let model = mlp::<T>(&dims, 0.0, INIT_SEED)?;
    let mut ddp = DistributedDataParallel::new(dist, &model, DdpOptions::default())?;
    let mut sgd = Sgd::new(model.named_params(), config)?;
    let sampler = DistributedSampler::for_rank(dist, n)?.seed(7);
    for step in 0..CHECK_STEPS {
        let epoch = (step / steps_per_epoch) as u64;
        let at = (step % steps_per_epoch) * per_rank;
        let shard = sampler.indices(epoch);
        let (x, labels) = batch(&train, &shard[at..at + per_rank])?;
        let (_, grads) = loss_and_grads(&model, &mut Context::train_deterministic(), x, &labels)?;
        let averaged = ddp.reduce(dist, grads)?;
        sgd.step(&averaged)?;
    }
    ddp.check_in_sync(dist)?;
    if !dist.is_rank0() {
        return Ok(0.0);
    }

    // One process, batch N·B: the same samples (positions k·B·N … (k+1)·B·N of the epoch's list).
    let single = mlp::<T>(&dims, 0.0, INIT_SEED)?;
    let mut sgd = Sgd::new(single.named_params(), config)?;
    let whole = DistributedSampler::new(n, 1, 0)?.seed(7);
    let global = per_rank * world;
    for step in 0..CHECK_STEPS {
        let epoch = (step / steps_per_epoch) as u64;
        let at = (step % steps_per_epoch) * global;
        let order = whole.indices(epoch);
        let (x, labels) = batch(&train, &order[at..at + global])?;
        let (_, grads) = loss_and_grads(&single, &mut Context::train_deterministic(), x, &labels)?;
        sgd.step(&grads)?;
    }
    Ok(max_relative_difference(&model, &single))
}

/// Training with checkpoints, resume and injected faults.
fn train(dist: &Distributed, args: &Args) -> Result<()> {
    let epochs: u64 = args.value("--epochs", 20)?;
    let per_rank: usize = args.value("--batch", 32)?;
    if per_rank == 0 {
        return Err(Error::InvalidArgument {
            op: "ddp example",
            reason: "--batch must be at least 1".into(),
        });
    }
    let p: f64 = args.value("--dropout", 0.5)?;
    let seed: u64 = args.value("--seed", 0)?;
    let path: String = args.value(
        "--checkpoint",
        "target/ddp_checkpoint.safetensors".to_string(),
    )?;
    let watchdog_secs: u64 = args.value("--watchdog", 60)?;
    let fault = |name: &str| -> Result<Option<u64>> {
        args.has(name).then(|| args.value(name, 0)).transpose()
    };
    let (fail_at, panic_at, kill_at, hang_at) = (
        fault("--fail-at")?,
        fault("--panic-at")?,
        fault("--kill-at")?,
        fault("--hang-at")?,
    );
    let faulty = dist.rank() + 1 == dist.world_size();

    let digits = Digits::load_shipped()?;
    let (train, test) = digits.split::<f32>(TEST_COUNT, SPLIT_SEED)?;
    let model = mlp::<f32>(&[64, 256, 256, 10], p, INIT_SEED)?;

    // Resume: rank 0 reads the checkpoint and hands it to every rank.
    let mut first_epoch = 0;
    if let Some(state) = dist.load_checkpoint::<f32>(&path)? {
        let done: u64 = state
            .metadata
            .get("epochs_done")
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| Error::InvalidArgument {
                op: "ddp example",
                reason: format!("{path} has no `epochs_done` entry"),
            })?;
        state.load_into(&model)?;
        first_epoch = done;
        dist.log(format!(
            "resumed from {path} after epoch {done} (saved with {} ranks, now {})",
            state.metadata.get("world_size").map_or("?", String::as_str),
            dist.world_size()
        ));
    }
    let mut ddp = DistributedDataParallel::new(dist, &model, DdpOptions::default())?;
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )?;
    let sampler = DistributedSampler::for_rank(dist, train.labels.len())?.seed(seed);
    dist.log(format!(
        "digits MLP 64-256-256-10, {} ranks x batch {per_rank}, dropout {p}, SGD lr 0.1, epochs {first_epoch}..{epochs}",
        dist.world_size()
    ));
    let watchdog = Watchdog::start(dist.rank(), Duration::from_secs(watchdog_secs));
    let mut step = 0u64;
    for epoch in first_epoch..epochs {
        // Dropout masks: rank r's own stream, a fresh one per epoch so a resumed run draws
        // exactly what an uninterrupted one would.
        let mut rng = distributed::rank_rng(seed.wrapping_add(epoch), dist.rank());
        let shard = sampler.indices(epoch);
        let mut loss_sum = vec![0.0f32, 0.0];
        for idx in shard.chunks(per_rank) {
            if faulty {
                if fail_at == Some(step) {
                    return Err(Error::InvalidArgument {
                        op: "ddp example",
                        reason: format!("injected failure at step {step}"),
                    });
                }
                if panic_at == Some(step) {
                    panic!("injected panic at step {step}");
                }
                if kill_at == Some(step) {
                    eprintln!(
                        "rank {}: killing itself (SIGKILL) at step {step}",
                        dist.rank()
                    );
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &std::process::id().to_string()])
                        .status();
                }
                if hang_at == Some(step) {
                    eprintln!("rank {}: hanging at step {step}", dist.rank());
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            }
            let (x, labels) = batch(&train, idx)?;
            let (loss, grads) = loss_and_grads(&model, &mut Context::train(&mut rng), x, &labels)?;
            let averaged = ddp.reduce(dist, grads)?;
            sgd.step(&averaged)?;
            loss_sum[0] += loss as f32 * idx.len() as f32;
            loss_sum[1] += idx.len() as f32;
            step += 1;
            watchdog.pet();
        }
        let mut total = Vec::new();
        dist.all_reduce_sum(&mut loss_sum, &mut total)?;
        let mut state = StateDict::of(&model)?;
        state
            .metadata
            .insert("epochs_done".into(), (epoch + 1).to_string());
        state
            .metadata
            .insert("world_size".into(), dist.world_size().to_string());
        dist.save_checkpoint(&state, &path)?;
        if dist.is_rank0() {
            let tape = Tape::no_grad();
            let logits = model.forward(&mut Context::eval(), tape.constant(test.x.clone()))?;
            println!(
                "epoch {:>3} | train loss {:.4} | test acc {:.3} | checkpoint {path}",
                epoch + 1,
                total[0] / total[1],
                accuracy(&logits.value(), &test.labels)
            );
        }
    }
    ddp.check_in_sync(dist)?;
    dist.log(format!(
        "final parameter fingerprint: {:#018x}",
        ddp.state_fingerprint()
    ));
    Ok(())
}

/// The step of `examples/bench.rs`'s `mlp_1024x784x1024x10` (batch 1024 over all ranks, SGD,
/// dropout 0.5), timed with the all-reduce apart.
fn bench(dist: &Distributed) -> Result<()> {
    let global = 1024;
    let world = dist.world_size();
    let per_rank = global / world;
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Tensor::<f32>::normal(&[global, 784], 0.0, 1.0, &mut rng)?;
    let labels: Vec<usize> = (0..global).map(|i| (i * 7 + 3) % 10).collect();
    let rows = dist.rank() * per_rank..(dist.rank() + 1) * per_rank;
    let mine = Tensor::from_vec(
        x.data()[rows.start * 784..rows.end * 784].to_vec(),
        &[per_rank, 784],
    )?;
    let my_labels = labels[rows].to_vec();
    let model = mlp::<f32>(&[784, 1024, 10], 0.5, 0)?;
    let mut ddp = DistributedDataParallel::new(dist, &model, DdpOptions::default())?;
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.01,
            ..Default::default()
        },
    )?;
    let mut drop_rng = distributed::rank_rng(0, dist.rank());
    // (compute, wait for the slowest rank, all-reduce) seconds of one step.
    let mut step = || -> Result<[f64; 3]> {
        let t0 = Instant::now();
        let (_, grads) = loss_and_grads(
            &model,
            &mut Context::train(&mut drop_rng),
            mine.clone(),
            &my_labels,
        )?;
        let t1 = Instant::now();
        dist.barrier();
        let t2 = Instant::now();
        let averaged = ddp.reduce(dist, grads)?;
        let t3 = Instant::now();
        sgd.step(&averaged)?;
        let t4 = Instant::now();
        Ok([
            (t1 - t0 + (t4 - t3)).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ])
    };
    for _ in 0..2 {
        step()?;
    }
    // Fastest of 7 rounds of 10 steps, as examples/bench.rs times.
    let mut best: Option<[f64; 3]> = None;
    for _ in 0..7 {
        let mut sum = [0.0; 3];
        for _ in 0..10 {
            let t = step()?;
            for (s, t) in sum.iter_mut().zip(t) {
                *s += t / 10.0;
            }
        }
        let total: f64 = sum.iter().sum();
        if best.is_none_or(|b| total < b.iter().sum::<f64>()) {
            best = Some(sum);
        }
    }
    let [compute, wait, reduce] = best.unwrap_or_default();
    // The all-reduce alone, without the training step around it: 1 MiB and the gradient size,
    // fastest of 20 calls each.
    let mut alone = Vec::new();
    for bytes in [1 << 20, ddp.bucket_layout().total_elements() * 4] {
        let mut send = vec![1.0f32; bytes / 4];
        let mut recv = Vec::new();
        let mut fastest = f64::INFINITY;
        for _ in 0..20 {
            dist.barrier();
            let t = Instant::now();
            dist.all_reduce_sum(&mut send, &mut recv)?;
            fastest = fastest.min(t.elapsed().as_secs_f64());
        }
        alone.push(format!(
            "\"allreduce_alone_{bytes}_bytes_us\": {:.0}, \"allreduce_alone_{bytes}_bytes_gb_per_s\": {:.2}",
            fastest * 1e6,
            bytes as f64 / fastest / 1e9
        ));
    }
    let total = compute + wait + reduce;
    let bytes = ddp.bucket_layout().total_elements() * 4;
    dist.log(format!(
        "{{\"workload\": \"mlp_1024x784x1024x10\", \"processes\": {world}, \"threads\": {}, \"us_per_step\": {:.0}, \"compute_us\": {:.0}, \"wait_us\": {:.0}, \"allreduce_us\": {:.0}, \"allreduce_share\": {:.3}, \"allreduce_bytes\": {bytes}, \"buckets\": {}, {}}}",
        tapegrad::num_threads(),
        total * 1e6,
        compute * 1e6,
        wait * 1e6,
        reduce * 1e6,
        reduce / total,
        ddp.bucket_layout().num_buckets(),
        alone.join(", "),
    ));
    Ok(())
}

fn run(dist: &Distributed, args: &Args) -> Result<bool> {
    if let Some(n) = args
        .has("--threads")
        .then(|| args.value("--threads", 1))
        .transpose()?
    {
        tapegrad::set_num_threads(n);
    }
    if args.has("--check") {
        let per_rank: usize = args.value("--batch", 32)?;
        let d64 = check::<f64>(dist, per_rank)?;
        let d32 = check::<f32>(dist, per_rank)?;
        if dist.is_rank0() {
            let world = dist.world_size();
            println!(
                "f32: max relative difference, {world} ranks vs 1 process, {CHECK_STEPS} steps: {d32:.3e} (tolerance 1e-6)"
            );
            println!(
                "max relative difference, {world} ranks vs 1 process, {CHECK_STEPS} steps: {d64:.3e}"
            );
        }
        return Ok(d64 <= 1e-12 && d32 <= 1e-6);
    }
    if args.has("--bench") {
        bench(dist)?;
        return Ok(true);
    }
    train(dist, args)?;
    Ok(true)
}

fn main() {
    let dist = match distributed::init() {
        Ok(dist) => dist,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    dist.install_panic_abort();
    let args = Args {
        raw: std::env::args().skip(1).collect(),
    };
    let ok = dist.abort_on_error(run(&dist, &args));
    if !ok {
        eprintln!(
            "rank {}: the difference is above the tolerance",
            dist.rank()
        );
        drop(dist);
        std::process::exit(1);
    }
}
