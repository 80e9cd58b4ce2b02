//! Softmax regression and an MLP on the digits, written with the training toolkit: a data loader,
//! AdamW with a cosine schedule, early stopping on a validation split, the best weights kept.
//! Its PyTorch twin is `examples/pytorch/digits_toolkit.py` (line counts in docs/models.md).
//!
//! Run: `cargo run --release --example digits_toolkit`
use tapegrad::datasets::{Digits, Split};
use tapegrad::prelude::*;

fn evaluate(model: &Sequential<f32>, split: &Split<f32>) -> Result<(f32, f64)> {
    let tape = Tape::no_grad();
    let logits = model.forward(&mut Context::eval(), tape.constant(split.x.clone()))?;
    let loss = logits.cross_entropy(&split.labels)?.item()?;
    Ok((loss, accuracy(&logits.value(), &split.labels)?))
}

fn fit(name: &str, model: Sequential<f32>, [train, val, test]: &[Split<f32>; 3]) -> Result<()> {
    let (epochs, patience) = (100, 10);
    let loader = DataLoader::new(train.clone(), 64)?.shuffle(0);
    let mut opt = Adam::new(model.named_params(), AdamConfig::adamw().lr(3e-3))?;
    let mut schedule = CosineAnnealingLR::new(&mut opt, epochs, 0.0)?;
    // A snapshot, not a copy: an optimizer's in-place update copies a parameter still shared.
    let (mut best, mut best_loss, mut waited) = (StateDict::of(&model)?, f32::INFINITY, 0);
    let mut rng = Pcg64::seed_from_u64(1);
    for epoch in 0..epochs {
        for batch in loader.epoch(epoch)? {
            let (x, y) = batch?;
            let tape = Tape::new();
            let logits = model.forward(&mut Context::train(&mut rng), tape.constant(x))?;
            opt.step(&logits.cross_entropy(&y)?.backward()?)?;
        }
        schedule.step(&mut opt)?;
        let (val_loss, val_acc) = evaluate(&model, val)?;
        if val_loss < best_loss {
            (best, best_loss, waited) = (StateDict::of(&model)?, val_loss, 0);
        } else {
            waited += 1;
            if waited == patience {
                println!("{name}: early stop after epoch {epoch}");
                break;
            }
        }
        println!("{name} epoch {epoch:>3}: val loss {val_loss:.4}, val acc {val_acc:.3}");
    }
    best.load_into(&model)?;
    let (test_loss, test_acc) = evaluate(&model, test)?;
    println!("{name}: val loss {best_loss:.4}; test loss {test_loss:.4}, accuracy {test_acc:.4}");
    Ok(())
}

fn main() -> Result<()> {
    let digits = Digits::load_shipped()?;
    let parts = random_split(digits.len(), &[1150, 287, 360], 0)?;
    let [train, val, test] = [0, 1, 2].map(|i| digits.subset(&parts[i]));
    let splits = [train?, val?, test?];
    let mut rng = Pcg64::seed_from_u64(2);
    let softmax = Sequential::new().push(Linear::new(64, 10, &mut rng)?);
    fit("softmax regression", softmax, &splits)?;
    let mlp = Sequential::new()
        .push(Linear::new(64, 128, &mut rng)?)
        .push(ReLU)
        .push(Linear::new(128, 10, &mut rng)?);
    fit("MLP", mlp, &splits)
}
