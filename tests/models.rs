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
use tapegrad::nn::{Context, Module};
use tapegrad::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig, clip_grad_norm};
use tapegrad::{Gradients, Indices, Param, Tape, Tensor, Var};

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

/// One model's recorded run: its parameters (by name) set to PyTorch's initial values, then the
/// five recorded steps replayed. `loss_of(k, tape)` builds step k's loss, which must equal
/// PyTorch's to 1e-5; `clip` adjusts the gradients before the step (clipping, or nothing); the
/// first step's gradients must equal PyTorch's to rtol 1e-5 and an absolute `grad_atol(want)`.
struct Replay<'g> {
    golden: &'g Golden,
    case: &'static str,
    names: Vec<(String, Param<f32>)>,
}

impl<'g> Replay<'g> {
    fn new(golden: &'g Golden, case: &'static str, names: Vec<(String, Param<f32>)>) -> Self {
        let prefix = format!("{case}.init.");
        let mut theirs: Vec<String> = golden
            .names()
            .into_iter()
            .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let mut ours: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
        theirs.sort();
        ours.sort();
        assert_eq!(ours, theirs, "{case}: PyTorch's state_dict names");
        for (name, p) in &names {
            p.set(golden.f32(&format!("{prefix}{name}")));
        }
        Replay {
            golden,
            case,
            names,
        }
    }

    fn golden(&self, what: &str) -> Tensor<f32> {
        self.golden.f32(&format!("{}.{what}", self.case))
    }

    fn ids(&self, what: &str) -> Vec<usize> {
        ids(self.golden, &format!("{}.{what}", self.case))
    }

    fn run(
        &self,
        optimizer: &mut dyn Optimizer<f32>,
        loss_of: impl for<'t> Fn(usize, &'t Tape<f32>) -> Var<'t, f32>,
        clip: impl Fn(&mut Gradients<f32>, &dyn Optimizer<f32>),
        grad_atol: impl Fn(&Tensor<f32>) -> f32,
    ) {
        for k in 0..5 {
            let tape = Tape::new();
            let loss = loss_of(k, &tape);
            let want = self.golden(&format!("loss{k}")).data()[0];
            let got = loss.item().unwrap();
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "{} step {k}: loss {got}, PyTorch {want}",
                self.case
            );
            let mut grads = loss.backward().unwrap();
            clip(&mut grads, optimizer);
            if k == 0 {
                for (name, p) in &self.names {
                    let g = grads.param(p).expect("every parameter gets a gradient");
                    let want = self.golden(&format!("grad0.{name}"));
                    assert_rel(&format!("grad {name}"), g, &want, 1e-5, grad_atol(&want));
                }
            }
            optimizer.step(&grads).unwrap();
        }
    }
}

#[test]
fn makemore_trains_as_pytorch_does() {
    let golden = Golden::open("models.safetensors");
    let model = makemore::Makemore::new(&mut Pcg64::seed_from_u64(0)).unwrap();
    let replay = Replay::new(&golden, "makemore", model.named_params());
    let config = SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    };
    let mut sgd = Sgd::new(model.named_params(), config).unwrap();
    replay.run(
        &mut sgd,
        |k, tape| {
            let (x, y) = (replay.ids(&format!("x{k}")), replay.ids(&format!("y{k}")));
            model.forward(tape, &x).unwrap().cross_entropy(&y).unwrap()
        },
        |_, _| {},
        |_| 1e-7,
    );
    for (name, p) in &replay.names {
        assert_rel(
            name,
            &p.value(),
            &replay.golden(&format!("final.{name}")),
            1e-4,
            1e-6,
        );
    }
}

#[test]
fn digits_cnn_trains_as_pytorch_does() {
    let golden = Golden::open("models.safetensors");
    let model = digits_cnn::DigitsCnn::new(&mut Pcg64::seed_from_u64(0)).unwrap();
    let replay = Replay::new(&golden, "cnn", model.named_params());
    let mut adam = Adam::new(model.named_params(), AdamConfig::default()).unwrap();
    replay.run(
        &mut adam,
        |k, tape| {
            let x = tape.constant(replay.golden(&format!("x{k}")));
            // Dropout off, as in PyTorch's eval mode.
            let logits = model.forward(tape, &mut Context::eval(), x).unwrap();
            logits.cross_entropy(&replay.ids(&format!("y{k}"))).unwrap()
        },
        |_, _| {},
        |_| 1e-7,
    );
    for (name, p) in &replay.names {
        assert_final(name, &p.value(), &replay.golden(&format!("final.{name}")));
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
    let replay = Replay::new(&golden, "gpt", model.named_params());
    let adamw_config = AdamConfig {
        lr: 1e-3,
        betas: (0.9, 0.99),
        weight_decay: 0.1,
        ..AdamConfig::adamw()
    };
    let mut adamw = Adam::new(model.named_params(), adamw_config).unwrap();
    replay.run(
        &mut adamw,
        |k, tape| {
            let x = Indices::new(&replay.ids(&format!("x{k}")), &[4, 16]).unwrap();
            let logits = model.forward(&mut Context::eval(), tape, &x).unwrap();
            let y = replay.ids(&format!("y{k}"));
            logits
                .reshape(&[64, 65])
                .unwrap()
                .cross_entropy(&y)
                .unwrap()
        },
        |grads, opt| {
            clip_grad_norm(grads, opt.params(), 1.0, 2.0, false).unwrap();
        },
        // Relative to each tensor's largest gradient: attention's sums cancel, so single elements
        // carry the rounding of their terms, not of their own size.
        |want| 1e-5 * want.data().iter().fold(0f32, |m, v| m.max(v.abs())),
    );
    // The key projection's bias (elements E..2E of in_proj_bias) adds q·b to a whole row of
    // scores, which softmax ignores: its gradient is exactly 0 in exact arithmetic and rounding
    // residue in both engines, which Adam turns into steps of ±lr. There the test asks only that
    // both engines stay within five steps of the start.
    let e = config.embed;
    for (name, p) in &replay.names {
        let (got, want) = (p.value(), replay.golden(&format!("final.{name}")));
        if !name.ends_with("in_proj_bias") {
            assert_final(name, &got, &want);
            continue;
        }
        let start = replay.golden(&format!("init.{name}"));
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
    }
}

/// Final parameters after five Adam steps (lr 1e-3): every element within rtol 1e-4 + 5e-6, except
/// that up to 1% of a tensor's elements may differ by up to 5e-5 (a tenth of five steps' reach).
/// Adam divides each gradient by its own running magnitude, so an element whose gradient is a
/// rounding residue (6e-9 beside gradients of 0.04: sums that cancel) moves by an amount set by
/// those last bits, in either engine.
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
