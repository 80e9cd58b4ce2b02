//! The example models against PyTorch: the same initial weights and batches, five training steps,
//! the losses, the first step's gradients and the final parameters compared with
//! `tests/golden/models.safetensors` (written by `tests/golden/models.py`).

mod common;

#[path = "../examples/makemore/model.rs"]
mod makemore;

#[path = "../examples/digits_cnn/model.rs"]
mod digits_cnn;

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
