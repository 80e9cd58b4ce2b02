//! Modules, optimizers and checkpoints: initialisation statistics, train/eval switching, optimizer
//! steps against updates computed by hand, gradient accumulation, and every checkpoint error.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::{
    Context, CrossEntropyLoss, Dropout, Forward, Linear, MSELoss, Module, NLLLoss, ReLU,
    Sequential, load_safetensors_bytes, to_safetensors_bytes,
};
use tapegrad::optim::{Adam, AdamConfig, GradAccumulator, Optimizer, Sgd, SgdConfig};
use tapegrad::{Error, Param, ParamId, Tape, Tensor};

fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

fn lesson_model(seed: u64) -> Sequential<f32> {
    let mut r = rng(seed);
    Sequential::new()
        .push(Linear::new(20, 64, &mut r).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.5).unwrap())
        .push(Linear::new(64, 5, &mut r).unwrap())
}

#[test]
fn linear_init_is_uniform_within_one_over_sqrt_fan_in() {
    let layer = Linear::<f64>::new(400, 300, &mut rng(1)).unwrap();
    let bound = 1.0 / 400f64.sqrt();
    let w = layer.weight.value();
    assert_eq!(w.dims(), &[300, 400]);
    assert_eq!(layer.bias.as_ref().unwrap().value().dims(), &[300]);
    assert!(w.data().iter().all(|&v| v.abs() < bound));
    // U(−b, b) has mean 0 and variance b²/3; with 120 000 draws the sample moments are tight.
    let n = w.numel() as f64;
    let mean = w.data().iter().sum::<f64>() / n;
    let var = w.data().iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let sd_of_mean = (bound * bound / 3.0 / n).sqrt();
    assert!(mean.abs() < 5.0 * sd_of_mean, "mean {mean}");
    assert!(
        (var / (bound * bound / 3.0) - 1.0).abs() < 0.02,
        "variance {var}"
    );
    // The extremes come close to the bound from both sides.
    let max = w.data().iter().copied().fold(f64::MIN, f64::max);
    assert!(max > 0.999 * bound);
}

#[test]
fn linear_computes_x_wt_plus_b() {
    let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let b = Tensor::from_vec(vec![0.5, -0.5], &[2]).unwrap();
    let layer = Linear::from_tensors(w.clone(), Some(b)).unwrap();
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_vec(vec![1.0, 0.0, -1.0], &[1, 3]).unwrap());
    let y = layer.forward(&mut Context::eval(), x).unwrap();
    assert_eq!(y.value().data(), &[1.0 - 3.0 + 0.5, 4.0 - 6.0 - 0.5]);
    // Without a bias, and on inputs with more leading axes (one product over all of them).
    let plain = Linear::from_tensors(w, None).unwrap();
    assert_eq!(plain.named_params().len(), 1);
    let x3 =
        tape.constant(Tensor::from_vec(vec![1.0, 0.0, -1.0, 2.0, 2.0, 2.0], &[2, 1, 3]).unwrap());
    let y3 = plain.forward(&mut Context::eval(), x3).unwrap();
    assert_eq!(y3.value().dims(), &[2, 1, 2]);
    assert_eq!(y3.value().data(), &[-2.0, -2.0, 12.0, 30.0]);
}

#[test]
fn parameter_names_follow_pytorch_sequential() {
    let model = lesson_model(2);
    let names: Vec<_> = model
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value().dims().to_vec()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("0.weight".to_string(), vec![64, 20]),
            ("0.bias".to_string(), vec![64]),
            ("3.weight".to_string(), vec![5, 64]),
            ("3.bias".to_string(), vec![5]),
        ]
    );
}

#[test]
fn eval_mode_turns_dropout_off_and_draws_nothing() {
    let model = lesson_model(3);
    let x = Tensor::<f32>::normal(&[16, 20], 0.0, 1.0, &mut rng(4)).unwrap();
    let run = |cx: &mut Context<'_>| {
        let tape = Tape::no_grad();
        (*model.forward(cx, tape.constant(x.clone())).unwrap().value()).clone()
    };
    let mut r = rng(5);
    let train_a = run(&mut Context::train(&mut r));
    let train_b = run(&mut Context::train(&mut r));
    assert_ne!(train_a, train_b, "train mode: a new mask each call");

    // Eval mode needs no generator at all; with one present, it draws nothing from it.
    let eval_a = run(&mut Context::eval());
    let eval_b = run(&mut Context::eval());
    assert_eq!(eval_a, eval_b);
    assert!(matches!(
        model.forward(
            &mut Context::train_deterministic(),
            Tape::no_grad().constant(x.clone())
        ),
        Err(Error::InvalidArgument { op: "Dropout", .. })
    ));

    // Eval mode equals the network without its dropout layer.
    let tape = Tape::no_grad();
    let mut h = tape.constant(x.clone());
    for (i, layer) in model.named_params().chunks(2).enumerate() {
        let (weight, bias) = ((*layer[0].1.value()).clone(), (*layer[1].1.value()).clone());
        h = h
            .matmul_t(tape.constant(weight))
            .unwrap()
            .add(tape.constant(bias))
            .unwrap();
        if i == 0 {
            h = h.relu().unwrap();
        }
    }
    assert_eq!(*h.value(), eval_a);
    assert_ne!(run(&mut Context::train(&mut rng(7))), eval_a);
}

#[test]
fn losses_match_their_definitions() {
    let tape = Tape::<f64>::new();
    let logits = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 0.5, -1.0], &[2, 2]).unwrap());
    let ce = CrossEntropyLoss::default()
        .forward(logits, &[1, 0])
        .unwrap()
        .value()
        .item()
        .unwrap();
    let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
    let want = ((lse(1.0, 2.0) - 2.0) + (lse(0.5, -1.0) - 0.5)) / 2.0;
    assert!((ce - want).abs() < 1e-15);
    let nll = NLLLoss::default()
        .forward(logits, &[1, 0])
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert_eq!(nll, -(2.0 + 0.5) / 2.0);
    let target = tape.constant(Tensor::from_vec(vec![0.0, 2.0, 1.5, -1.0], &[2, 2]).unwrap());
    let mse = MSELoss::default().forward(logits, target).unwrap();
    assert_eq!(mse.value().item().unwrap(), (1.0 + 0.0 + 1.0 + 0.0) / 4.0);
    let g = mse.backward().unwrap();
    assert_eq!(g.wrt(logits).unwrap().data(), &[0.5, 0.0, -0.5, 0.0]); // 2(ŷ − y)/n
    let wrong = tape.constant(Tensor::zeros(&[4]).unwrap());
    assert!(matches!(
        MSELoss::default().forward(logits, wrong),
        Err(Error::ShapeMismatch { op: "mse_loss", .. })
    ));
}

/// A parameter θ = 1 and a fixed gradient per step, fed three times to the optimizer `make`
/// builds for it.
fn three_steps(
    make: impl FnOnce(Vec<(String, Param<f64>)>) -> Box<dyn Optimizer<f64>>,
    grads: [f64; 3],
) -> Vec<f64> {
    let p = Param::new("theta", Tensor::from_vec(vec![1.0], &[1]).unwrap());
    let mut opt = make(vec![("theta".to_string(), p.share())]);
    let mut trace = vec![];
    for g in grads {
        let g = Tensor::from_vec(vec![g], &[1]).unwrap();
        opt.step(&Fixed(p.id(), &g)).unwrap();
        trace.push(p.value().data()[0]);
    }
    trace
}

/// A gradient source holding one gradient for one parameter id.
struct Fixed<'a>(ParamId, &'a Tensor<f64>);
impl tapegrad::optim::GradSource<f64> for Fixed<'_> {
    fn grad(&self, p: &Param<f64>) -> Option<&Tensor<f64>> {
        (p.id() == self.0).then_some(self.1)
    }
}

#[test]
fn sgd_momentum_nesterov_weight_decay_by_hand() {
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        nesterov: true,
        weight_decay: 0.01,
        ..Default::default()
    };
    let trace = three_steps(|p| Box::new(Sgd::new(p, config).unwrap()), [0.5, -0.2, 0.3]);
    // By hand, θ₀ = 1:
    // step 1: g = 0.5 + 0.01·1 = 0.51; b = 0.51; g' = 0.51 + 0.9·0.51 = 0.969; θ = 1 − 0.0969 = 0.9031
    // step 2: g = −0.2 + 0.009031 = −0.190969; b = 0.459 − 0.190969 = 0.268031;
    //         g' = −0.190969 + 0.2412279 = 0.0502589; θ = 0.9031 − 0.00502589 = 0.89807411
    // step 3: g = 0.3 + 0.0089807411 = 0.3089807411; b = 0.2412279 + 0.3089807411 = 0.5502086411;
    //         g' = 0.3089807411 + 0.49518777699 = 0.80416851809; θ = 0.89807411 − 0.080416851809
    let want = [0.9031, 0.89807411, 0.817657258191];
    for (got, want) in trace.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn sgd_dampening_without_nesterov_by_hand() {
    let config = SgdConfig {
        lr: 1.0,
        momentum: 0.5,
        dampening: 0.5,
        ..Default::default()
    };
    let trace = three_steps(|p| Box::new(Sgd::new(p, config).unwrap()), [1.0, 1.0, 1.0]);
    // b₁ = 1 (no dampening on the first step); b₂ = 0.5 + 0.5 = 1; b₃ = 1. θ = 1 − 1 − 1 − 1.
    assert_eq!(trace, vec![0.0, -1.0, -2.0]);
}

#[test]
fn adam_and_adamw_by_hand() {
    for decoupled in [false, true] {
        let config = AdamConfig {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.1,
            decoupled,
            ..Default::default()
        };
        let trace = three_steps(
            |p| Box::new(Adam::new(p, config).unwrap()),
            [0.5, -0.2, 0.3],
        );
        // The same rule, written out independently in f64.
        let (mut theta, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for (t, g) in [0.5f64, -0.2, 0.3].into_iter().enumerate() {
            let t = t as i32 + 1;
            let g = if decoupled {
                theta *= 1.0 - 0.1 * 0.1;
                g
            } else {
                g + 0.1 * theta
            };
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let m_hat = m / (1.0 - 0.9f64.powi(t));
            let v_hat = v / (1.0 - 0.999f64.powi(t));
            theta -= 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
            let got = trace[(t - 1) as usize];
            assert!(
                (got - theta).abs() < 1e-9,
                "decoupled {decoupled}, step {t}: {got} vs {theta}"
            );
        }
    }
}

#[test]
fn bad_hyperparameters_are_errors() {
    let none = || Vec::<(String, Param<f32>)>::new();
    assert!(matches!(
        Sgd::<f32>::new(
            none(),
            SgdConfig {
                nesterov: true,
                ..Default::default()
            }
        ),
        Err(Error::InvalidHyperparameter {
            name: "momentum",
            ..
        })
    ));
    assert!(matches!(
        Sgd::<f32>::new(
            none(),
            SgdConfig {
                lr: -1.0,
                ..Default::default()
            }
        ),
        Err(Error::InvalidHyperparameter { name: "lr", .. })
    ));
    assert!(matches!(
        Adam::<f32>::new(
            none(),
            AdamConfig {
                betas: (1.0, 0.999),
                ..Default::default()
            }
        ),
        Err(Error::InvalidHyperparameter { name: "beta1", .. })
    ));
    // Two parameters under one name could not both be saved: an error at construction.
    let p = Param::new("w", Tensor::<f32>::zeros(&[1]).unwrap());
    assert!(matches!(
        Sgd::new(
            vec![("w".to_string(), p.share()), ("w".to_string(), p.share())],
            SgdConfig::default()
        ),
        Err(Error::DuplicateName { .. })
    ));
    assert!(matches!(
        Dropout::new(1.5),
        Err(Error::InvalidProbability { .. })
    ));
    assert!(matches!(
        Linear::<f32>::new(0, 3, &mut rng(0)),
        Err(Error::InvalidHyperparameter { .. })
    ));
}

#[test]
fn gradients_accumulate_over_micro_batches_and_lr_can_change() {
    // Two half-batches accumulated give the same step as the full batch (losses are means, so
    // each half's loss is scaled by 1/2 to make the sum equal the full-batch mean).
    let x = Tensor::<f64>::normal(&[8, 3], 0.0, 1.0, &mut rng(8)).unwrap();
    let labels = [0usize, 1, 2, 1, 0, 2, 2, 1];
    let fresh = || Linear::<f64>::new(3, 3, &mut rng(9)).unwrap();
    let loss_of = |layer: &Linear<f64>, rows: std::ops::Range<usize>, scale: f64| {
        let tape = Tape::new();
        let xs = Tensor::from_vec(
            x.data()[rows.start * 3..rows.end * 3].to_vec(),
            &[rows.len(), 3],
        )
        .unwrap();
        let logits = layer
            .forward(&mut Context::eval(), tape.constant(xs))
            .unwrap();
        let loss = logits
            .cross_entropy(&labels[rows])
            .unwrap()
            .mul_scalar(scale)
            .unwrap();
        loss.backward().unwrap()
    };

    let config = SgdConfig {
        lr: 0.3,
        ..Default::default()
    };
    let full = fresh();
    let grads = loss_of(&full, 0..8, 1.0);
    Sgd::new(full.named_params(), config)
        .unwrap()
        .step(&grads)
        .unwrap();

    let micro = fresh();
    let mut acc = GradAccumulator::new();
    for rows in [0..4, 4..8] {
        acc.accumulate(&loss_of(&micro, rows, 0.5)).unwrap();
    }
    let mut sgd = Sgd::new(micro.named_params(), config).unwrap();
    sgd.step(&acc).unwrap();
    for ((_, a), (_, b)) in full.named_params().into_iter().zip(micro.named_params()) {
        assert!(a.value().max_abs_diff(&b.value()).unwrap() < 1e-14);
    }

    // A changed learning rate applies to the next step: lr 0 leaves the parameters alone.
    sgd.set_lr(0.0).unwrap();
    let before = micro.weight.value();
    sgd.step(&acc).unwrap();
    assert_eq!(micro.weight.value(), before);
    acc.zero_grad();
    sgd.set_lr(1.0).unwrap();
    sgd.step(&acc).unwrap();
    assert_eq!(
        micro.weight.value(),
        before,
        "no gradient after zero_grad: no update"
    );
}

#[test]
fn checkpoints_round_trip_and_reject_bad_files_without_changing_the_model() {
    let saved = lesson_model(10);
    let bytes = to_safetensors_bytes(&saved).unwrap();
    let model = lesson_model(11);
    load_safetensors_bytes(&model, &bytes).unwrap();
    for ((n, a), (_, b)) in saved.named_params().into_iter().zip(model.named_params()) {
        assert_eq!(a.value(), b.value(), "{n}");
    }

    let original: Vec<Tensor<f32>> = lesson_model(12)
        .named_params()
        .into_iter()
        .map(|(_, p)| (*p.value()).clone())
        .collect();
    let check_unchanged = |m: &Sequential<f32>| {
        for ((_, p), want) in m.named_params().into_iter().zip(&original) {
            assert_eq!(&*p.value(), want);
        }
    };

    // Missing: a model with an extra layer wants tensors the file lacks.
    let bigger = lesson_model(12).push(Linear::new(5, 2, &mut rng(13)).unwrap());
    assert!(matches!(
        load_safetensors_bytes(&bigger, &bytes),
        Err(Error::CheckpointMissing { name }) if name == "4.weight"
    ));

    // Extra: the file has tensors the smaller model lacks.
    let m = Sequential::<f32>::new().push(Linear::new(20, 64, &mut rng(15)).unwrap());
    assert!(matches!(
        load_safetensors_bytes(&m, &bytes),
        Err(Error::CheckpointUnexpected { name }) if name.starts_with("3.")
    ));

    // Mis-shaped: 7 classes instead of 5. The first tensors fit; the check still fails before any write.
    let other = Sequential::<f32>::new()
        .push(Linear::new(20, 64, &mut rng(16)).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.5).unwrap())
        .push(Linear::new(64, 7, &mut rng(16)).unwrap());
    let m = lesson_model(12);
    assert!(matches!(
        load_safetensors_bytes(&m, &to_safetensors_bytes(&other).unwrap()),
        Err(Error::CheckpointShape { name, .. }) if name == "3.weight"
    ));
    check_unchanged(&m);

    // Wrong dtype: an f64 file into an f32 model.
    let mut r = rng(17);
    let f64_model = Sequential::<f64>::new()
        .push(Linear::new(20, 64, &mut r).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.5).unwrap())
        .push(Linear::new(64, 5, &mut r).unwrap());
    let m = lesson_model(12);
    assert!(matches!(
        load_safetensors_bytes(&m, &to_safetensors_bytes(&f64_model).unwrap()),
        Err(Error::CheckpointDtype {
            expected: "float32",
            ..
        })
    ));
    check_unchanged(&m);

    // Corrupt and truncated.
    let m = lesson_model(12);
    for bad in [
        &bytes[..bytes.len() - 10],
        &bytes[..5],
        b"not a safetensors file at all".as_slice(),
    ] {
        assert!(matches!(
            load_safetensors_bytes(&m, bad),
            Err(Error::CheckpointFormat { .. })
        ));
    }
    let mut flipped = bytes.clone();
    flipped[9] ^= 0xFF;
    assert!(load_safetensors_bytes(&m, &flipped).is_err());
    check_unchanged(&m);

    // A missing file is an I/O error naming the path.
    let err = tapegrad::nn::load_safetensors(&m, "/nonexistent/model.safetensors").unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.contains("nonexistent")),
        "{err}"
    );
}
