//! Regression of sin(3x) on [−2, 2] from 256 samples with an MLP 1 → 64 → 64 → 1 (tanh),
//! full-batch Adam with a step schedule, written with the training toolkit. Its PyTorch twin is
//! `examples/pytorch/sine.py` (line counts in docs/models.md).
//!
//! Run: `cargo run --release --example sine`
use tapegrad::prelude::*;

fn main() -> Result<()> {
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Tensor::<f32>::uniform(&[256, 1], -2.0, 2.0, &mut rng)?;
    let y = x.map(|v| (3.0 * v).sin())?;
    let model = Sequential::new()
        .push(Linear::new(1, 64, &mut rng)?)
        .push(Tanh);
    let model = model.push(Linear::new(64, 64, &mut rng)?).push(Tanh);
    let model = model.push(Linear::new(64, 1, &mut rng)?);
    let mut opt = Adam::new(model.named_params(), AdamConfig::default().lr(1e-2))?;
    let mut schedule = StepLR::new(&mut opt, 1000, 0.1)?;
    for step in 0..3000 {
        let tape = Tape::new();
        let prediction = model.forward(&mut Context::eval(), tape.constant(x.clone()))?;
        let loss = MSELoss::default().forward(prediction, tape.constant(y.clone()))?;
        opt.step(&loss.backward()?)?;
        schedule.step(&mut opt)?;
        if step % 500 == 0 {
            println!("step {step:>4}: loss {:.5}", loss.item()?);
        }
    }
    let grid = Tensor::<f32>::linspace(-2.0, 2.0, 401)?.reshape(&[401, 1])?;
    let tape = Tape::no_grad();
    let fitted = model.forward(&mut Context::eval(), tape.constant(grid.clone()))?;
    let truth = tape.constant(grid.map(|v| (3.0 * v).sin())?);
    let rmse = MSELoss::default().forward(fitted, truth)?.item()?.sqrt();
    println!("RMSE against sin(3x) on a grid of 401 points: {rmse:.4}");
    Ok(())
}
