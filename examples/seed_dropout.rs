//! The lesson, twice: the 2-layer MLP with dropout trained with hand-derived gradients and on the
//! tape, from the same seed, side by side. Both draw the same dropout masks, so they follow the
//! same trajectory; the last line reports how far apart their gradients ever were.
//!
//! The training lines' `acc` is measured inside the step, with that step's dropout mask; the
//! `[eval]` line runs the full network with dropout off, which is why it is higher (0.875 against
//! 1.000 at the end): see `docs/dropout.md`. Symbols as in the guide's notation table
//! (`docs/README.md`); `max |…|` is over every gradient entry and every step.
//!
//! Run: `cargo run --release --example seed_dropout`

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, eval_accuracy, manual_step, tape_step};

const EPOCHS: usize = 200;
const LR: f32 = 0.5;
const P: f64 = 0.5;
const DROPOUT_SEED: u64 = 1;

fn main() -> tapegrad::Result<()> {
    let config = LessonConfig::default();
    let (data, initial) = config.generate::<f32>()?;
    println!(
        "N={} d={} H={} K={} | p={P} lr={LR} | {EPOCHS} epochs, full batch, f32",
        config.n, config.d, config.h, config.k
    );

    let (mut manual_w, mut tape_w) = (initial.clone(), initial);
    // Two generators in the same state: the same seed gives the same masks.
    let mut manual_rng = Pcg64::seed_from_u64(DROPOUT_SEED);
    let mut tape_rng = Pcg64::seed_from_u64(DROPOUT_SEED);
    let mut max_diff = 0.0f32;

    for epoch in 1..=EPOCHS {
        let manual = manual_step(&data, &manual_w, P, &mut manual_rng)?;
        let taped = tape_step(&data, &tape_w, P, &mut tape_rng)?;
        max_diff = max_diff.max(manual.grads.max_abs_diff(&taped.grads)?);
        manual_w.sgd_step(&manual.grads, LR);
        tape_w.sgd_step(&taped.grads, LR);
        if epoch % 50 == 0 {
            println!(
                "[manual+dropout] epoch {epoch:>3} | loss {:.4} | acc {:.3}",
                manual.loss, manual.accuracy
            );
            println!(
                "[tape+dropout]   epoch {epoch:>3} | loss {:.4} | acc {:.3}",
                taped.loss, taped.accuracy
            );
        }
    }
    println!(
        "[eval] accuracy (dropout off): {:.3}",
        eval_accuracy(&data, &tape_w)?
    );
    println!("max |grad_manual - grad_tape| over {EPOCHS} steps: {max_diff:.3e}");
    Ok(())
}
