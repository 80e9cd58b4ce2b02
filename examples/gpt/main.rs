//! A small GPT trained on Shakespeare, character by character (`data/shakespeare/`, public
//! domain): 4 pre-norm transformer blocks of 4 heads and 128 dimensions, a context of 128
//! characters, dropout 0.1, the head tied to the token embedding (`model.rs`). AdamW (lr 1e-3,
//! betas (0.9, 0.99), weight decay 0.1 on matrices only) with a linear warm-up and a cosine
//! decay, gradients clipped to norm 1, batches of 16 random windows. Prints the train and
//! validation losses as it goes, saves a resumable checkpoint at each evaluation, ends with a
//! generated sample and the line `final val loss: X`.
//!
//! Run: `cargo run --release --example gpt` — options: `--steps N` (default 2500), `--minutes M`
//! (stop early after M minutes of training, default 15), `--checkpoint PATH` (default
//! `target/gpt.safetensors`), `--resume` (continue from that checkpoint).

mod model;

use model::{Gpt, GptConfig};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::metrics::Progress as Bar;
use tapegrad::nn::{Context, Module};
use tapegrad::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, SequentialLR};
use tapegrad::optim::{Adam, AdamConfig, LrScheduler, Optimizer, ParamGroup, clip_grad_norm};
use tapegrad::training::{Progress, TrainingCheckpoint};
use tapegrad::{Error, Indices, Result, Tape};

const CONFIG: GptConfig = GptConfig {
    vocab: 0, // set from the text
    block: 128,
    layers: 4,
    heads: 4,
    embed: 128,
    dropout: 0.1,
};
const BATCH: usize = 16;
const WARMUP: u64 = 100;
const EVAL_EVERY: u64 = 250;
const EVAL_BATCHES: usize = 20;

/// The value following `flag` on the command line, parsed.
fn arg<V: std::str::FromStr>(flag: &str, default: V) -> Result<V>
where
    V::Err: std::fmt::Display,
{
    match std::env::args().skip_while(|a| a != flag).nth(1) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| Error::InvalidArgument {
            op: "gpt",
            reason: format!("{flag} {s}: {e}"),
        }),
    }
}

/// The text as token ids, and the alphabet (sorted characters).
fn tokenize(text: &str) -> (Vec<usize>, Vec<char>) {
    let mut alphabet: Vec<char> = text.chars().collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    let ids = text
        .chars()
        .map(|c| alphabet.binary_search(&c).unwrap_or(0))
        .collect();
    (ids, alphabet)
}

/// `BATCH` random windows of `block + 1` ids: inputs `[BATCH, block]` and the targets one
/// position later, flattened.
fn batch(data: &[usize], block: usize, rng: &mut Pcg64) -> Result<(Indices, Vec<usize>)> {
    let mut inputs = Vec::with_capacity(BATCH * block);
    let mut targets = Vec::with_capacity(BATCH * block);
    for _ in 0..BATCH {
        let start = rng.random_range(0..data.len() - block - 1);
        inputs.extend_from_slice(&data[start..start + block]);
        targets.extend_from_slice(&data[start + 1..start + block + 1]);
    }
    Ok((Indices::new(&inputs, &[BATCH, block])?, targets))
}

/// The mean loss over `EVAL_BATCHES` fixed windows of `data` (dropout off).
fn evaluate(model: &Gpt<f32>, data: &[usize]) -> Result<f64> {
    let mut rng = Pcg64::seed_from_u64(1234);
    let block = model.config().block;
    let mut total = 0.0;
    for _ in 0..EVAL_BATCHES {
        let (x, y) = batch(data, block, &mut rng)?;
        let tape = Tape::no_grad();
        let logits = model.forward(&mut Context::eval(), &tape, &x)?;
        let loss = logits
            .reshape(&[BATCH * block, model.config().vocab])?
            .cross_entropy(&y)?;
        total += f64::from(loss.item()?);
    }
    Ok(total / EVAL_BATCHES as f64)
}

/// `count` characters drawn from the model, starting from a newline.
fn generate(model: &Gpt<f32>, alphabet: &[char], count: usize, rng: &mut Pcg64) -> Result<String> {
    let newline = alphabet.binary_search(&'\n').unwrap_or(0);
    let mut ids = vec![newline];
    let block = model.config().block;
    for _ in 0..count {
        let context = &ids[ids.len().saturating_sub(block)..];
        let tape = Tape::no_grad();
        let x = Indices::new(context, &[1, context.len()])?;
        let logits = model.forward(&mut Context::eval(), &tape, &x)?;
        let last = logits.select(1, context.len() - 1)?.softmax()?.value();
        let u: f32 = rng.random();
        let mut total = 0.0;
        let next = last
            .data()
            .iter()
            .position(|&p| {
                total += p;
                u < total
            })
            .unwrap_or(alphabet.len() - 1);
        ids.push(next);
    }
    Ok(ids[1..].iter().map(|&i| alphabet[i]).collect())
}

fn main() -> Result<()> {
    let steps: u64 = arg("--steps", 2500)?;
    let minutes: f64 = arg("--minutes", 15.0)?;
    let checkpoint_path: String = arg("--checkpoint", "target/gpt.safetensors".to_string())?;
    let resume = std::env::args().any(|a| a == "--resume");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare/input.txt");
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: "gpt",
        path: path.into(),
        source,
    })?;
    let (ids, alphabet) = tokenize(&text);
    let split = ids.len() * 9 / 10;
    let (train, val) = (&ids[..split], &ids[split..]);
    let config = GptConfig {
        vocab: alphabet.len(),
        ..CONFIG
    };

    let model = Gpt::<f32>::new(config, &mut Pcg64::seed_from_u64(0))?;
    // Weight decay on matrices (linear weights, embeddings), none on biases and norms.
    let (plain, decayed): (Vec<_>, Vec<_>) =
        model.named_params().into_iter().partition(|(name, p)| {
            name.ends_with("bias") || name.contains("ln") || p.shape().rank() < 2
        });
    let mut adamw = Adam::new(
        vec![
            ParamGroup::new(decayed),
            ParamGroup::new(plain).weight_decay(0.0),
        ],
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.99),
            weight_decay: 0.1,
            ..AdamConfig::adamw()
        },
    )?;
    let warmup = LinearLR::new(&mut adamw, 0.01, 1.0, WARMUP)?;
    let cosine = CosineAnnealingLR::new(&mut adamw, steps.saturating_sub(WARMUP).max(1), 1e-4)?;
    let mut schedule = SequentialLR::new(
        &mut adamw,
        vec![Box::new(warmup), Box::new(cosine)],
        vec![WARMUP],
    )?;
    let mut rng = Pcg64::seed_from_u64(1);
    let mut progress = Progress::default();
    if resume {
        let checkpoint = TrainingCheckpoint::<f32>::load(&checkpoint_path)?;
        progress = checkpoint.restore(&model, &mut adamw)?;
        if let Some(state) = checkpoint.scheduler() {
            schedule.load_state_dict(&state)?;
        }
        rng = checkpoint.rng()?;
        println!("resumed from {checkpoint_path} at step {}", progress.step);
    }
    println!(
        "{} characters ({} train / {} val), {} distinct; {} parameters",
        ids.len(),
        train.len(),
        val.len(),
        alphabet.len(),
        model.num_params()
    );

    let bar = Bar::new(steps.saturating_sub(progress.step));
    let started = std::time::Instant::now();
    let mut trained_steps = 0u64;
    let mut val_loss = f64::NAN;
    while progress.step < steps {
        let (x, y) = batch(train, config.block, &mut rng)?;
        let tape = Tape::new();
        let logits = model.forward(&mut Context::train(&mut rng), &tape, &x)?;
        let loss = logits
            .reshape(&[BATCH * config.block, config.vocab])?
            .cross_entropy(&y)?;
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, adamw.params(), 1.0, 2.0, false)?;
        adamw.step(&grads)?;
        schedule.step(&mut adamw)?;
        progress.step += 1;
        trained_steps += 1;
        bar.step(f64::from(loss.item()?), (BATCH * config.block) as u64);
        let out_of_time = started.elapsed().as_secs_f64() > minutes * 60.0;
        if progress.step % EVAL_EVERY == 0 || progress.step == steps || out_of_time {
            val_loss = evaluate(&model, val)?;
            bar.println(format!(
                "step {:>5}: train loss {:.4}, val loss {val_loss:.4}, lr {:.2e}, {:.0} s",
                progress.step,
                evaluate(&model, train)?,
                adamw.lrs()[0],
                started.elapsed().as_secs_f64()
            ));
            TrainingCheckpoint::capture(&model, &adamw, progress, &rng)?
                .with_scheduler(&schedule.state_dict())
                .save(&checkpoint_path)?;
        }
        if out_of_time {
            bar.println(format!("stopping: the {minutes}-minute budget is spent"));
            break;
        }
    }
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{trained_steps} steps in {seconds:.0} s: {:.0} tokens/s",
        (trained_steps as usize * BATCH * config.block) as f64 / seconds.max(1e-9)
    );
    println!(
        "---\n{}\n---",
        generate(&model, &alphabet, 400, &mut Pcg64::seed_from_u64(7))?
    );
    if val_loss.is_nan() {
        val_loss = evaluate(&model, val)?;
    }
    println!("final val loss: {val_loss:.4}");
    Ok(())
}
