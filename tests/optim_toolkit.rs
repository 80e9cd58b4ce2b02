//! The optimizer and scheduler toolkit against PyTorch: RMSprop, Adagrad, AMSGrad and `maximize`
//! trajectories, every scheduler's lr sequence, gradient clipping (golden values from
//! `tests/golden/optim_toolkit.py`); optimizer and scheduler state saved and resumed
//! bit-identically; and every error case.

mod common;

use common::Golden;
use rand::SeedableRng;
use tapegrad::nn::StateDict;
use tapegrad::optim::lr_scheduler::{
    Anneal, CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, OneCycleConfig, OneCycleLR,
    PlateauConfig, PlateauMode, ReduceLROnPlateau, SequentialLR, StepLR, ThresholdMode,
};
use tapegrad::optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, GradAccumulator, GradSource, LrGroups, LrScheduler,
    Optimizer, ParamGroup, RMSprop, RMSpropConfig, Sgd, SgdConfig, clip_grad_norm, clip_grad_value,
};
use tapegrad::{Error, Float, Param, Tape, Tensor};

fn golden() -> Golden {
    Golden::open("optim_toolkit.safetensors")
}

/// Tolerances of the house: f32 rtol 1e-5 (atol 1e-6), f64 rtol 1e-12 (atol 1e-12).
fn tolerances<T: Float>() -> (f64, f64) {
    if T::BYTES == 4 {
        (1e-5, 1e-6)
    } else {
        (1e-12, 1e-12)
    }
}

fn assert_close_t<T: Float>(what: &str, got: &[T], want: &[T]) {
    let (rtol, atol) = tolerances::<T>();
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(
            (g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan()),
            "{what}, element {i}: got {g:e}, PyTorch {w:e}"
        );
    }
}

fn tag<T: Float>() -> &'static str {
    if T::BYTES == 4 { "f32" } else { "f64" }
}

fn golden_t<T: Float>(g: &Golden, name: &str) -> Tensor<T> {
    let (_, dtype, _) = g.raw(name);
    if dtype == safetensors::Dtype::F32 {
        g.f32(name).cast().unwrap()
    } else {
        g.f64(name).cast().unwrap()
    }
}

/// The two parameters of every optimizer case, at their initial values.
fn params<T: Float>(g: &Golden) -> (Param<T>, Param<T>) {
    (
        Param::new("weight", golden_t(g, "init.weight")),
        Param::new("bias", golden_t(g, "init.bias")),
    )
}

/// Step `t`'s slice of a `[steps, …]` tensor.
fn at<T: Float>(t: &Tensor<T>, step: usize, dims: &[usize]) -> Tensor<T> {
    let n: usize = dims.iter().product();
    Tensor::from_vec(t.data()[step * n..(step + 1) * n].to_vec(), dims).unwrap()
}

/// Runs one golden optimizer case: feeds the fixed gradients for every step and compares both
/// parameters after each step with PyTorch's.
fn check_case<T: Float>(
    case: &str,
    grouped: bool,
    make: impl FnOnce(Vec<ParamGroup<T>>) -> Box<dyn Optimizer<T>>,
) {
    check_scheduled_case(case, grouped, make, |_| None);
}

/// As [`check_case`], with a scheduler (if `schedule` makes one) stepped after each step.
fn check_scheduled_case<T: Float>(
    case: &str,
    grouped: bool,
    make: impl FnOnce(Vec<ParamGroup<T>>) -> Box<dyn Optimizer<T>>,
    schedule: impl FnOnce(&mut dyn Optimizer<T>) -> Option<Box<dyn LrScheduler>>,
) {
    let g = golden();
    let (w, b) = params::<T>(&g);
    let groups = if grouped {
        // Mirrors the script: the bias in its own group with half the lr and no weight decay.
        vec![
            ParamGroup::new(vec![("weight".to_string(), w.share())]),
            ParamGroup::new(vec![("bias".to_string(), b.share())]).weight_decay(0.0),
        ]
    } else {
        vec![ParamGroup::new(vec![
            ("weight".to_string(), w.share()),
            ("bias".to_string(), b.share()),
        ])]
    };
    let mut opt = make(groups);
    if grouped {
        let lrs = opt.lrs();
        opt.set_lrs(&[lrs[0], lrs[1] * 0.5]).unwrap();
    }
    let mut schedule = schedule(&mut *opt);
    let grads_w: Tensor<T> = golden_t(&g, "grads.weight");
    let grads_b: Tensor<T> = golden_t(&g, "grads.bias");
    let want_w: Tensor<T> = golden_t(&g, &format!("opt.{case}.{}.weight", tag::<T>()));
    let want_b: Tensor<T> = golden_t(&g, &format!("opt.{case}.{}.bias", tag::<T>()));
    let steps = want_w.dims()[0];
    assert_eq!(steps, 10);
    for t in 0..steps {
        let mut grads = GradAccumulator::new();
        grads.set(&w, at(&grads_w, t, &[3, 4]));
        grads.set(&b, at(&grads_b, t, &[4]));
        opt.step(&grads).unwrap();
        if let Some(s) = &mut schedule {
            s.step(&mut *opt).unwrap();
        }
        let what = format!("{case} ({}) step {}", tag::<T>(), t + 1);
        assert_close_t(
            &format!("{what} weight"),
            w.value().data(),
            at(&want_w, t, &[3, 4]).data(),
        );
        assert_close_t(
            &format!("{what} bias"),
            b.value().data(),
            at(&want_b, t, &[4]).data(),
        );
    }
}

fn rmsprop<T: Float>(c: RMSpropConfig) -> impl FnOnce(Vec<ParamGroup<T>>) -> Box<dyn Optimizer<T>> {
    move |p| Box::new(RMSprop::new(p, c).unwrap())
}

fn adagrad<T: Float>(c: AdagradConfig) -> impl FnOnce(Vec<ParamGroup<T>>) -> Box<dyn Optimizer<T>> {
    move |p| Box::new(Adagrad::new(p, c).unwrap())
}

fn adam<T: Float>(c: AdamConfig) -> impl FnOnce(Vec<ParamGroup<T>>) -> Box<dyn Optimizer<T>> {
    move |p| Box::new(Adam::new(p, c).unwrap())
}

fn all_optimizer_cases<T: Float>() {
    check_case::<T>("sgd_maximize", false, |p| {
        Box::new(
            Sgd::new(
                p,
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.05,
                    maximize: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    });
    let r = RMSpropConfig {
        lr: 0.01,
        ..Default::default()
    };
    check_case::<T>("rmsprop_default", false, rmsprop(r));
    check_case::<T>(
        "rmsprop_momentum",
        false,
        rmsprop(RMSpropConfig {
            alpha: 0.9,
            momentum: 0.9,
            ..r
        }),
    );
    check_case::<T>(
        "rmsprop_centered",
        false,
        rmsprop(RMSpropConfig {
            centered: true,
            ..r
        }),
    );
    check_case::<T>(
        "rmsprop_centered_momentum_wd",
        false,
        rmsprop(RMSpropConfig {
            lr: 0.02,
            alpha: 0.8,
            eps: 1e-6,
            centered: true,
            momentum: 0.5,
            weight_decay: 0.1,
            maximize: false,
        }),
    );
    check_case::<T>(
        "rmsprop_maximize",
        false,
        rmsprop(RMSpropConfig {
            momentum: 0.3,
            maximize: true,
            ..r
        }),
    );
    check_case::<T>(
        "rmsprop_groups",
        true,
        rmsprop(RMSpropConfig {
            weight_decay: 0.2,
            momentum: 0.5,
            ..r
        }),
    );
    let a = AdagradConfig {
        lr: 0.1,
        ..Default::default()
    };
    check_case::<T>("adagrad_default", false, adagrad(a));
    check_case::<T>(
        "adagrad_options",
        false,
        adagrad(AdagradConfig {
            lr_decay: 0.1,
            weight_decay: 0.05,
            initial_accumulator_value: 0.3,
            eps: 1e-8,
            ..a
        }),
    );
    check_case::<T>(
        "adagrad_maximize",
        false,
        adagrad(AdagradConfig {
            maximize: true,
            weight_decay: 0.1,
            ..a
        }),
    );
    check_case::<T>(
        "adagrad_groups",
        true,
        adagrad(AdagradConfig {
            weight_decay: 0.1,
            lr_decay: 0.05,
            ..a
        }),
    );
    let m = AdamConfig {
        lr: 0.01,
        ..Default::default()
    };
    check_case::<T>(
        "adam_amsgrad",
        false,
        adam(AdamConfig { amsgrad: true, ..m }),
    );
    check_case::<T>(
        "adam_amsgrad_wd",
        false,
        adam(AdamConfig {
            betas: (0.8, 0.9),
            amsgrad: true,
            weight_decay: 0.1,
            ..m
        }),
    );
    let w = AdamConfig {
        lr: 0.01,
        ..AdamConfig::adamw()
    };
    check_case::<T>(
        "adamw_amsgrad",
        false,
        adam(AdamConfig {
            amsgrad: true,
            weight_decay: 0.1,
            ..w
        }),
    );
    check_case::<T>(
        "adam_maximize",
        false,
        adam(AdamConfig {
            weight_decay: 0.1,
            maximize: true,
            ..m
        }),
    );
    check_case::<T>(
        "adamw_maximize_amsgrad",
        false,
        adam(AdamConfig {
            maximize: true,
            amsgrad: true,
            ..w
        }),
    );
    check_case::<T>(
        "adam_lerp_high_weight",
        false,
        adam(AdamConfig {
            betas: (0.3, 0.999),
            ..m
        }),
    );
    check_case::<T>(
        "adamw_groups",
        true,
        adam(AdamConfig {
            weight_decay: 0.1,
            amsgrad: true,
            ..w
        }),
    );
    // Under a 1cycle schedule that moves the lr and the momentum (β₁) at every step.
    check_scheduled_case::<T>(
        "adam_onecycle",
        false,
        adam(AdamConfig {
            betas: (0.9, 0.99),
            ..m
        }),
        |o| {
            let config = OneCycleConfig {
                max_lrs: vec![0.05],
                total_steps: 10,
                ..Default::default()
            };
            Some(Box::new(OneCycleLR::new(o, config).unwrap()))
        },
    );
    check_scheduled_case::<T>(
        "sgd_onecycle",
        false,
        |p| {
            let config = SgdConfig {
                lr: 0.01,
                momentum: 0.9,
                dampening: 0.1,
                ..Default::default()
            };
            Box::new(Sgd::new(p, config).unwrap())
        },
        |o| {
            let config = OneCycleConfig {
                max_lrs: vec![0.2],
                total_steps: 11,
                three_phase: true,
                anneal: Anneal::Linear,
                ..Default::default()
            };
            Some(Box::new(OneCycleLR::new(o, config).unwrap()))
        },
    );
}

#[test]
fn optimizer_trajectories_match_pytorch_f32() {
    all_optimizer_cases::<f32>();
}

#[test]
fn optimizer_trajectories_match_pytorch_f64() {
    all_optimizer_cases::<f64>();
}

// ---------------------------------------------------------------------------------------------
// Schedulers.

/// The SGD of the scheduler cases: two groups with lr 0.1 and 0.05.
fn two_group_sgd() -> Sgd<f64> {
    let p0 = Param::new("p0", Tensor::zeros(&[1]).unwrap());
    let p1 = Param::new("p1", Tensor::zeros(&[1]).unwrap());
    Sgd::new(
        vec![
            ParamGroup::new(vec![("p0".to_string(), p0)]).lr(0.1),
            ParamGroup::new(vec![("p1".to_string(), p1)]).lr(0.05),
        ],
        SgdConfig::default(),
    )
    .unwrap()
}

/// Compares a recorded lr sequence (`[steps + 1, groups]`) with PyTorch's, to the last bit.
fn assert_lrs(case: &str, got: &[Vec<f64>]) {
    let want = golden().f64(&format!("sched.{case}"));
    let groups = want.dims()[1];
    assert_eq!(got.len(), want.dims()[0], "{case}: number of steps");
    for (t, lrs) in got.iter().enumerate() {
        for (k, &lr) in lrs.iter().enumerate() {
            let w = want.data()[t * groups + k];
            assert!(
                lr == w,
                "{case}: step {t}, group {k}: got {lr:e}, PyTorch {w:e} (diff {:e})",
                lr - w
            );
        }
    }
}

/// Builds a scheduler with `make`, steps it 40 times, and compares the lrs.
fn check_schedule(case: &str, make: impl FnOnce(&mut Sgd<f64>) -> Box<dyn LrScheduler>) {
    let mut sgd = two_group_sgd();
    let mut s = make(&mut sgd);
    let mut lrs = vec![sgd.lrs()];
    for _ in 0..40 {
        s.step(&mut sgd).unwrap();
        assert_eq!(s.last_lrs(), sgd.lrs().as_slice());
        lrs.push(sgd.lrs());
    }
    assert_eq!(s.last_epoch(), 40);
    assert_lrs(case, &lrs);
}

#[test]
fn epoch_schedulers_match_pytorch_bit_for_bit() {
    check_schedule("step", |o| Box::new(StepLR::new(o, 7, 0.5).unwrap()));
    check_schedule("multistep", |o| {
        Box::new(MultiStepLR::new(o, &[5, 12, 12, 25], 0.3).unwrap())
    });
    check_schedule("exponential", |o| {
        Box::new(ExponentialLR::new(o, 0.9).unwrap())
    });
    check_schedule("cosine", |o| {
        Box::new(CosineAnnealingLR::new(o, 10, 0.001).unwrap())
    });
    check_schedule("cosine_long", |o| {
        Box::new(CosineAnnealingLR::new(o, 35, 0.0).unwrap())
    });
    check_schedule("linear", |o| {
        Box::new(LinearLR::new(o, 0.25, 1.0, 8).unwrap())
    });
    check_schedule("linear_down", |o| {
        Box::new(LinearLR::new(o, 1.0, 0.1, 20).unwrap())
    });
}

#[test]
fn one_cycle_matches_pytorch_bit_for_bit() {
    let base = OneCycleConfig {
        max_lrs: vec![1.0, 0.5],
        total_steps: 40,
        cycle_momentum: false,
        ..Default::default()
    };
    let cos = base.clone();
    check_schedule("onecycle_cos", move |o| {
        Box::new(OneCycleLR::new(o, cos).unwrap())
    });
    // Stepping a linear cycle past its last step extrapolates below zero (PyTorch sets a
    // negative lr there, this refuses it), so this cycle is one step longer than the run.
    let linear = OneCycleConfig {
        max_lrs: vec![0.8],
        total_steps: 41,
        pct_start: 0.25,
        anneal: Anneal::Linear,
        div_factor: 10.0,
        final_div_factor: 100.0,
        ..base.clone()
    };
    check_schedule("onecycle_linear", move |o| {
        Box::new(OneCycleLR::new(o, linear).unwrap())
    });
    let three = OneCycleConfig {
        three_phase: true,
        ..base
    };
    check_schedule("onecycle_three_phase", move |o| {
        Box::new(OneCycleLR::new(o, three).unwrap())
    });
}

#[test]
fn one_cycle_momentum_matches_pytorch_bit_for_bit() {
    // SGD's momentum.
    let p0 = Param::new("p0", Tensor::<f64>::zeros(&[1]).unwrap());
    let p1 = Param::new("p1", Tensor::<f64>::zeros(&[1]).unwrap());
    let groups = || {
        vec![
            ParamGroup::new(vec![("p0".to_string(), p0.share())]).lr(0.1),
            ParamGroup::new(vec![("p1".to_string(), p1.share())]).lr(0.05),
        ]
    };
    let config = SgdConfig {
        momentum: 0.9,
        ..Default::default()
    };
    let mut sgd = Sgd::new(groups(), config).unwrap();
    let one = OneCycleConfig {
        max_lrs: vec![1.0, 0.5],
        total_steps: 40,
        base_momentum: 0.8,
        max_momentum: 0.9,
        ..Default::default()
    };
    let mut s = OneCycleLR::new(&mut sgd, one).unwrap();
    let (mut lrs, mut moms) = (vec![sgd.lrs()], vec![sgd.group_momentums().unwrap()]);
    for _ in 0..40 {
        s.step(&mut sgd).unwrap();
        lrs.push(sgd.lrs());
        moms.push(sgd.group_momentums().unwrap());
    }
    assert_lrs("onecycle_momentum_sgd", &lrs);
    assert_lrs("onecycle_momentum_sgd.momentum", &moms);
    // Adam's β₁, three phases, linear.
    let mut adam = Adam::new(groups(), AdamConfig::default()).unwrap();
    let one = OneCycleConfig {
        max_lrs: vec![0.3],
        total_steps: 41,
        anneal: Anneal::Linear,
        three_phase: true,
        ..Default::default()
    };
    let mut s = OneCycleLR::new(&mut adam, one).unwrap();
    let (mut lrs, mut moms) = (vec![adam.lrs()], vec![adam.group_momentums().unwrap()]);
    for _ in 0..40 {
        s.step(&mut adam).unwrap();
        lrs.push(adam.lrs());
        moms.push(adam.group_momentums().unwrap());
    }
    assert_lrs("onecycle_momentum_adam", &lrs);
    assert_lrs("onecycle_momentum_adam.momentum", &moms);
    // The optimizer saves the group momentum with its state.
    let sd = adam.state_dict().unwrap();
    assert_eq!(
        sd.metadata["group.0.momentum"].parse::<f64>().unwrap(),
        moms[40][0]
    );
}

#[test]
fn sequential_matches_pytorch_bit_for_bit() {
    check_schedule("sequential", |o| {
        let warmup = LinearLR::new(o, 0.1, 1.0, 5).unwrap();
        let cosine = CosineAnnealingLR::new(o, 20, 0.001).unwrap();
        Box::new(SequentialLR::new(o, vec![Box::new(warmup), Box::new(cosine)], vec![5]).unwrap())
    });
    check_schedule("sequential3", |o| {
        let a = ExponentialLR::new(o, 0.9).unwrap();
        let b = StepLR::new(o, 3, 0.5).unwrap();
        let c = CosineAnnealingLR::new(o, 10, 0.0).unwrap();
        Box::new(
            SequentialLR::new(o, vec![Box::new(a), Box::new(b), Box::new(c)], vec![6, 15]).unwrap(),
        )
    });
}

fn plateau_configs() -> Vec<(&'static str, PlateauConfig)> {
    vec![
        (
            "plateau_min_rel",
            PlateauConfig {
                factor: 0.5,
                patience: 2,
                ..Default::default()
            },
        ),
        (
            "plateau_min_abs_cooldown",
            PlateauConfig {
                factor: 0.5,
                patience: 1,
                threshold: 0.01,
                threshold_mode: ThresholdMode::Abs,
                cooldown: 3,
                min_lrs: vec![0.01, 0.02],
                ..Default::default()
            },
        ),
        (
            "plateau_max_rel",
            PlateauConfig {
                mode: PlateauMode::Max,
                factor: 0.3,
                patience: 3,
                threshold: 0.05,
                ..Default::default()
            },
        ),
        (
            "plateau_max_abs_min_lr",
            PlateauConfig {
                mode: PlateauMode::Max,
                factor: 0.1,
                patience: 0,
                threshold_mode: ThresholdMode::Abs,
                min_lrs: vec![0.004],
                eps: 1e-3,
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn reduce_on_plateau_matches_pytorch_bit_for_bit() {
    let metrics = golden().f64("plateau.metrics");
    for (case, config) in plateau_configs() {
        let mut sgd = two_group_sgd();
        let mut s = ReduceLROnPlateau::new(&mut sgd, config).unwrap();
        let mut lrs = vec![sgd.lrs()];
        for &m in metrics.data() {
            s.step(&mut sgd, m).unwrap();
            lrs.push(sgd.lrs());
        }
        assert_lrs(case, &lrs);
    }
}

// ---------------------------------------------------------------------------------------------
// Clipping.

fn clip_setup<T: Float>(g: &Golden) -> (Vec<Param<T>>, GradAccumulator<T>) {
    let mut grads = GradAccumulator::new();
    let mut params = vec![];
    for i in 0..3 {
        let grad: Tensor<T> = golden_t(g, &format!("clip.grad{i}"));
        let p = Param::new(format!("p{i}"), grad.zeros_like().unwrap());
        grads.set(&p, grad);
        params.push(p);
    }
    (params, grads)
}

fn clip_cases<T: Float>() {
    let g = golden();
    for (norm_type, ntag) in [(2.0, "2"), (1.0, "1"), (f64::INFINITY, "inf"), (3.0, "3")] {
        for (max_norm, mtag) in [(1.0, "clip"), (100.0, "noclip")] {
            let (params, mut grads) = clip_setup::<T>(&g);
            let total = clip_grad_norm(&mut grads, &params, max_norm, norm_type, true).unwrap();
            let key = format!("clip.{}.norm{ntag}.{mtag}", tag::<T>());
            let want: Tensor<T> = golden_t(&g, &format!("{key}.total"));
            assert_close_t(&format!("{key} total"), &[total], want.data());
            for (i, p) in params.iter().enumerate() {
                let want: Tensor<T> = golden_t(&g, &format!("{key}.grad{i}"));
                assert_close_t(
                    &format!("{key} grad{i}"),
                    grads.grad(p).unwrap().data(),
                    want.data(),
                );
            }
        }
    }
    let (params, mut grads) = clip_setup::<T>(&g);
    clip_grad_value(&mut grads, &params, 0.5).unwrap();
    for (i, p) in params.iter().enumerate() {
        let want: Tensor<T> = golden_t(&g, &format!("clip.{}.value.grad{i}", tag::<T>()));
        assert_close_t(
            &format!("clip_grad_value grad{i}"),
            grads.grad(p).unwrap().data(),
            want.data(),
        );
    }
}

#[test]
fn clipping_matches_pytorch() {
    clip_cases::<f32>();
    clip_cases::<f64>();
}

#[test]
fn clipping_works_on_the_gradients_of_a_backward_pass() {
    let w = Param::new("w", Tensor::from_vec(vec![3.0f64, 4.0], &[2]).unwrap());
    let tape = Tape::new();
    let x = tape.param(&w);
    // d(½‖w‖²)/dw = w = (3, 4): norm 5.
    let mut grads = x.mul(x).unwrap().sum().unwrap().backward().unwrap();
    let total = clip_grad_norm(&mut grads, [&w], 2.5, 2.0, false).unwrap();
    assert_eq!(total, 10.0); // the gradient of Σw² is 2w = (6, 8)
    let coef = 2.5 / (10.0 + 1e-6);
    assert_eq!(grads.param(&w).unwrap().data(), &[6.0 * coef, 8.0 * coef]);
    // A parameter listed twice (shared) is clipped once.
    let mut acc = GradAccumulator::new();
    acc.set(&w, Tensor::from_vec(vec![6.0, 8.0], &[2]).unwrap());
    let total = clip_grad_norm(&mut acc, [&w, &w], 2.5, 2.0, false).unwrap();
    assert_eq!(total, 10.0);
    assert_eq!(acc.grad(&w).unwrap().data(), &[6.0 * coef, 8.0 * coef]);
    // No gradients at all: norm 0.
    let mut empty = GradAccumulator::<f64>::new();
    assert_eq!(
        clip_grad_norm(&mut empty, [&w], 1.0, 2.0, true).unwrap(),
        0.0
    );
}

#[test]
fn clipping_errors_and_non_finite_norms() {
    let w = Param::new("w", Tensor::from_vec(vec![0.0f64; 3], &[3]).unwrap());
    let mut grads = GradAccumulator::new();
    grads.set(
        &w,
        Tensor::from_vec(vec![1.0, f64::INFINITY, 2.0], &[3]).unwrap(),
    );
    for (max_norm, norm_type, name) in [
        (-1.0, 2.0, "max_norm"),
        (f64::NAN, 2.0, "max_norm"),
        (1.0, 0.0, "norm_type"),
        (1.0, -2.0, "norm_type"),
        (1.0, f64::NAN, "norm_type"),
    ] {
        let e = clip_grad_norm(&mut grads, [&w], max_norm, norm_type, false).unwrap_err();
        assert!(
            matches!(e, Error::InvalidHyperparameter { op: "clip_grad_norm", name: n, .. } if n == name),
            "{e}"
        );
    }
    // error_if_nonfinite: an error, and the gradients untouched.
    let e = clip_grad_norm(&mut grads, [&w], 1.0, 2.0, true).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                op: "clip_grad_norm",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(grads.grad(&w).unwrap().data(), &[1.0, f64::INFINITY, 2.0]);
    // Without it, PyTorch scales anyway: coef = 1/(∞ + 1e-6) = 0, and ∞·0 = NaN.
    let total = clip_grad_norm(&mut grads, [&w], 1.0, 2.0, false).unwrap();
    assert!(total.is_infinite());
    let g = grads.grad(&w).unwrap().data().to_vec();
    assert!(g[0] == 0.0 && g[1].is_nan() && g[2] == 0.0, "{g:?}");
    // A NaN gradient makes the norm NaN, for every norm type.
    for p in [1.0, 2.0, 3.0, f64::INFINITY] {
        let mut grads = GradAccumulator::new();
        grads.set(
            &w,
            Tensor::from_vec(vec![1.0, f64::NAN, 2.0], &[3]).unwrap(),
        );
        assert!(
            clip_grad_norm(&mut grads, [&w], 1.0, p, false)
                .unwrap()
                .is_nan()
        );
    }
    let e = clip_grad_value(&mut grads, [&w], -0.5).unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidHyperparameter {
            op: "clip_grad_value",
            name: "clip_value",
            ..
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// Saving and resuming.

/// A scheduler of either kind.
enum Schedule {
    Epoch(Box<dyn LrScheduler>),
    Plateau(ReduceLROnPlateau),
}

impl Schedule {
    fn step(&mut self, opt: &mut dyn Optimizer<f32>, loss: f64) {
        match self {
            Schedule::Epoch(s) => s.step(opt).unwrap(),
            Schedule::Plateau(s) => s.step(opt, loss).unwrap(),
        }
    }

    fn save(&self, sd: &mut StateDict<f32>) {
        let state = match self {
            Schedule::Epoch(s) => s.state_dict(),
            Schedule::Plateau(s) => s.state_dict(),
        };
        for (k, v) in state {
            sd.metadata.insert(format!("scheduler.{k}"), v);
        }
    }

    fn load(&mut self, sd: &StateDict<f32>) {
        let state = sd
            .metadata
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("scheduler.")?.to_string(), v.clone())))
            .collect();
        match self {
            Schedule::Epoch(s) => s.load_state_dict(&state).unwrap(),
            Schedule::Plateau(s) => s.load_state_dict(&state).unwrap(),
        }
    }
}

type MakeOpt = fn(Vec<ParamGroup<f32>>) -> Box<dyn Optimizer<f32>>;
type MakeSchedule = fn(&mut dyn Optimizer<f32>) -> Schedule;

/// A linear regression with a weight (decayed) and a bias (not), in two groups.
struct Model {
    weight: Param<f32>,
    bias: Param<f32>,
}

impl Model {
    fn new(seed: u64) -> Model {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        Model {
            weight: Param::new(
                "weight",
                Tensor::normal(&[4, 3], 0.0, 0.5, &mut rng).unwrap(),
            ),
            bias: Param::new("bias", Tensor::normal(&[3], 0.0, 0.5, &mut rng).unwrap()),
        }
    }

    fn groups(&self) -> Vec<ParamGroup<f32>> {
        vec![
            ParamGroup::new(vec![("weight".to_string(), self.weight.share())]),
            ParamGroup::new(vec![("bias".to_string(), self.bias.share())])
                .lr(0.02)
                .weight_decay(0.0),
        ]
    }

    /// One training step: loss, backward, clipping, optimizer step, scheduler step.
    fn train_step(&self, step: usize, opt: &mut dyn Optimizer<f32>, schedule: &mut Schedule) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1000 + step as u64);
        let x = Tensor::normal(&[8, 4], 0.0, 1.0, &mut rng).unwrap();
        let y = Tensor::normal(&[8, 3], 0.0, 1.0, &mut rng).unwrap();
        let tape = Tape::new();
        let pred = tape
            .constant(x)
            .matmul(tape.param(&self.weight))
            .unwrap()
            .add(tape.param(&self.bias))
            .unwrap();
        let err = pred.sub(tape.constant(y)).unwrap();
        let loss = err.mul(err).unwrap().mean().unwrap();
        let value = loss.value().item().unwrap() as f64;
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, opt.params(), 0.5, 2.0, true).unwrap();
        opt.step(&grads).unwrap();
        schedule.step(opt, value);
    }

    fn values(&self) -> Vec<f32> {
        let mut v = self.weight.value().data().to_vec();
        v.extend_from_slice(self.bias.value().data());
        v
    }
}

/// Trains 2k steps straight; then k steps, a save to files, a load into a fresh model,
/// optimizer and scheduler, and k more: the parameters must be bit-identical.
fn check_resume(what: &str, make_opt: MakeOpt, make_schedule: MakeSchedule) {
    let k = 10;
    let straight = Model::new(1);
    let mut opt = make_opt(straight.groups());
    let mut schedule = make_schedule(&mut *opt);
    for step in 0..2 * k {
        straight.train_step(step, &mut *opt, &mut schedule);
    }
    let straight_lrs = opt.lrs();

    let dir = std::env::temp_dir().join(format!("tapegrad-optim-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (model_path, optim_path) = (
        dir.join(format!("{what}.model")),
        dir.join(format!("{what}.optim")),
    );
    {
        let first = Model::new(1);
        let mut opt = make_opt(first.groups());
        let mut schedule = make_schedule(&mut *opt);
        for step in 0..k {
            first.train_step(step, &mut *opt, &mut schedule);
        }
        let mut model = StateDict::new();
        model.insert("weight", first.weight.value());
        model.insert("bias", first.bias.value());
        model.save(&model_path).unwrap();
        let mut optim = opt.state_dict().unwrap();
        schedule.save(&mut optim);
        optim.save(&optim_path).unwrap();
    }
    // A fresh process, as far as the optimizer can tell: new parameters (new ids, other values).
    let resumed = Model::new(2);
    let model = StateDict::<f32>::load(&model_path).unwrap();
    resumed
        .weight
        .set(model.get("weight").unwrap().try_clone().unwrap());
    resumed
        .bias
        .set(model.get("bias").unwrap().try_clone().unwrap());
    let mut opt = make_opt(resumed.groups());
    let mut schedule = make_schedule(&mut *opt);
    let optim = StateDict::load(&optim_path).unwrap();
    opt.load_state_dict(&optim).unwrap();
    schedule.load(&optim);
    for step in k..2 * k {
        resumed.train_step(step, &mut *opt, &mut schedule);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(opt.lrs(), straight_lrs, "{what}: learning rates");
    let (a, b) = (straight.values(), resumed.values());
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{what}: resumed parameters differ from uninterrupted training:\n{a:?}\n{b:?}"
    );
}

#[test]
fn training_resumes_bit_identically_from_saved_state() {
    fn warmup_cosine(o: &mut dyn Optimizer<f32>) -> Schedule {
        let w = LinearLR::new(o, 0.2, 1.0, 4).unwrap();
        let c = CosineAnnealingLR::new(o, 30, 1e-4).unwrap();
        Schedule::Epoch(Box::new(
            SequentialLR::new(o, vec![Box::new(w), Box::new(c)], vec![4]).unwrap(),
        ))
    }
    fn one_cycle(o: &mut dyn Optimizer<f32>) -> Schedule {
        let config = OneCycleConfig {
            max_lrs: vec![0.1, 0.05],
            total_steps: 25,
            ..Default::default()
        };
        Schedule::Epoch(Box::new(OneCycleLR::new(o, config).unwrap()))
    }
    fn plateau(o: &mut dyn Optimizer<f32>) -> Schedule {
        let config = PlateauConfig {
            patience: 0,
            factor: 0.7,
            threshold: 0.5,
            ..Default::default()
        };
        Schedule::Plateau(ReduceLROnPlateau::new(o, config).unwrap())
    }
    fn step_lr(o: &mut dyn Optimizer<f32>) -> Schedule {
        Schedule::Epoch(Box::new(StepLR::new(o, 3, 0.8).unwrap()))
    }
    check_resume(
        "adamw_amsgrad",
        |g| {
            Box::new(
                Adam::new(
                    g,
                    AdamConfig {
                        lr: 0.05,
                        amsgrad: true,
                        ..AdamConfig::adamw()
                    },
                )
                .unwrap(),
            )
        },
        warmup_cosine,
    );
    check_resume(
        "rmsprop_centered_momentum",
        |g| {
            Box::new(
                RMSprop::new(
                    g,
                    RMSpropConfig {
                        lr: 0.01,
                        momentum: 0.5,
                        centered: true,
                        weight_decay: 0.01,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        },
        one_cycle,
    );
    check_resume(
        "adagrad",
        |g| {
            Box::new(
                Adagrad::new(
                    g,
                    AdagradConfig {
                        lr: 0.1,
                        lr_decay: 0.01,
                        weight_decay: 0.01,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        },
        plateau,
    );
    check_resume(
        "sgd_nesterov",
        |g| {
            Box::new(
                Sgd::new(
                    g,
                    SgdConfig {
                        lr: 0.05,
                        momentum: 0.9,
                        nesterov: true,
                        weight_decay: 0.01,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        },
        step_lr,
    );
}

#[test]
fn state_dict_is_keyed_by_name_with_pytorch_buffer_names() {
    let model = Model::new(3);
    let mut adam = Adam::new(
        model.groups(),
        AdamConfig {
            amsgrad: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut grads = GradAccumulator::new();
    grads.set(&model.weight, Tensor::full(&[4, 3], 0.5).unwrap());
    adam.step(&grads).unwrap(); // only the weight has a gradient: only it has state
    let sd = adam.state_dict().unwrap();
    let mut names: Vec<&str> = sd.names().collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "state.weight.exp_avg",
            "state.weight.exp_avg_sq",
            "state.weight.max_exp_avg_sq"
        ]
    );
    assert_eq!(sd.metadata["state.weight.step"], "1");
    assert_eq!(sd.metadata["optimizer"], "Adam");
    assert_eq!(sd.metadata["hyper.amsgrad"], "true");
    assert_eq!(sd.metadata["group.1.lr"], "0.02");
    assert_eq!(sd.metadata["group.1.param.0"], "bias");
    // m = 0.1·0.5 after one step.
    assert!(
        sd.get("state.weight.exp_avg")
            .unwrap()
            .data()
            .iter()
            .all(|&m| m == 0.1f32 * 0.5)
    );
}

/// An optimizer that has taken a step, and its state.
fn stepped_rmsprop(model: &Model) -> (RMSprop<f32>, StateDict<f32>) {
    let mut opt = RMSprop::new(
        model.groups(),
        RMSpropConfig {
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let mut schedule = Schedule::Epoch(Box::new(ExponentialLR::new(&mut opt, 0.9).unwrap()));
    model.train_step(0, &mut opt, &mut schedule);
    let sd = opt.state_dict().unwrap();
    (opt, sd)
}

#[test]
fn loading_a_bad_state_is_an_error_and_changes_nothing() {
    let model = Model::new(4);
    let (_, good) = stepped_rmsprop(&model);

    // The victim: a fresh optimizer with other settings; every failed load must leave it as is.
    let fresh = || {
        RMSprop::new(
            model.groups(),
            RMSpropConfig {
                lr: 0.5,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let unchanged = |opt: &RMSprop<f32>| {
        assert_eq!(opt.lrs(), vec![0.5, 0.02]);
        assert_eq!(opt.config().momentum, 0.0);
        assert_eq!(opt.state_dict().unwrap().len(), 0);
    };

    // Another optimizer's state.
    let adam_sd = Adam::<f32>::new(model.groups(), AdamConfig::default())
        .unwrap()
        .state_dict()
        .unwrap();
    let mut opt = fresh();
    let e = opt.load_state_dict(&adam_sd).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { op: "RMSprop", .. }),
        "{e}"
    );
    unchanged(&opt);

    // A buffer missing.
    let mut sd = StateDict::new();
    sd.metadata = good.metadata.clone();
    for name in good.names().filter(|n| *n != "state.bias.momentum_buffer") {
        sd.insert(name, good.get(name).unwrap().clone());
    }
    let e = opt.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(&e, Error::CheckpointMissing { name } if name == "state.bias.momentum_buffer"),
        "{e}"
    );
    unchanged(&opt);

    // A buffer of the wrong shape.
    let mut sd = good.clone();
    sd.insert(
        "state.weight.square_avg",
        std::sync::Arc::new(Tensor::zeros(&[3, 4]).unwrap()),
    );
    let e = opt.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(&e, Error::CheckpointShape { name, .. } if name == "state.weight.square_avg"),
        "{e}"
    );
    unchanged(&opt);

    // An extra tensor.
    let mut sd = good.clone();
    sd.insert(
        "state.weight.grad_avg",
        std::sync::Arc::new(Tensor::zeros(&[4, 3]).unwrap()),
    );
    let e = opt.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(&e, Error::CheckpointUnexpected { name } if name == "state.weight.grad_avg"),
        "{e}"
    );
    unchanged(&opt);

    // Parameters of other names: a model whose parameters are called differently.
    let other = RMSprop::new(
        vec![
            ParamGroup::new(vec![("linear.weight".to_string(), model.weight.share())]),
            ParamGroup::new(vec![("linear.bias".to_string(), model.bias.share())]),
        ],
        RMSpropConfig::default(),
    );
    let e = other.unwrap().load_state_dict(&good).unwrap_err();
    assert!(matches!(e, Error::CheckpointMissing { .. }), "{e}");

    // A different group structure.
    let mut one_group = RMSprop::new(
        vec![ParamGroup::new(vec![
            ("weight".to_string(), model.weight.share()),
            ("bias".to_string(), model.bias.share()),
        ])],
        RMSpropConfig::default(),
    )
    .unwrap();
    let e = one_group.load_state_dict(&good).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");

    // A corrupt hyper-parameter.
    let mut sd = good.clone();
    sd.metadata.insert("hyper.alpha".into(), "1.5".into());
    let e = opt.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidHyperparameter {
                op: "RMSprop",
                name: "alpha",
                ..
            }
        ),
        "{e}"
    );
    unchanged(&opt);
    let mut sd = good.clone();
    sd.metadata
        .insert("state.weight.step".into(), "many".into());
    assert!(opt.load_state_dict(&sd).is_err());
    unchanged(&opt);

    // And the good one loads: settings, lrs (including the scheduler's initial lr) and state.
    opt.load_state_dict(&good).unwrap();
    assert_eq!(opt.config().momentum, 0.9);
    assert_eq!(opt.lrs(), vec![0.01 * 0.9, 0.02 * 0.9]);
    assert_eq!(
        tapegrad::optim::LrGroups::initial_lrs(&opt),
        vec![Some(0.01), Some(0.02)]
    );
    assert_eq!(opt.state_dict().unwrap().len(), 4);
}

#[test]
fn scheduler_state_round_trips_and_rejects_another_kind() {
    let mut sgd = two_group_sgd();
    let mut cosine = CosineAnnealingLR::new(&mut sgd, 10, 0.0).unwrap();
    for _ in 0..3 {
        cosine.step(&mut sgd).unwrap();
    }
    let state = cosine.state_dict();
    assert_eq!(state["last_epoch"], "3");
    let mut step = StepLR::new(&mut two_group_sgd(), 2, 0.5).unwrap();
    let e = step.load_state_dict(&state).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument { op: "StepLR", .. }),
        "{e}"
    );
    assert_eq!(step.last_epoch(), 0);
    let mut again = CosineAnnealingLR::new(&mut two_group_sgd(), 10, 0.0).unwrap();
    again.load_state_dict(&state).unwrap();
    assert_eq!(again.last_epoch(), 3);
    assert_eq!(again.last_lrs(), cosine.last_lrs());
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn hyper_error<T: std::fmt::Debug>(r: tapegrad::Result<T>, op: &str, name: &str) {
    match r {
        Err(Error::InvalidHyperparameter { op: o, name: n, .. }) if o == op && n == name => {}
        other => panic!("{op}.{name}: expected InvalidHyperparameter, got {other:?}"),
    }
}

#[test]
fn every_hyperparameter_is_validated() {
    let p = || {
        vec![(
            "w".to_string(),
            Param::new("w", Tensor::<f32>::zeros(&[2]).unwrap()),
        )]
    };
    let r = RMSpropConfig::default();
    for (config, name) in [
        (RMSpropConfig { lr: -1.0, ..r }, "lr"),
        (RMSpropConfig { lr: f64::NAN, ..r }, "lr"),
        (RMSpropConfig { alpha: 1.5, ..r }, "alpha"),
        (RMSpropConfig { alpha: -0.1, ..r }, "alpha"),
        (RMSpropConfig { eps: f64::NAN, ..r }, "eps"),
        (
            RMSpropConfig {
                momentum: -0.5,
                ..r
            },
            "momentum",
        ),
        (
            RMSpropConfig {
                weight_decay: f64::INFINITY,
                ..r
            },
            "weight_decay",
        ),
    ] {
        hyper_error(RMSprop::new(p(), config), "RMSprop", name);
    }
    let a = AdagradConfig::default();
    for (config, name) in [
        (AdagradConfig { lr: -0.1, ..a }, "lr"),
        (
            AdagradConfig {
                lr_decay: -1.0,
                ..a
            },
            "lr_decay",
        ),
        (
            AdagradConfig {
                weight_decay: -1.0,
                ..a
            },
            "weight_decay",
        ),
        (
            AdagradConfig {
                initial_accumulator_value: -1.0,
                ..a
            },
            "initial_accumulator_value",
        ),
        (AdagradConfig { eps: -1e-10, ..a }, "eps"),
    ] {
        hyper_error(Adagrad::new(p(), config), "Adagrad", name);
    }
    hyper_error(
        Adam::new(
            p(),
            AdamConfig {
                betas: (1.0, 0.9),
                amsgrad: true,
                ..Default::default()
            },
        ),
        "Adam",
        "beta1",
    );
    hyper_error(
        Adam::new(
            p(),
            AdamConfig {
                eps: -1.0,
                maximize: true,
                ..AdamConfig::adamw()
            },
        ),
        "AdamW",
        "eps",
    );
    // A group's own lr and weight decay are checked too.
    hyper_error(
        RMSprop::new(vec![ParamGroup::new(p()).lr(-1.0)], r),
        "RMSprop",
        "lr",
    );
    hyper_error(
        Adagrad::new(vec![ParamGroup::new(p()).weight_decay(f64::NAN)], a),
        "Adagrad",
        "weight_decay",
    );
    let mut rms = RMSprop::new(p(), r).unwrap();
    hyper_error(rms.set_lrs(&[f64::INFINITY]), "RMSprop", "lr");
    assert!(matches!(
        rms.set_lrs(&[0.1, 0.2]),
        Err(Error::ArgumentCount { op: "RMSprop", .. })
    ));
    // Two parameters of one name.
    let w = Param::new("w", Tensor::<f32>::zeros(&[2]).unwrap());
    let dup = vec![("w".to_string(), w.share()), ("w".to_string(), w.share())];
    assert!(matches!(
        Adagrad::new(dup, a),
        Err(Error::DuplicateName { op: "Adagrad", .. })
    ));
    // A gradient of the wrong shape.
    let w = Param::new("w", Tensor::<f32>::zeros(&[2]).unwrap());
    let mut adagrad = Adagrad::new(vec![("w".to_string(), w.share())], a).unwrap();
    let mut grads = GradAccumulator::new();
    grads.set(&w, Tensor::zeros(&[3]).unwrap());
    assert!(matches!(
        adagrad.step(&grads),
        Err(Error::ShapeMismatch { op: "Adagrad", .. })
    ));
}

#[test]
fn scheduler_settings_are_validated() {
    let mut sgd = two_group_sgd();
    hyper_error(StepLR::new(&mut sgd, 0, 0.1), "StepLR", "step_size");
    hyper_error(StepLR::new(&mut sgd, 3, -0.1), "StepLR", "gamma");
    hyper_error(
        MultiStepLR::new(&mut sgd, &[2], f64::NAN),
        "MultiStepLR",
        "gamma",
    );
    hyper_error(
        ExponentialLR::new(&mut sgd, f64::INFINITY),
        "ExponentialLR",
        "gamma",
    );
    hyper_error(
        CosineAnnealingLR::new(&mut sgd, 0, 0.0),
        "CosineAnnealingLR",
        "T_max",
    );
    hyper_error(
        CosineAnnealingLR::new(&mut sgd, 5, -1.0),
        "CosineAnnealingLR",
        "eta_min",
    );
    hyper_error(
        LinearLR::new(&mut sgd, 0.0, 1.0, 5),
        "LinearLR",
        "start_factor",
    );
    hyper_error(
        LinearLR::new(&mut sgd, 0.5, 1.5, 5),
        "LinearLR",
        "end_factor",
    );
    hyper_error(
        LinearLR::new(&mut sgd, 0.5, 1.0, 0),
        "LinearLR",
        "total_iters",
    );
    let one = OneCycleConfig {
        max_lrs: vec![0.1],
        total_steps: 10,
        cycle_momentum: false,
        ..Default::default()
    };
    hyper_error(
        OneCycleLR::new(
            &mut sgd,
            OneCycleConfig {
                total_steps: 0,
                ..one.clone()
            },
        ),
        "OneCycleLR",
        "total_steps",
    );
    hyper_error(
        OneCycleLR::new(
            &mut sgd,
            OneCycleConfig {
                pct_start: 1.5,
                ..one.clone()
            },
        ),
        "OneCycleLR",
        "pct_start",
    );
    hyper_error(
        OneCycleLR::new(
            &mut sgd,
            OneCycleConfig {
                div_factor: 0.0,
                ..one.clone()
            },
        ),
        "OneCycleLR",
        "div_factor",
    );
    assert!(matches!(
        OneCycleLR::new(
            &mut sgd,
            OneCycleConfig {
                max_lrs: vec![0.1, 0.2, 0.3],
                ..one.clone()
            }
        ),
        Err(Error::ArgumentCount {
            op: "OneCycleLR",
            ..
        })
    ));
    // Momentum cycling needs momentum in the optimizer (this SGD has none; Adagrad never has).
    assert!(matches!(
        OneCycleLR::new(
            &mut sgd,
            OneCycleConfig {
                cycle_momentum: true,
                ..one.clone()
            }
        ),
        Err(Error::InvalidHyperparameter {
            op: "SGD",
            name: "momentum",
            ..
        })
    ));
    let w = Param::new("w", Tensor::<f64>::zeros(&[1]).unwrap());
    let mut adagrad = Adagrad::new(vec![("w".to_string(), w)], AdagradConfig::default()).unwrap();
    assert!(matches!(
        OneCycleLR::new(
            &mut adagrad,
            OneCycleConfig {
                cycle_momentum: true,
                ..one.clone()
            }
        ),
        Err(Error::InvalidArgument {
            op: "OneCycleLR",
            ..
        })
    ));
    hyper_error(
        OneCycleLR::new(
            &mut adagrad,
            OneCycleConfig {
                cycle_momentum: true,
                max_momentum: 1.0,
                ..one.clone()
            },
        ),
        "OneCycleLR",
        "max_momentum",
    );
    // Stepping past the end of the cycle.
    let mut cycle = OneCycleLR::new(&mut sgd, one).unwrap();
    for _ in 0..10 {
        cycle.step(&mut sgd).unwrap();
    }
    let lrs = sgd.lrs();
    assert!(matches!(
        cycle.step(&mut sgd),
        Err(Error::InvalidArgument {
            op: "OneCycleLR",
            ..
        })
    ));
    assert_eq!(sgd.lrs(), lrs, "a failed step changes nothing");
    assert_eq!(cycle.last_epoch(), 10);

    let mut sgd = two_group_sgd();
    let a = ExponentialLR::new(&mut sgd, 0.9).unwrap();
    let b = ExponentialLR::new(&mut sgd, 0.8).unwrap();
    assert!(matches!(
        SequentialLR::new(&mut sgd, vec![Box::new(a), Box::new(b)], vec![]),
        Err(Error::ArgumentCount {
            op: "SequentialLR",
            ..
        })
    ));
    assert!(matches!(
        SequentialLR::new(&mut two_group_sgd(), vec![], vec![]),
        Err(Error::InvalidArgument {
            op: "SequentialLR",
            ..
        })
    ));
    for factor in [1.0, -0.5, f64::NAN] {
        hyper_error(
            ReduceLROnPlateau::new(
                &mut sgd,
                PlateauConfig {
                    factor,
                    ..Default::default()
                },
            ),
            "ReduceLROnPlateau",
            "factor",
        );
    }
    assert!(matches!(
        ReduceLROnPlateau::new(
            &mut sgd,
            PlateauConfig {
                min_lrs: vec![0.0; 3],
                ..Default::default()
            }
        ),
        Err(Error::ArgumentCount {
            op: "ReduceLROnPlateau",
            ..
        })
    ));
}
