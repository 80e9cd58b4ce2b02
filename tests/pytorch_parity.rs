//! Parity with PyTorch: 20 steps of SGD (momentum 0.9, Nesterov, weight decay) and 20 steps of
//! AdamW on the lesson's model, against trajectories recorded by `tests/golden/make_golden.py`
//! (torch 2.15, float32, one thread). Same initial weights, same inputs, same dropout masks; every
//! loss, gradient and parameter must match to rtol 1e-5, atol 1e-6.

use tapegrad::nn::{Context, Forward, Linear, Module, Visitor, load_safetensors};
use tapegrad::optim::{Adam, AdamConfig, GradSource, Optimizer, Sgd, SgdConfig};
use tapegrad::{BitMask, Param, Tape, Tensor};

const STEPS: usize = 20;
const NAMES: [&str; 4] = ["0.weight", "0.bias", "3.weight", "3.bias"];
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

mod common;
use common::Golden;

trait LessonGolden {
    fn labels(&self) -> Vec<i64>;
    fn mask(&self, step: usize) -> BitMask;
}

impl LessonGolden for Golden {
    fn labels(&self) -> Vec<i64> {
        self.i64("labels")
    }

    fn mask(&self, step: usize) -> BitMask {
        let (_, _, data) = self.raw(&format!("mask.{step}"));
        BitMask::from_predicate(&data, |b| b != 0).unwrap()
    }
}

/// Asserts |a − b| ≤ atol + rtol·|b| entry by entry; tracks the largest |a − b| and the largest
/// fraction of its tolerance any entry used.
fn compare(what: &str, ours: &Tensor<f32>, theirs: &Tensor<f32>, worst: &mut (f64, f64)) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}");
    for (i, (&a, &b)) in ours.data().iter().zip(theirs.data()).enumerate() {
        let (a, b) = (f64::from(a), f64::from(b));
        let diff = (a - b).abs();
        assert!(
            diff <= ATOL + RTOL * b.abs(),
            "{what}[{i}]: tapegrad {a:e} vs PyTorch {b:e}"
        );
        worst.0 = worst.0.max(diff);
        worst.1 = worst.1.max(diff / (ATOL + RTOL * b.abs()));
    }
}

/// The lesson's two layers, written out so the test can apply the recorded dropout mask between
/// them.
struct Lesson {
    first: Linear<f32>,
    second: Linear<f32>,
}

impl Module<f32> for Lesson {
    fn visit(&self, v: &mut Visitor<'_, f32>) {
        v.module("0", &self.first);
        v.module("3", &self.second);
    }
}

fn replay(
    file: &str,
    make: impl FnOnce(Vec<(String, Param<f32>)>) -> Box<dyn Optimizer<f32>>,
) -> (f64, f64) {
    let golden = Golden::open(file);
    let init = |n: &str| golden.f32(&format!("init.{n}"));
    let model = Lesson {
        first: Linear::from_tensors(init("0.weight"), Some(init("0.bias"))).unwrap(),
        second: Linear::from_tensors(init("3.weight"), Some(init("3.bias"))).unwrap(),
    };
    let mut optimizer = make(model.named_params());
    let (x, labels) = (golden.f32("x"), golden.labels());
    let mut worst = (0.0f64, 0.0f64);
    for s in 0..STEPS {
        let tape = Tape::new();
        let hidden = model
            .first
            .forward(&mut Context::eval(), tape.constant(x.clone()))
            .unwrap()
            .relu()
            .unwrap();
        let dropped = hidden.dropout_with_mask(&golden.mask(s), 0.5).unwrap();
        let loss = model
            .second
            .forward(&mut Context::eval(), dropped)
            .unwrap()
            .cross_entropy(&labels)
            .unwrap();
        let loss_value = Tensor::from_vec(vec![loss.value().item().unwrap()], &[1]).unwrap();
        compare(
            &format!("{file} loss {s}"),
            &loss_value,
            &golden.f32(&format!("loss.{s}")),
            &mut worst,
        );
        let grads = loss.backward().unwrap();
        for (name, p) in NAMES.iter().zip(model.params()) {
            let theirs = golden.f32(&format!("grad.{s}.{name}"));
            compare(
                &format!("{file} grad {s} {name}"),
                grads.grad(&p).unwrap(),
                &theirs,
                &mut worst,
            );
        }
        drop(tape);
        optimizer.step(&grads).unwrap();
        for (name, p) in NAMES.iter().zip(model.params()) {
            let theirs = golden.f32(&format!("param.{s}.{name}"));
            compare(
                &format!("{file} param {s} {name}"),
                &p.value(),
                &theirs,
                &mut worst,
            );
        }
    }
    worst
}

#[test]
fn sgd_with_nesterov_momentum_and_weight_decay_matches_pytorch() {
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-3,
        ..Default::default()
    };
    let worst = replay("lesson_sgd_nesterov.safetensors", |p| {
        Box::new(Sgd::new(p, config).unwrap())
    });
    eprintln!(
        "SGD+Nesterov vs PyTorch: max abs diff {:.3e}, worst entry used {:.0}% of its tolerance",
        worst.0,
        100.0 * worst.1
    );
}

#[test]
fn adamw_matches_pytorch() {
    let config = AdamConfig {
        lr: 1e-2,
        ..AdamConfig::adamw()
    };
    let worst = replay("lesson_adamw.safetensors", |p| {
        Box::new(Adam::new(p, config).unwrap())
    });
    eprintln!(
        "AdamW vs PyTorch: max abs diff {:.3e}, worst entry used {:.0}% of its tolerance",
        worst.0,
        100.0 * worst.1
    );
}

#[test]
fn a_pytorch_state_dict_loads_by_name() {
    let mut rng = <rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(0);
    let model = tapegrad::nn::Sequential::new()
        .push(Linear::<f32>::new(20, 64, &mut rng).unwrap())
        .push(tapegrad::nn::ReLU)
        .push(tapegrad::nn::Dropout::new(0.5).unwrap())
        .push(Linear::<f32>::new(64, 5, &mut rng).unwrap());
    load_safetensors(
        &model,
        format!(
            "{}/tests/golden/lesson_state_dict.safetensors",
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let golden = Golden::open("lesson_sgd_nesterov.safetensors");
    for (name, p) in model.named_params() {
        assert_eq!(*p.value(), golden.f32(&format!("init.{name}")), "{name}");
    }
}
