//! A character-level language model in the style of makemore: from the last three characters of a
//! name, predict the next one. An embedding table maps each character to a 10-dimensional vector;
//! the three vectors, concatenated, go through Linear(30 → 200) → tanh → Linear(200 → 27) →
//! cross-entropy. Trained with SGD on 5,163 US first names (`data/names/`), split 80/10/10 into
//! train, dev and test names; prints the losses and 20 names sampled from the trained model.
//!
//! Run: `cargo run --release --example makemore` (`-- --steps N` to change the number of steps,
//! default 40,000; a few seconds on one core).
//!
//! The PyTorch equivalent of the model and one step:
//!
//! ```text
//! C = torch.randn(27, 10); hidden = nn.Linear(30, 200); out = nn.Linear(200, 27)
//! logits = out(torch.tanh(hidden(C[X].view(-1, 30))))
//! loss = F.cross_entropy(logits, Y); loss.backward(); opt.step()
//! ```

mod model;

use model::{BATCH, CONTEXT, Examples, Makemore};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::nn::Module;
use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
use tapegrad::{Error, Result, Tape};

fn main() -> Result<()> {
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .map_err(|e| Error::InvalidArgument {
            op: "makemore",
            reason: format!("--steps: {e}"),
        })?
        .unwrap_or(40_000);

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/names/names.txt");
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: "makemore",
        path: path.into(),
        source,
    })?;
    let mut names: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mut rng = Pcg64::seed_from_u64(42);
    names.shuffle(&mut rng);
    let (n1, n2) = (names.len() * 8 / 10, names.len() * 9 / 10);
    let train = Examples::of(&names[..n1])?;
    let dev = Examples::of(&names[n1..n2])?;
    let test = Examples::of(&names[n2..])?;
    println!(
        "{} names: {} train / {} dev / {} test examples",
        names.len(),
        train.len(),
        dev.len(),
        test.len()
    );

    let model = Makemore::new(&mut rng)?;
    println!("{} parameters", model.num_params());
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
    )?;
    let mut batch = Vec::with_capacity(BATCH * CONTEXT);
    let mut targets = Vec::with_capacity(BATCH);
    let started = std::time::Instant::now();
    for step in 0..steps {
        if step == steps * 3 / 4 {
            sgd.set_lr(0.01)?; // the last quarter at a tenth of the rate
        }
        batch.clear();
        targets.clear();
        for _ in 0..BATCH {
            let i = rng.random_range(0..train.len());
            batch.extend_from_slice(&train.contexts[i * CONTEXT..(i + 1) * CONTEXT]);
            targets.push(train.targets[i]);
        }
        let tape = Tape::new();
        let loss = model.forward(&tape, &batch)?.cross_entropy(&targets)?;
        let grads = loss.backward()?;
        sgd.step(&grads)?;
        if step % 10_000 == 0 {
            println!("step {step:>6}: batch loss {:.4}", loss.item()?);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{steps} steps in {seconds:.1} s ({:.1} µs per step)",
        seconds * 1e6 / steps.max(1) as f64
    );
    println!("train loss: {:.4}", model.loss(&train)?);
    println!("dev loss: {:.4}", model.loss(&dev)?);
    println!("test loss: {:.4}", model.loss(&test)?);
    let mut sampler = Pcg64::seed_from_u64(2147483647);
    let samples = (0..20)
        .map(|_| model.sample(&mut sampler))
        .collect::<Result<Vec<_>>>()?;
    println!("samples: {}", samples.join(", "));
    Ok(())
}
