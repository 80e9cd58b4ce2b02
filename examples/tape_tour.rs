//! A tour inside one training step of the lesson's model: what the tape recorded, what dropout
//! saved, what flowed backward, a gradient check of the whole step, and the graph in DOT.
//!
//! Symbols as in the guide's notation table (`docs/README.md`): Z1 = X·W1 + b1, H1 = relu(Z1),
//! D1 = m ⊙ H1 · s, S = D1·W2 + b2. In the trace, `|·|` is the L2 norm √Σx² of a gradient.
//!
//! Run: `cargo run --release --example tape_tour`
//! To draw the graph: `cargo run --release --example tape_tour -- --dot > lesson.dot && dot -Tsvg lesson.dot -o lesson.svg`
//! (`scripts/figures.sh` does this for `docs/img/lesson_graph.svg`; `tests/guide.rs` fails when the
//! committed figure is stale).

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::LessonConfig;
use tapegrad::{BackwardOptions, Error, GradcheckOptions, Param, Result, Tape, Var, gradcheck};

const P: f64 = 0.5;
const MASK_SEED: u64 = 1;

/// The lesson's forward pass: Linear → ReLU → Dropout → Linear → cross-entropy.
/// Returns the loss and the dropout's output (to look at its mask).
fn forward<'t>(
    x: Var<'t, f64>,
    w: [Var<'t, f64>; 4],
    labels: &[usize],
    rng: &mut Pcg64,
) -> Result<(Var<'t, f64>, Var<'t, f64>)> {
    let hidden = x.matmul(w[0])?.add(w[1])?.relu()?.dropout(P, rng)?;
    let loss = hidden.matmul(w[2])?.add(w[3])?.cross_entropy(labels)?;
    Ok((loss, hidden))
}

/// The lesson's step as recorded, in Graphviz DOT (before backward: the saved state is shown).
pub fn lesson_dot() -> Result<String> {
    let (data, weights) = LessonConfig::default().generate::<f64>()?;
    let params = [
        Param::new("W1", weights.w1),
        Param::new("b1", weights.b1),
        Param::new("W2", weights.w2),
        Param::new("b2", weights.b2),
    ];
    let tape = Tape::new();
    let w = [0, 1, 2, 3].map(|i| tape.param(&params[i]));
    // Only the recorded graph is wanted here, not the forward's outputs.
    let _ = forward(
        tape.constant(data.x),
        w,
        &data.labels,
        &mut Pcg64::seed_from_u64(MASK_SEED),
    )?;
    Ok(tape.to_dot())
}

#[allow(dead_code)] // `tests/guide.rs` includes this file for `lesson_dot` only
fn main() -> Result<()> {
    let dot_only = std::env::args().any(|a| a == "--dot");
    let (data, weights) = LessonConfig::default().generate::<f64>()?;
    let params = [
        Param::new("W1", weights.w1.clone()),
        Param::new("b1", weights.b1.clone()),
        Param::new("W2", weights.w2.clone()),
        Param::new("b2", weights.b2.clone()),
    ];

    let tape = Tape::new();
    let x = tape.constant(data.x.clone());
    let w = [0, 1, 2, 3].map(|i| tape.param(&params[i]));
    let (loss, dropped) = forward(x, w, &data.labels, &mut Pcg64::seed_from_u64(MASK_SEED))?;
    if dot_only {
        print!("{}", lesson_dot()?);
        return Ok(());
    }

    println!("== 1. The tape: one row per value, in the order the forward pass made them ==\n");
    println!("{tape}");

    println!("== 2. What dropout saved: a mask, 1 bit per element ==\n");
    let (mask, scale) = dropped.dropout_mask()?;
    let hidden = weights.b1.numel();
    let cols = hidden.min(64);
    println!(
        "first 8 of {} rows, first {cols} of {hidden} units (█ kept, · dropped):",
        data.labels.len()
    );
    for row in 0..8 {
        let line: String = (0..cols)
            .map(|c| {
                if mask.get(row * hidden + c) {
                    '█'
                } else {
                    '·'
                }
            })
            .collect();
        println!("  {line}");
    }
    println!(
        "kept {} of {} ({:.3}, expected {:.3}); survivors scaled by {scale}; mask {} bytes here, {} bytes as one byte per element\n",
        mask.count_ones(),
        mask.len(),
        mask.count_ones() as f64 / mask.len() as f64,
        1.0 - P,
        mask.bytes(),
        mask.len()
    );

    println!(
        "== 3. Backward, traced: the gradient each node received and what it sent to its inputs ==\n"
    );
    let grads = loss.backward_with(BackwardOptions::new().trace(true))?;
    print!("{}", grads.trace().expect("trace was asked for"));
    println!("\nparameter gradients:");
    for p in &params {
        let g = grads.param(p).expect("every parameter influences the loss");
        println!(
            "  d loss / d {:<2} {}",
            p.name(),
            tapegrad::TensorSummary::of(g)
        );
    }

    println!(
        "\n== 4. gradcheck of the whole step (f64, central differences, the mask held fixed) ==\n"
    );
    let inputs = [
        weights.w1.clone(),
        weights.b1.clone(),
        weights.w2.clone(),
        weights.b2.clone(),
    ];
    let check = |eps: f64, diagnose_kinks: bool| {
        gradcheck(
            |tape, v, rng| {
                Ok(forward(
                    tape.constant(data.x.clone()),
                    [v[0], v[1], v[2], v[3]],
                    &data.labels,
                    rng,
                )?
                .0)
            },
            &inputs,
            &GradcheckOptions {
                eps,
                seed: MASK_SEED,
                diagnose_kinks,
                ..GradcheckOptions::default()
            },
        )
    };
    // First as PyTorch checks it (no kink diagnosis), then with the diagnosis.
    match check(1e-6, false) {
        Ok(report) => println!("{report}"),
        Err(Error::GradcheckFailed(report)) => {
            println!("{report}");
            // Explain the failure: how close does a ReLU input come to its kink at 0?
            let z1 = data
                .x
                .matmul(&weights.w1)?
                .zip_map(&weights.b1, "add", |a, b| a + b)?;
            let (closest, z) = z1
                .data()
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .expect("Z1 is not empty");
            let (row, col) = (closest / hidden, closest % hidden);
            println!(
                "why: the ReLU input Z1[{row}, {col}] = {z:.3e} lies within a perturbation (eps · |x| ≈ 1e-6) of ReLU's kink at 0.\n\
                 Central differences there straddle the kink and average two different slopes; the analytic gradient\n\
                 is the one-sided derivative backward defines (0 at and below 0). That is a limit of finite differences,\n\
                 not an error in backward: with eps small enough to stay on one side, the same check passes.\n"
            );
            let eps = (z.abs() / 10.0).min(1e-7);
            println!("again with eps = {eps:.1e}:");
            println!("{}", check(eps, false)?);
            println!(
                "and with eps = 1e-6 and the kink diagnosis on (the default): entries whose one-sided slopes\n\
                 differ, with backward's value one of them, are listed as kinks instead of failures:"
            );
            println!("{}", check(1e-6, true)?);
        }
        Err(other) => return Err(other),
    }

    println!("== 5. The graph as Graphviz DOT (render with `dot -Tsvg`) ==\n");
    print!("{}", tape.to_dot());
    Ok(())
}
