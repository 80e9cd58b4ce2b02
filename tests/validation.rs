//! Settings are validated wherever they enter: constructors, setters, options and public fields.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::datasets::Digits;
use tapegrad::lesson::{LessonConfig, LessonData, manual_step, tape_step};
use tapegrad::nn::{Context, Forward, Linear, MSELoss, Module};
use tapegrad::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tapegrad::{Error, GradcheckOptions, Tape, Tensor, gradcheck, gradgradcheck};

/// An empty parameter list: enough to construct an optimizer and check its settings.
fn none() -> Vec<(String, tapegrad::Param<f32>)> {
    Vec::new()
}

fn invalid<T: std::fmt::Debug>(r: tapegrad::Result<T>, name: &str) -> bool {
    matches!(r, Err(Error::InvalidHyperparameter { name: n, .. }) if n == name)
}

#[test]
fn optimizer_settings_are_checked_at_construction() {
    for lr in [f64::NAN, -0.1, f64::INFINITY] {
        assert!(invalid(
            Sgd::<f32>::new(
                none(),
                SgdConfig {
                    lr,
                    ..Default::default()
                }
            ),
            "lr"
        ));
        assert!(invalid(
            Adam::<f32>::new(
                none(),
                AdamConfig {
                    lr,
                    ..Default::default()
                }
            ),
            "lr"
        ));
    }
    let sgd = |c: SgdConfig| Sgd::<f32>::new(none(), c);
    assert!(invalid(
        sgd(SgdConfig {
            dampening: f64::NAN,
            ..Default::default()
        }),
        "dampening"
    ));
    assert!(invalid(
        sgd(SgdConfig {
            momentum: f64::INFINITY,
            ..Default::default()
        }),
        "momentum"
    ));
    assert!(invalid(
        sgd(SgdConfig {
            momentum: f64::NAN,
            ..Default::default()
        }),
        "momentum"
    ));
    assert!(invalid(
        sgd(SgdConfig {
            weight_decay: f64::INFINITY,
            ..Default::default()
        }),
        "weight_decay"
    ));
    let adam = |c: AdamConfig| Adam::<f32>::new(none(), c);
    assert!(invalid(
        adam(AdamConfig {
            eps: f64::INFINITY,
            ..Default::default()
        }),
        "eps"
    ));
    assert!(invalid(
        adam(AdamConfig {
            eps: f64::NAN,
            ..Default::default()
        }),
        "eps"
    ));
    assert!(invalid(
        adam(AdamConfig {
            betas: (f64::NAN, 0.9),
            ..Default::default()
        }),
        "beta1"
    ));
    assert!(invalid(
        adam(AdamConfig {
            betas: (0.9, 1.0),
            ..Default::default()
        }),
        "beta2"
    ));
    assert!(invalid(
        adam(AdamConfig {
            weight_decay: f64::NAN,
            ..AdamConfig::adamw()
        }),
        "weight_decay"
    ));
}

#[test]
fn set_lr_is_checked_like_the_constructor_and_keeps_the_old_rate() {
    let mut sgd = Sgd::<f32>::new(
        none(),
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut adam = Adam::<f32>::new(none(), AdamConfig::default()).unwrap();
    for lr in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(invalid(sgd.set_lr(lr), "lr"));
        assert!(invalid(adam.set_lr(lr), "lr"));
    }
    assert_eq!(sgd.lr(), 0.1);
    assert_eq!(adam.lr(), 1e-3);
    sgd.set_lr(0.0).unwrap();
    assert_eq!(sgd.lr(), 0.0);
}

#[test]
fn pytorch_defaults() {
    // torch.optim.SGD's default learning rate is 1e-3 (PyTorch 2.x).
    assert_eq!(SgdConfig::default().lr, 1e-3);
    let adam = AdamConfig::default();
    assert_eq!(
        (adam.lr, adam.betas, adam.eps, adam.weight_decay),
        (1e-3, (0.9, 0.999), 1e-8, 0.0)
    );
    assert_eq!(AdamConfig::adamw().weight_decay, 1e-2);
}

#[test]
fn a_parameter_resized_after_the_optimizer_saw_it_is_a_state_error() {
    let mut rng = Pcg64::seed_from_u64(0);
    let grads_of = |model: &Linear<f32>| {
        let tape = Tape::new();
        let x = tape.constant(Tensor::ones(&[2, model.weight.shape().dims()[1]]).unwrap());
        let loss = model
            .forward(&mut Context::eval(), x)
            .unwrap()
            .sum()
            .unwrap();
        loss.backward().unwrap()
    };
    for which in 0..2 {
        let model = Linear::<f32>::new(3, 2, &mut rng).unwrap();
        let mut opt: Box<dyn Optimizer<f32>> = if which == 0 {
            let config = SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            };
            Box::new(Sgd::new(model.named_params(), config).unwrap())
        } else {
            Box::new(Adam::new(model.named_params(), AdamConfig::default()).unwrap())
        };
        opt.step(&grads_of(&model)).unwrap();
        // The same parameters, now of another shape.
        model.weight.set(Tensor::ones(&[2, 5]).unwrap());
        let err = opt.step(&grads_of(&model)).unwrap_err();
        assert!(
            matches!(&err, Error::StateShape { name, state, param, .. }
                if name == "weight" && state == &[2, 3] && param == &[2, 5]),
            "{err}"
        );
    }
}

#[test]
fn gradcheck_options_are_checked() {
    fn f<'t>(
        _: &'t Tape<f64>,
        v: &[tapegrad::Var<'t, f64>],
        _: &mut Pcg64,
    ) -> tapegrad::Result<tapegrad::Var<'t, f64>> {
        v[0].tanh()
    }
    let x = Tensor::from_vec(vec![0.5, -1.0], &[2]).unwrap();
    let bad = [
        (
            "eps",
            GradcheckOptions {
                eps: 0.0,
                ..Default::default()
            },
        ),
        (
            "eps",
            GradcheckOptions {
                eps: f64::NAN,
                ..Default::default()
            },
        ),
        (
            "eps",
            GradcheckOptions {
                eps: f64::INFINITY,
                ..Default::default()
            },
        ),
        (
            "eps",
            GradcheckOptions {
                eps: -1e-6,
                ..Default::default()
            },
        ),
        (
            "atol",
            GradcheckOptions {
                atol: -1.0,
                ..Default::default()
            },
        ),
        (
            "atol",
            GradcheckOptions {
                atol: f64::NAN,
                ..Default::default()
            },
        ),
        (
            "rtol",
            GradcheckOptions {
                rtol: f64::NAN,
                ..Default::default()
            },
        ),
        (
            "rtol",
            GradcheckOptions {
                rtol: -0.5,
                ..Default::default()
            },
        ),
    ];
    for (name, options) in bad {
        assert!(
            invalid(gradcheck(f, std::slice::from_ref(&x), &options), name),
            "{name}"
        );
        assert!(
            invalid(gradgradcheck(f, std::slice::from_ref(&x), &options), name),
            "{name}"
        );
        let fast = GradcheckOptions {
            fast: true,
            ..options
        };
        assert!(
            invalid(gradcheck(f, std::slice::from_ref(&x), &fast), name),
            "{name}"
        );
    }
}

#[test]
fn a_nan_error_is_reported_as_nan() {
    // sqrt(x) at 0 through log: the analytic gradient is ∞·0 = NaN somewhere; the report says so.
    let x = Tensor::from_vec(vec![1.0, 0.0], &[2]).unwrap();
    let err = gradcheck(
        |_, v, _| v[0].log()?.mul_scalar(0.0),
        &[x],
        &GradcheckOptions::default(),
    )
    .unwrap_err();
    let Error::GradcheckFailed(report) = err else {
        panic!("expected a failed check, got {err}");
    };
    assert!(report.inputs[0].max_abs_err.is_nan());
    assert!(report.to_string().contains("NaN"), "{report}");
}

#[test]
fn lesson_configs_and_batches_are_validated() {
    for config in [
        LessonConfig {
            k: 0,
            ..Default::default()
        },
        LessonConfig {
            n: 0,
            ..Default::default()
        },
        LessonConfig {
            h: 0,
            ..Default::default()
        },
        LessonConfig {
            weight_scale: f64::NAN,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                config.generate::<f32>(),
                Err(Error::InvalidHyperparameter { .. })
            ),
            "{config:?}"
        );
    }
    let (data, weights) = LessonConfig {
        n: 8,
        ..Default::default()
    }
    .generate::<f64>()
    .unwrap();
    let run = |data: &LessonData<f64>| {
        (
            manual_step(data, &weights, 0.5, &mut Pcg64::seed_from_u64(0)).map(|_| ()),
            tape_step(data, &weights, 0.5, &mut Pcg64::seed_from_u64(0)).map(|_| ()),
        )
    };
    let mut bad_label = data.clone();
    bad_label.labels[3] = 5; // K = 5 classes: 0..=4
    for r in <[_; 2]>::from(run(&bad_label)) {
        assert!(
            matches!(
                r,
                Err(Error::LabelOutOfRange {
                    position: 3,
                    label: 5,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let mut short = data.clone();
    short.labels.pop();
    for r in <[_; 2]>::from(run(&short)) {
        assert!(
            matches!(
                r,
                Err(Error::LabelCount {
                    labels: 7,
                    batch: 8,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let empty = LessonData {
        x: Tensor::zeros(&[0, 20]).unwrap(),
        labels: vec![],
    };
    for r in <[_; 2]>::from(run(&empty)) {
        assert!(matches!(r, Err(Error::EmptyBatch { .. })), "{r:?}");
    }
    let wrong_width = LessonData {
        x: Tensor::zeros(&[8, 7]).unwrap(),
        labels: data.labels.clone(),
    };
    for r in <[_; 2]>::from(run(&wrong_width)) {
        assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
    }
}

#[test]
fn digits_with_inconsistent_fields_are_an_error() {
    let mut digits = Digits::load_shipped().unwrap();
    digits.labels.pop();
    assert!(matches!(
        digits.subset::<f32>(&[0, 1]),
        Err(Error::BadData { .. })
    ));
    assert!(digits.split::<f32>(10, 0).is_err());
    let mut digits = Digits::load_shipped().unwrap();
    digits.labels[0] = 12;
    assert!(digits.subset::<f32>(&[0]).is_err());
    let mut digits = Digits::load_shipped().unwrap();
    digits.images[1][5] = 200;
    assert!(digits.subset::<f32>(&[1]).is_err());
    let digits = Digits::load_shipped().unwrap();
    assert!(matches!(
        digits.subset::<f32>(&[digits.len()]),
        Err(Error::IndexOutOfBounds { .. })
    ));
}

#[test]
fn a_data_file_that_is_not_utf8_names_its_line() {
    let dir = std::env::temp_dir().join(format!("tapegrad-validation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("digits.txt");
    let good = format!("# header\n7 {}\n", "0".repeat(64));
    let mut bytes = good.into_bytes();
    bytes.extend_from_slice(b"3 \xff\xfe");
    bytes.extend_from_slice("0".repeat(62).as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = Digits::load(&path).unwrap_err();
    assert!(matches!(err, Error::BadData { line: 3, .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mse_of_an_empty_batch_is_an_error_not_nan() {
    let tape = Tape::<f32>::new();
    let p = tape.leaf(Tensor::zeros(&[0, 3]).unwrap());
    let t = tape.constant(Tensor::zeros(&[0, 3]).unwrap());
    assert!(matches!(
        MSELoss::default().forward(p, t),
        Err(Error::EmptyBatch { .. })
    ));
}
