//! The lesson's second program: the same task with layers, a loss module and an optimizer, the way
//! it is written with PyTorch's `nn.Sequential` + `nn.Dropout` + autograd.
//!
//! The model is the guide's (notation table in `docs/README.md`): X → Z1 → H1 → D1 → S → L.
//!
//! Run: `cargo run --release --example seed_nn` (add `-- --save model.safetensors` to write the
//! trained parameters; `tests/golden/load_in_pytorch.py` loads such a file into PyTorch).

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::lesson::{LessonConfig, accuracy};
use tapegrad::nn::{
    Context, CrossEntropyLoss, Dropout, Forward, Linear, Module, ReLU, Sequential, save_safetensors,
};
use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
use tapegrad::{Tape, Tensor};

fn main() -> tapegrad::Result<()> {
    let config = LessonConfig::default();
    let (data, _) = config.generate::<f32>()?;
    let mut rng = Pcg64::seed_from_u64(config.seed);
    let model = Sequential::new()
        .push(Linear::new(config.d, config.h, &mut rng)?)
        .push(ReLU)
        .push(Dropout::new(0.5)?)
        .push(Linear::new(config.h, config.k, &mut rng)?);
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.5,
            ..Default::default()
        },
    )?;
    let loss_fn = CrossEntropyLoss::default();

    for epoch in 1..=200 {
        let tape = Tape::new();
        let logits = model.forward(&mut Context::train(&mut rng), tape.constant(data.x.clone()))?;
        let loss = loss_fn.forward(logits, &data.labels)?;
        let grads = loss.backward()?;
        let (loss_value, acc) = (
            loss.value().item()?,
            accuracy(&logits.value(), &data.labels),
        );
        drop(tape); // the tape shared the parameters' data; dropping it lets SGD update in place
        sgd.step(&grads)?;
        if epoch % 50 == 0 {
            println!("[nn.Dropout]    epoch {epoch:>3} | loss {loss_value:.4} | acc {acc:.3}");
        }
    }

    // Eval mode: dropout off, and no generator needed.
    let tape = Tape::no_grad();
    let logits = model.forward(&mut Context::eval(), tape.constant(data.x.clone()))?;
    println!(
        "[eval] accuracy (dropout off): {:.3}",
        accuracy(&logits.value(), &data.labels)
    );
    if let Some(path) = std::env::args().skip_while(|a| a != "--save").nth(1) {
        save_safetensors(&model, &path)?;
        // A fixed input both engines can build, to compare the loaded model's output.
        let ones = tape.constant(Tensor::ones(&[1, config.d])?);
        let out = model.forward(&mut Context::eval(), ones)?.value();
        let shown: Vec<String> = out.data().iter().map(|v| format!("{v:.5}")).collect();
        println!(
            "saved to {path}; logits for an input of ones: [{}]",
            shown.join(", ")
        );
    }
    Ok(())
}
