//! Second derivatives of the lesson's loss: Hessian-vector products by differentiating the backward
//! pass, checked against finite differences of gradients, then used to find the loss's sharpest
//! direction (the top Hessian eigenvalue) by power iteration.
//!
//! Run: `cargo run --release --example hessian`

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, tape_step};
use tapegrad::{Result, Tape, Tensor, Var, hvp};

const P: f64 = 0.5;
const MASK_SEED: u64 = 7;

/// The lesson's loss as a function of θ = (W1, b1, W2, b2). Reseeding the generator on every call
/// holds the dropout mask fixed, so the loss is a deterministic function of θ.
fn loss<'t>(
    tape: &'t Tape<f64>,
    theta: &[Var<'t, f64>],
    x: &Tensor<f64>,
    labels: &[usize],
) -> Result<Var<'t, f64>> {
    let mut rng = Pcg64::seed_from_u64(MASK_SEED);
    tape.constant(x.clone())
        .matmul(theta[0])?
        .add(theta[1])?
        .relu()?
        .dropout(P, &mut rng)?
        .matmul(theta[2])?
        .add(theta[3])?
        .cross_entropy(labels)
}

fn dot(a: &[Tensor<f64>], b: &[Tensor<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.data().iter().zip(y.data()))
        .map(|(x, y)| x * y)
        .sum()
}

fn scale(a: &[Tensor<f64>], s: f64) -> Result<Vec<Tensor<f64>>> {
    a.iter().map(|t| t.map(|v| v * s)).collect()
}

fn main() -> Result<()> {
    // Train the lesson's model for 100 steps so the loss surface has some curvature to show.
    let (data, mut weights) = LessonConfig::default().generate::<f64>()?;
    let mut rng = Pcg64::seed_from_u64(1);
    for _ in 0..100 {
        let step = tape_step(&data, &weights, P, &mut rng)?;
        weights.sgd_step(&step.grads, 0.5);
    }
    let theta: Vec<Tensor<f64>> = weights.tensors().into_iter().cloned().collect();
    let count: usize = theta.iter().map(|t| t.numel()).sum();
    println!("lesson model after 100 SGD steps: {count} parameters, dropout mask held fixed");

    // 1. H·v for a random direction, against (∇L(θ + εv) − ∇L(θ − εv)) / 2ε.
    let mut dir_rng = Pcg64::seed_from_u64(2);
    let v: Vec<Tensor<f64>> = theta
        .iter()
        .map(|t| Tensor::normal(t.dims(), 0.0, 1.0, &mut dir_rng))
        .collect::<Result<_>>()?;
    let at = |th: &[Tensor<f64>], dir: &[Tensor<f64>]| {
        hvp(|t, p| loss(t, p, &data.x, &data.labels), th, dir)
    };
    let exact = at(&theta, &v)?;
    let eps = 1e-5;
    let shifted = |sign: f64| -> Result<Vec<Tensor<f64>>> {
        let moved: Vec<Tensor<f64>> = theta
            .iter()
            .zip(&v)
            .map(|(t, d)| t.zip_map(d, "shift", |a, b| a + sign * eps * b))
            .collect::<Result<_>>()?;
        Ok(at(&moved, &v)?.grads)
    };
    let (plus, minus) = (shifted(1.0)?, shifted(-1.0)?);
    let mut max_err = 0.0f64;
    for k in 0..theta.len() {
        for ((h, p), m) in exact.hvp[k]
            .data()
            .iter()
            .zip(plus[k].data())
            .zip(minus[k].data())
        {
            max_err = max_err.max((h - (p - m) / (2.0 * eps)).abs());
        }
    }
    println!(
        "loss {:.6} | |H·v| = {:.4}",
        exact.value,
        dot(&exact.hvp, &exact.hvp).sqrt()
    );
    println!("max abs error vs finite differences: {max_err:.3e}");

    // 2. Power iteration: v ← Hv / |Hv| converges to the eigenvector of the largest |eigenvalue|;
    //    the Rayleigh quotient vᵀHv estimates that eigenvalue.
    let mut u = scale(&v, 1.0 / dot(&v, &v).sqrt())?;
    let mut lambda = 0.0;
    for iteration in 1..=200 {
        let hu = at(&theta, &u)?.hvp;
        lambda = dot(&u, &hu);
        u = scale(&hu, 1.0 / dot(&hu, &hu).sqrt())?;
        if iteration % 50 == 0 {
            println!("power iteration {iteration:>2}: top Hessian eigenvalue ≈ {lambda:.6}");
        }
    }
    println!(
        "sharpest direction: curvature {lambda:.4}; plain gradient descent on it is stable for lr < 2/λ = {:.3}",
        2.0 / lambda
    );
    Ok(())
}
