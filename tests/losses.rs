//! The losses of `tapegrad::nn` against PyTorch (tests/golden/losses.py → losses.safetensors):
//! every loss and option, value and input gradient(s) for a random backward seed, in f32 and f64;
//! gradcheck and gradgradcheck in f64; the conventions at the clamps and kinks; every error.

mod common;

use common::Golden;
use rand_pcg::Pcg64;
use tapegrad::nn::{
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, KLDivReduction, L1Loss,
    MSELoss, NLLLoss, SmoothL1Loss,
};
use tapegrad::ops::Reduction;
use tapegrad::{
    BackwardOptions, Error, Float, GradcheckOptions, Result, Tape, Tensor, Var, gradcheck,
    gradgradcheck,
};

/// What a case reads from the golden file.
struct Inputs<T: Float> {
    x: Tensor<T>,
    y: Option<Tensor<T>>,
    labels: Vec<i64>,
    w: Option<Tensor<T>>,
    pw: Option<Tensor<T>>,
}

trait Load: Float {
    const TAG: &'static str;
    const RTOL: f64;
    const ATOL: f64;
    fn load(golden: &Golden, name: &str) -> Tensor<Self>;
}

impl Load for f32 {
    const TAG: &'static str = "f32";
    const RTOL: f64 = 1e-5;
    const ATOL: f64 = 1e-6;
    fn load(golden: &Golden, name: &str) -> Tensor<f32> {
        golden.f32(name)
    }
}

impl Load for f64 {
    const TAG: &'static str = "f64";
    const RTOL: f64 = 1e-12;
    const ATOL: f64 = 1e-12;
    fn load(golden: &Golden, name: &str) -> Tensor<f64> {
        golden.f64(name)
    }
}

fn reduction(case: &str) -> Reduction {
    if case.contains("_sum") {
        Reduction::Sum
    } else if case.contains("_none") {
        Reduction::None
    } else {
        Reduction::Mean
    }
}

/// The loss of each case, with the options the case's name (and tests/golden/losses.py) spells.
fn loss_for<'t, T: Float>(
    case: &str,
    x: Var<'t, T>,
    y: Option<Var<'t, T>>,
    inputs: &Inputs<T>,
) -> Result<Var<'t, T>> {
    let r = reduction(case);
    let w = inputs.w.clone();
    let labels = &inputs.labels;
    let y = || y.expect("a float target");
    let family = case.split('_').next().unwrap();
    match family {
        "ce" => {
            let mut loss = CrossEntropyLoss::<T> {
                weight: w,
                reduction: r,
                ..Default::default()
            };
            if case.contains("ignore_3") {
                loss.ignore_index = Some(3);
            }
            if case.contains("smooth") {
                loss.label_smoothing = match case {
                    "ce_smooth" | "ce_nd_none_smooth" => 0.1,
                    "ce_smooth_weight_ignore" => 0.2,
                    _ => 0.3,
                };
            }
            loss.forward(x, labels)
        }
        "nll" => {
            let mut loss = NLLLoss::<T> {
                weight: w,
                reduction: r,
                ..Default::default()
            };
            if case.contains("ignore_3") {
                loss.ignore_index = Some(3);
            }
            loss.forward(x, labels)
        }
        "bce" => BCELoss {
            weight: w,
            reduction: r,
        }
        .forward(x, y()),
        "bcel" => BCEWithLogitsLoss {
            weight: w,
            pos_weight: inputs.pw.clone(),
            reduction: r,
        }
        .forward(x, y()),
        "mse" => MSELoss { reduction: r }.forward(x, y()),
        "l1" => L1Loss { reduction: r }.forward(x, y()),
        "smooth" => {
            let beta = if case.contains("beta_half") {
                0.5
            } else if case.contains("beta_3") {
                3.0
            } else if case.contains("beta_0") {
                0.0
            } else {
                1.0
            };
            SmoothL1Loss { reduction: r, beta }.forward(x, y())
        }
        "huber" => {
            let delta = if case.contains("delta_2_5") {
                2.5
            } else if case.contains("delta_0_3") {
                0.3
            } else {
                1.0
            };
            HuberLoss {
                reduction: r,
                delta,
            }
            .forward(x, y())
        }
        "kl" => {
            let reduction = if case.contains("batchmean") {
                KLDivReduction::BatchMean
            } else if case.contains("_sum") {
                KLDivReduction::Sum
            } else if case.contains("_none") {
                KLDivReduction::None
            } else {
                KLDivReduction::Mean
            };
            KLDivLoss {
                reduction,
                log_target: case.contains("log_target"),
            }
            .forward(x, y())
        }
        other => panic!("no loss for case family {other} ({case})"),
    }
}

fn read<T: Load>(golden: &Golden, case: &str) -> Inputs<T> {
    let name = |t: &str| format!("{case}.{}.{t}", T::TAG);
    let opt = |t: &str| golden.has(&name(t)).then(|| T::load(golden, &name(t)));
    Inputs {
        x: T::load(golden, &name("x")),
        y: opt("y"),
        labels: if golden.has(&name("labels")) {
            golden.i64(&name("labels"))
        } else {
            Vec::new()
        },
        w: opt("w"),
        pw: opt("pw"),
    }
}

fn assert_close<T: Load>(what: &str, got: &Tensor<T>, want: &Tensor<T>) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(
            (g - w).abs() <= T::ATOL + T::RTOL * w.abs(),
            "{what}[{i}]: got {g}, PyTorch {w}"
        );
    }
}

fn golden_case<T: Load>(golden: &Golden, case: &str) {
    let inputs = read::<T>(golden, case);
    let name = |t: &str| format!("{case}.{}.{t}", T::TAG);
    let tape = Tape::<T>::new();
    let x = tape.leaf(inputs.x.clone());
    let target_grad = golden.has(&name("dy"));
    let y = inputs.y.as_ref().map(|y| {
        if target_grad {
            tape.leaf(y.clone())
        } else {
            tape.constant(y.clone())
        }
    });
    let out = loss_for(case, x, y, &inputs).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_close(
        &format!("{case} {} out", T::TAG),
        &out.value(),
        &T::load(golden, &name("out")),
    );
    if !golden.has(&name("dx")) {
        return;
    }
    let grads = out
        .backward_with(BackwardOptions {
            seed: Some(T::load(golden, &name("g"))),
            ..BackwardOptions::new()
        })
        .unwrap();
    assert_close(
        &format!("{case} {} dx", T::TAG),
        grads.wrt(x).unwrap(),
        &T::load(golden, &name("dx")),
    );
    if let (true, Some(y)) = (target_grad, y) {
        let mut want = T::load(golden, &name("dy"));
        let mut got = grads.wrt(y).unwrap().try_clone().unwrap();
        if case.starts_with("kl_") && !case.contains("log_target") {
            // ∂(y log y)/∂y has no value at y = 0: PyTorch gives NaN there, tapegrad drops the
            // term (see KLDivLoss). Compare everywhere else, and check that NaN is where y = 0.
            let target = inputs.y.as_ref().unwrap().data();
            for ((g, w), &t) in got.data_mut().iter_mut().zip(want.data_mut()).zip(target) {
                assert_eq!(
                    w.is_nan(),
                    t == T::ZERO,
                    "{case}: PyTorch's NaN where y = 0"
                );
                if t == T::ZERO {
                    (*g, *w) = (T::ZERO, T::ZERO);
                }
            }
        }
        assert_close(&format!("{case} {} dy", T::TAG), &got, &want);
    }
}

fn cases(golden: &Golden) -> Vec<String> {
    golden
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".f64.out").map(str::to_string))
        .collect()
}

#[test]
fn every_loss_and_option_matches_pytorch() {
    let golden = Golden::open("losses.safetensors");
    let cases = cases(&golden);
    assert_eq!(cases.len(), 45, "{cases:?}");
    for case in &cases {
        golden_case::<f32>(&golden, case);
        golden_case::<f64>(&golden, case);
    }
}

/// Pins a closure to the signature gradcheck takes (one lifetime for the tape and its Vars).
fn checkable<F>(f: F) -> F
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>,
{
    f
}

#[test]
fn every_loss_passes_gradcheck_and_gradgradcheck() {
    let golden = Golden::open("losses.safetensors");
    let options = GradcheckOptions::default();
    for case in cases(&golden) {
        if case == "bce_edges_none" {
            continue; // at p = 0 and 1 the loss is clamped: no derivative to check there
        }
        let inputs = read::<f64>(&golden, &case);
        // Targets are differentiated where PyTorch differentiates them, except KL's probability
        // targets with zeros (y log y has no derivative at 0).
        let target_differentiable = {
            let kl_probabilities = case.starts_with("kl_") && !case.contains("log_target");
            inputs.y.is_some() && !kl_probabilities
        };
        let mut points = vec![inputs.x.clone()];
        if target_differentiable {
            points.push(inputs.y.clone().unwrap());
        }
        let f = checkable(|tape, vars, _| {
            let y = match (target_differentiable, &inputs.y) {
                (true, _) => Some(vars[1]),
                (false, Some(y)) => Some(tape.constant(y.clone())),
                (false, None) => None,
            };
            let out = loss_for(&case, vars[0], y, &inputs)?;
            // A scalar for the checker: a fixed random projection of an unreduced loss.
            if out.shape().numel() == 1 {
                Ok(out)
            } else {
                let n = out.shape().numel();
                let v: Vec<f64> = (0..n)
                    .map(|i| ((i * 7 + 3) % 11) as f64 / 11.0 - 0.4)
                    .collect();
                out.mul(tape.constant(Tensor::from_shape_vec(v, out.shape())?))?
                    .sum()
            }
        });
        gradcheck(f, &points, &options).unwrap_or_else(|e| panic!("{case}: gradcheck: {e}"));
        gradgradcheck(f, &points, &options)
            .unwrap_or_else(|e| panic!("{case}: gradgradcheck: {e}"));
    }
}

#[test]
fn bce_at_zero_and_one_clamps_the_log_and_keeps_gradients_finite() {
    let tape = Tape::<f64>::new();
    let p = tape.leaf(Tensor::from_vec(vec![0.0, 1.0, 0.0, 1.0], &[4]).unwrap());
    let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[4]).unwrap());
    let loss = BCELoss::<f64> {
        reduction: Reduction::None,
        ..Default::default()
    }
    .forward(p, y)
    .unwrap();
    // −max(log 0, −100) = 100 where the label is wrong; 0 where p equals the label.
    assert_eq!(loss.value().data(), &[100.0, 100.0, 0.0, 0.0]);
    let g = loss.sum().unwrap().backward().unwrap();
    // The clamped term contributes 0; the other term its exact derivative: −(1 − y)·d/dp log(1 − p)
    // = 1 at p = 0, y = 0, and −y·d/dp log p = −1 at p = 1, y = 1.
    assert_eq!(g.wrt(p).unwrap().data(), &[0.0, 0.0, 1.0, -1.0]);
}

#[test]
fn smooth_l1_and_huber_at_the_joint_and_l1_at_zero() {
    // d = ±β exactly: the linear branch, slope ±1 (PyTorch: x < −β ? −1 : x > β ? 1 : x/β, the
    // same value at the joint); d = 0: slope 0.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![-2.0, 0.0, 2.0, 0.5], &[4]).unwrap());
    let y = tape.constant(Tensor::zeros(&[4]).unwrap());
    let smooth = SmoothL1Loss {
        reduction: Reduction::Sum,
        beta: 2.0,
    }
    .forward(x, y)
    .unwrap();
    // 1 + 0 + 1 + 0.25²·… : d²/(2β) = 0.0625 for d = 0.5.
    assert_eq!(smooth.value().item().unwrap(), 1.0 + 0.0 + 1.0 + 0.0625);
    assert_eq!(
        smooth.backward().unwrap().wrt(x).unwrap().data(),
        &[-1.0, 0.0, 1.0, 0.25]
    );

    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![-2.0, 0.0, 3.0], &[3]).unwrap());
    let y = tape.constant(Tensor::zeros(&[3]).unwrap());
    let huber = HuberLoss {
        reduction: Reduction::None,
        delta: 2.0,
    }
    .forward(x, y)
    .unwrap();
    // δ(|d| − δ/2) = 2 at |d| = δ = 2 (= d²/2, continuous); 0; 2·(3 − 1) = 4.
    assert_eq!(huber.value().data(), &[2.0, 0.0, 4.0]);
    let g = huber.sum().unwrap().backward().unwrap();
    assert_eq!(g.wrt(x).unwrap().data(), &[-2.0, 0.0, 2.0]);

    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    let y = tape.constant(Tensor::from_vec(vec![1.0, 0.0], &[2]).unwrap());
    let l1 = L1Loss::default().forward(x, y).unwrap();
    assert_eq!(l1.value().item().unwrap(), 1.0);
    assert_eq!(l1.backward().unwrap().wrt(x).unwrap().data(), &[0.0, 0.5]);
}

#[test]
fn bce_with_logits_is_finite_for_huge_logits() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::from_vec(vec![-1e4f32, 1e4, -1e4, 1e4], &[4]).unwrap());
    let y = tape.constant(Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0], &[4]).unwrap());
    let loss = BCEWithLogitsLoss::<f32> {
        reduction: Reduction::None,
        ..Default::default()
    }
    .forward(x, y)
    .unwrap();
    assert_eq!(loss.value().data(), &[0.0, 0.0, 1e4, 1e4]);
    let g = loss.sum().unwrap().backward().unwrap();
    assert_eq!(g.wrt(x).unwrap().data(), &[0.0, 0.0, -1.0, 1.0]); // σ(x) − y
}

#[test]
fn kl_divergence_by_hand() {
    // Two rows, the second target with a zero: Σ y (log y − x), divided by the batch of 2.
    let q = [[0.25f64, 0.75], [0.5, 0.5]];
    let p = [[0.5f64, 0.5], [1.0, 0.0]];
    let tape = Tape::<f64>::new();
    let x =
        tape.leaf(Tensor::from_vec(q.iter().flatten().map(|v| v.ln()).collect(), &[2, 2]).unwrap());
    let y =
        tape.constant(Tensor::from_vec(p.iter().flatten().copied().collect(), &[2, 2]).unwrap());
    let kl = KLDivLoss {
        reduction: KLDivReduction::BatchMean,
        log_target: false,
    }
    .forward(x, y)
    .unwrap();
    let mut want = 0.0;
    for (qr, pr) in q.iter().zip(&p) {
        for (qv, pv) in qr.iter().zip(pr) {
            if *pv > 0.0 {
                want += pv * (pv.ln() - qv.ln());
            }
        }
    }
    assert!((kl.value().item().unwrap() - want / 2.0).abs() < 1e-15);
    let g = kl.backward().unwrap();
    assert_eq!(g.wrt(x).unwrap().data(), &[-0.25, -0.25, -0.5, 0.0]); // −y / batch
}

#[test]
fn loss_errors() {
    let tape = Tape::<f64>::new();
    let a = tape.leaf(Tensor::from_vec(vec![0.5, 0.5, 0.5], &[3]).unwrap());
    let b = tape.leaf(Tensor::from_vec(vec![0.5, 0.5], &[2]).unwrap());
    let shape = |r: Result<Var<'_, f64>>| matches!(r, Err(Error::ShapeMismatch { .. }));
    assert!(shape(BCELoss::default().forward(a, b)));
    assert!(shape(BCEWithLogitsLoss::default().forward(a, b)));
    assert!(shape(L1Loss::default().forward(a, b)));
    assert!(shape(SmoothL1Loss::default().forward(a, b)));
    assert!(shape(HuberLoss::default().forward(a, b)));
    assert!(shape(KLDivLoss::default().forward(a, b)));
    assert!(shape(MSELoss::default().forward(a, b)));
    // Weights that do not broadcast to the input.
    let w2 = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
    assert!(shape(
        BCELoss {
            weight: Some(w2.clone()),
            reduction: Reduction::Mean
        }
        .forward(a, a)
    ));
    assert!(shape(
        BCEWithLogitsLoss {
            pos_weight: Some(w2),
            ..Default::default()
        }
        .forward(a, a)
    ));
    // Probabilities outside [0, 1], and NaN.
    for bad in [1.5, -0.1, f64::NAN] {
        let p = tape.leaf(Tensor::from_vec(vec![0.5, bad], &[2]).unwrap());
        assert!(matches!(
            BCELoss::default().forward(p, b),
            Err(Error::InvalidArgument {
                op: "binary_cross_entropy",
                ..
            })
        ));
    }
    // Bad options.
    for beta in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            SmoothL1Loss {
                reduction: Reduction::Mean,
                beta
            }
            .forward(a, a),
            Err(Error::InvalidHyperparameter { name: "beta", .. })
        ));
    }
    for delta in [0.0, -1.0, f64::NAN] {
        assert!(matches!(
            HuberLoss {
                reduction: Reduction::Mean,
                delta
            }
            .forward(a, a),
            Err(Error::InvalidHyperparameter { name: "delta", .. })
        ));
    }
    assert!(matches!(
        CrossEntropyLoss::<f64> {
            label_smoothing: 1.5,
            ..Default::default()
        }
        .forward(tape.leaf(Tensor::zeros(&[2, 3]).unwrap()), &[0, 1]),
        Err(Error::InvalidHyperparameter {
            name: "label_smoothing",
            ..
        })
    ));
    // The mean over nothing.
    let empty = tape.leaf(Tensor::zeros(&[0, 3]).unwrap());
    assert!(matches!(
        L1Loss::default().forward(empty, empty),
        Err(Error::EmptyBatch { .. })
    ));
    assert!(matches!(
        KLDivLoss {
            reduction: KLDivReduction::BatchMean,
            log_target: false
        }
        .forward(empty, empty),
        Err(Error::EmptyBatch { .. })
    ));
    // Sum and none are fine on nothing.
    assert_eq!(
        L1Loss {
            reduction: Reduction::Sum
        }
        .forward(empty, empty)
        .unwrap()
        .value()
        .item()
        .unwrap(),
        0.0
    );
    // Another tape's Var.
    let other = Tape::<f64>::new();
    let c = other.leaf(Tensor::from_vec(vec![0.5, 0.5, 0.5], &[3]).unwrap());
    assert!(matches!(
        L1Loss::default().forward(a, c),
        Err(Error::ForeignVar { .. })
    ));
}
