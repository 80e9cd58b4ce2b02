//! The example models against PyTorch: the same initial weights and batches, five training steps,
//! the losses, the first step's gradients and the final parameters compared with
//! `tests/golden/models.safetensors` (written by `tests/golden/models.py`).

mod common;

#[path = "../examples/makemore/model.rs"]
mod makemore;

#[path = "../examples/digits_cnn/model.rs"]
mod digits_cnn;

#[path = "../examples/gpt/model.rs"]
mod gpt;

use common::Golden;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::Tensor;
use tapegrad::nn::{Context, Module};
use tapegrad::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};

/// Asserts `|got − want| ≤ rtol·|want| + atol` element-wise, naming the first failure.
fn assert_rel(what: &str, got: &Tensor<f32>, want: &Tensor<f32>, rtol: f32, atol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        assert!(
            (g - w).abs() <= rtol * w.abs() + atol,
            "{what}[{i}]: got {g}, PyTorch {w}"
        );
    }
}

fn ids(golden: &Golden, name: &str) -> Vec<usize> {
    golden
        .i64(name)
        .into_iter()
        .map(|v| usize::try_from(v).expect("ids are non-negative"))
        .collect()
}

#[test]
fn makemore_trains_as_pytorch_does() {
    let golden = Golden::open("models.safetensors");
    let model = makemore::Makemore::new(&mut Pcg64::seed_from_u64(0)).unwrap();
    let names = model.named_params();
    assert_eq!(
        names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "table",
            "hidden.weight",
            "hidden.bias",
            "out.weight",
            "out.bias"
        ],
        "the state_dict names PyTorch uses"
    );
    for (name, p) in &names {
        p.set(golden.f32(&format!("makemore.init.{name}")));
    }
    let mut sgd = Sgd::new(
        model.named_params(),
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    for k in 0..5 {
        let x = ids(&golden, &format!("makemore.x{k}"));
        let y = ids(&golden, &format!("makemore.y{k}"));
        let tape = tapegrad::Tape::new();
        let loss = model.forward(&tape, &x).unwrap().cross_entropy(&y).unwrap();
        let want = golden.f32(&format!("makemore.loss{k}")).data()[0];
        let got = loss.item().unwrap();
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "step {k}: loss {got}, PyTorch {want}"
        );
        let grads = loss.backward().unwrap();
        if k == 0 {
            for (name, p) in &names {
                let g = grads.param(p).expect("every parameter gets a gradient");
                let want = golden.f32(&format!("makemore.grad0.{name}"));
                assert_rel(&format!("grad {name}"), g, &want, 1e-5, 1e-7);
            }
        }
        sgd.step(&grads).unwrap();
    }
    for (name, p) in &names {
        let want = golden.f32(&format!("makemore.final.{name}"));
        assert_rel(name, &p.value(), &want, 1e-4, 1e-6);
    }
}

#[test]
fn digits_cnn_trains_as_pytorch_does() {
    let golden = Golden::open("models.safetensors");
    let model = digits_cnn::DigitsCnn::new(&mut Pcg64::seed_from_u64(0)).unwrap();
    let names = model.named_params();
    assert_eq!(
        names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"
        ],
        "the state_dict names of PyTorch's nn.Sequential"
    );
    for (name, p) in &names {
        p.set(golden.f32(&format!("cnn.init.{name}")));
    }
    let mut adam = Adam::new(model.named_params(), AdamConfig::default()).unwrap();
    for k in 0..5 {
        let y = ids(&golden, &format!("cnn.y{k}"));
        let tape = tapegrad::Tape::new();
        let x = tape.constant(golden.f32(&format!("cnn.x{k}")));
        // Dropout off, as in PyTorch's eval mode.
        let loss = model
            .forward(&tape, &mut Context::eval(), x)
            .unwrap()
            .cross_entropy(&y)
            .unwrap();
        let want = golden.f32(&format!("cnn.loss{k}")).data()[0];
        let got = loss.item().unwrap();
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "step {k}: loss {got}, PyTorch {want}"
        );
        let grads = loss.backward().unwrap();
        if k == 0 {
            for (name, p) in &names {
                let g = grads.param(p).expect("every parameter gets a gradient");
                let want = golden.f32(&format!("cnn.grad0.{name}"));
                assert_rel(&format!("grad {name}"), g, &want, 1e-5, 1e-7);
            }
        }
        adam.step(&grads).unwrap();
    }
    // Adam divides each gradient by its own running magnitude, so an element whose gradient is
    // a rounding residue (6e-9 beside gradients of 0.04: sums that cancel) moves by an amount set
    // by those last bits in either engine. Such elements are held to 1e-3 of the largest
    // possible displacement, five steps of lr 1e-3; every other element to rtol 1e-4.
    for (name, p) in &names {
        let want = golden.f32(&format!("cnn.final.{name}"));
        assert_rel(name, &p.value(), &want, 1e-4, 5e-6);
    }
}

#[test]
fn gpt_trains_as_pytorch_does() {
    let golden = Golden::open("models.safetensors");
    let config = gpt::GptConfig {
        vocab: 65,
        block: 16,
        layers: 2,
        heads: 2,
        embed: 32,
        dropout: 0.0,
    };
    let model = gpt::Gpt::<f32>::new(config, &mut Pcg64::seed_from_u64(0)).unwrap();
    let names = model.named_params();
    let mut golden_names: Vec<String> = golden
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("gpt.init.").map(str::to_string))
        .collect();
    let mut ours: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    golden_names.sort();
    ours.sort();
    assert_eq!(ours, golden_names, "PyTorch's state_dict names");
    for (name, p) in &names {
        p.set(golden.f32(&format!("gpt.init.{name}")));
    }
    let mut adamw = Adam::new(
        model.named_params(),
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.99),
            weight_decay: 0.1,
            ..AdamConfig::adamw()
        },
    )
    .unwrap();
    for k in 0..5 {
        let x = ids(&golden, &format!("gpt.x{k}"));
        let y = ids(&golden, &format!("gpt.y{k}"));
        let tape = tapegrad::Tape::new();
        let x = tapegrad::Indices::new(&x, &[4, 16]).unwrap();
        let loss = model
            .forward(&mut Context::eval(), &tape, &x)
            .unwrap()
            .reshape(&[64, 65])
            .unwrap()
            .cross_entropy(&y)
            .unwrap();
        let want = golden.f32(&format!("gpt.loss{k}")).data()[0];
        let got = loss.item().unwrap();
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "step {k}: loss {got}, PyTorch {want}"
        );
        let mut grads = loss.backward().unwrap();
        tapegrad::optim::clip_grad_norm(&mut grads, adamw.params(), 1.0, 2.0, false).unwrap();
        if k == 0 {
            for (name, p) in &names {
                let g = grads.param(p).expect("every parameter gets a gradient");
                let want = golden.f32(&format!("gpt.grad0.{name}"));
                // Relative to each tensor's largest gradient: attention's sums cancel, so single
                // elements carry the rounding of their terms, not of their own size.
                let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
                assert_rel(&format!("grad {name}"), g, &want, 1e-5, 1e-5 * scale);
            }
        }
        adamw.step(&grads).unwrap();
    }
    // As for the CNN: Adam's steps on rounding-residue gradients are set by their last bits;
    // those elements are held to 1e-3 of five steps of lr 1e-3. One part of the model has only
    // such gradients: the key projection's bias (elements E..2E of in_proj_bias) adds q·b to a
    // whole row of scores, which softmax ignores, so its gradient is exactly 0 in exact
    // arithmetic and rounding residue in both engines, and Adam turns residue into steps of
    // ±lr. There the test asks only that both engines stay within five steps of the start.
    let e = config.embed;
    for (name, p) in &names {
        let want = golden.f32(&format!("gpt.final.{name}"));
        let got = p.value();
        if name.ends_with("in_proj_bias") {
            let start = golden.f32(&format!("gpt.init.{name}"));
            for i in e..2 * e {
                for (engine, v) in [("tapegrad", got.data()[i]), ("PyTorch", want.data()[i])] {
                    assert!(
                        (v - start.data()[i]).abs() <= 5.0 * 1e-3 * 1.01,
                        "{name}[{i}] ({engine}) moved more than five steps"
                    );
                }
            }
            let keep = |t: &Tensor<f32>| {
                let d = t.data();
                Tensor::from_vec([&d[..e], &d[2 * e..]].concat(), &[2 * e]).unwrap()
            };
            assert_final(name, &keep(&got), &keep(&want));
        } else {
            assert_final(name, &got, &want);
        }
    }
}

/// Final parameters after five Adam steps: every element within rtol 1e-4 + 5e-6, except that up
/// to 1% of a tensor's elements — those whose gradients were rounding residue at some step, which
/// Adam scales up to steps of ±lr — may differ by up to 5e-5 (a tenth of their five steps' reach).
fn assert_final(what: &str, got: &Tensor<f32>, want: &Tensor<f32>) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let mut loose = 0;
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let err = (g - w).abs();
        if err > 1e-4 * w.abs() + 5e-6 {
            loose += 1;
            assert!(err <= 5e-5, "{what}[{i}]: got {g}, PyTorch {w}");
        }
    }
    assert!(
        loose * 100 <= got.data().len(),
        "{what}: {loose} of {} elements beyond rtol 1e-4",
        got.data().len()
    );
}
