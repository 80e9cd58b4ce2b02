//! The lesson's model at its smallest, every number shown: 2 inputs, 4 hidden units, dropout 0.5,
//! 3 classes, a batch of 2 rows. The forward values, the dropout mask and every gradient, as the
//! engine computes them. `docs/worked-example.md` shows this output, and `tests/guide.rs` checks
//! that the page and this program agree, and that every number equals the formulas of
//! `docs/derivations.md` computed with plain loops.
//!
//! Run: `cargo run --release --example worked_example` (`-- --dot` prints the graph with every edge
//! labelled by its gradient, drawn in `docs/img/worked_graph.svg`).

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{BackwardOptions, Param, Result, Tape, Tensor};

/// The generator seed of the dropout mask.
pub const MASK_SEED: u64 = 3;
/// Dropout's drop probability.
pub const P: f64 = 0.5;
/// The labels t of the two rows.
pub const LABELS: [usize; 2] = [2, 0];

/// The inputs and weights, chosen by hand so that every number stays short.
pub fn inputs() -> Result<[(&'static str, Tensor<f64>); 5]> {
    Ok([
        ("X", Tensor::from_vec(vec![1.0, 2.0, -1.0, 0.5], &[2, 2])?),
        (
            "W1",
            Tensor::from_vec(vec![0.5, -0.3, 0.8, 0.2, 0.1, 0.4, -0.6, 0.7], &[2, 4])?,
        ),
        ("b1", Tensor::from_vec(vec![0.1, 0.0, -0.1, 0.2], &[4])?),
        (
            "W2",
            Tensor::from_vec(
                vec![
                    0.3, -0.2, 0.5, -0.4, 0.6, 0.1, 0.2, 0.3, -0.5, 0.7, -0.1, 0.2,
                ],
                &[4, 3],
            )?,
        ),
        ("b2", Tensor::from_vec(vec![0.0, 0.1, -0.1], &[3])?),
    ])
}

/// Every value of the worked example, by its name in the notation table, in the order printed.
pub struct Worked {
    /// (name, what it is, value).
    pub values: Vec<(&'static str, &'static str, Tensor<f64>)>,
    /// The dropout mask, row-major, `true` = kept.
    pub mask: Vec<bool>,
    /// The loss L.
    pub loss: f64,
    /// The tape as Graphviz DOT, every edge labelled with the gradient that flowed along it.
    pub dot: String,
}

/// Runs the forward and backward pass on the tape and collects every value.
pub fn compute() -> Result<Worked> {
    let [(_, x), (_, w1), (_, b1), (_, w2), (_, b2)] = inputs()?;
    let tape = Tape::new();
    let xv = tape.constant(x.clone());
    // Parameters, so that the graph names them.
    let params = [("W1", &w1), ("b1", &b1), ("W2", &w2), ("b2", &b2)]
        .map(|(name, value)| Param::new(name, value.clone()));
    let [w1v, b1v, w2v, b2v] = [0, 1, 2, 3].map(|i| tape.param(&params[i]));
    let z1 = xv.matmul(w1v)?.add(b1v)?;
    let h1 = z1.relu()?;
    let d1 = h1.dropout(P, &mut Pcg64::seed_from_u64(MASK_SEED))?;
    let (mask, _scale) = d1.dropout_mask()?;
    let s = d1.matmul(w2v)?.add(b2v)?;
    let log_p = s.log_softmax()?;
    let loss = log_p.nll(&LABELS)?;
    // Keep every gradient (not only the leaves'), trace the walk, and keep the saved state so the
    // graph can still show it.
    let options = BackwardOptions::new()
        .keep_intermediate(true)
        .trace(true)
        .retain_graph(true);
    let grads = loss.backward_with(options)?;
    let dot = match grads.trace() {
        Some(trace) => tape.to_dot_traced(trace),
        None => return Err(tapegrad::Error::NoGradRequired),
    };

    let p_soft = log_p.value().map(f64::exp)?;
    let mut values = vec![
        ("X", "the input batch, [N, d] = [2, 2]", x),
        ("W1", "first layer weight, [d, H]", w1),
        ("b1", "first layer bias, [H]", b1),
        ("Z1", "X·W1 + b1", z1.value().try_clone()?),
        ("H1", "relu(Z1)", h1.value().try_clone()?),
    ];
    let mut after_mask = vec![
        ("D1", "m ⊙ H1 · s", d1.value().try_clone()?),
        ("W2", "second layer weight, [H, K]", w2),
        ("b2", "second layer bias, [K]", b2),
        ("S", "D1·W2 + b2 (the logits)", s.value().try_clone()?),
        ("P", "softmax(S), row by row", p_soft),
        ("log P", "log_softmax(S)", log_p.value().try_clone()?),
        (
            "G_log P",
            "−Y/N: nll's rule (Y one-hot of t)",
            grads.wrt(log_p)?.try_clone()?,
        ),
        (
            "G_S",
            "(P − Y)/N: log_softmax's rule",
            grads.wrt(s)?.try_clone()?,
        ),
        ("G_b2", "Σ_rows G_S", grads.wrt(b2v)?.try_clone()?),
        ("G_W2", "D1ᵀ·G_S", grads.wrt(w2v)?.try_clone()?),
        ("G_D1", "G_S·W2ᵀ", grads.wrt(d1)?.try_clone()?),
        (
            "G_H1",
            "m ⊙ G_D1 · s: dropout's rule",
            grads.wrt(h1)?.try_clone()?,
        ),
        (
            "G_Z1",
            "G_H1 ⊙ [Z1 > 0]: relu's rule",
            grads.wrt(z1)?.try_clone()?,
        ),
        ("G_b1", "Σ_rows G_Z1", grads.wrt(b1v)?.try_clone()?),
        ("G_W1", "Xᵀ·G_Z1", grads.wrt(w1v)?.try_clone()?),
    ];
    values.append(&mut after_mask);
    Ok(Worked {
        values,
        mask: (0..mask.len()).map(|i| mask.get(i)).collect(),
        loss: loss.value().item()?,
        dot,
    })
}

fn number(v: f64) -> String {
    // −0 prints as +0: a dropped unit's exact zero gradient should not look negative.
    format!("{:+.4}", if v == 0.0 { 0.0 } else { v })
}

fn matrix(out: &mut String, name: &str, what: &str, t: &Tensor<f64>) {
    let cols = *t.dims().last().unwrap_or(&1);
    out.push_str(&format!("{name} = {what}\n"));
    for row in t.data().chunks(cols.max(1)) {
        let cells: Vec<String> = row.iter().map(|&v| number(v)).collect();
        out.push_str(&format!("    [ {} ]\n", cells.join("  ")));
    }
    out.push('\n');
}

/// The page: what `main` prints and `docs/worked-example.md` shows.
pub fn render(worked: &Worked) -> String {
    let mut out = format!(
        "N = 2 rows, d = 2 inputs, H = 4 hidden, K = 3 classes; p = {P}, s = 1/(1 − p) = {}; \
         t = {LABELS:?}\n\n== forward ==\n\n",
        1.0 / (1.0 - P)
    );
    let hidden = 4;
    for (name, what, value) in &worked.values {
        if *name == "G_log P" {
            out.push_str(&format!(
                "L = −(1/N)·Σᵢ log P[i, tᵢ] = {}\n\n== backward (G_V = ∂L/∂V) ==\n\nG_L = 1\n\n",
                number(worked.loss)
            ));
        }
        matrix(&mut out, name, what, value);
        if *name == "H1" {
            out.push_str(&format!(
                "m = the dropout mask (1 = kept), Pcg64 seed {MASK_SEED}\n"
            ));
            for row in worked.mask.chunks(hidden) {
                let bits: Vec<&str> = row.iter().map(|&b| if b { "1" } else { "0" }).collect();
                out.push_str(&format!("    [ {} ]\n", bits.join("  ")));
            }
            out.push('\n');
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[allow(dead_code)] // the test includes this file for `compute` and `render` only
fn main() -> Result<()> {
    let worked = compute()?;
    if std::env::args().any(|a| a == "--dot") {
        print!("{}", worked.dot);
    } else {
        print!("{}", render(&worked));
    }
    Ok(())
}
