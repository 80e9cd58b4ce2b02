//! The element-wise ops (`src/ops/elementwise.rs`, `activation.rs`, `select.rs`, `arith.rs`):
//! gradcheck and gradgradcheck over shapes with zero-size axes and broadcasting, each backward
//! against its formula computed here with plain loops, the recorded (graph) backward against the
//! plain one, the conventions at kinks and ties with hand-written values, every error, and
//! PyTorch's values from `tests/golden/ops_elementwise.safetensors`.

// The operators are tested on borrowed `Var`s on purpose (`&a + &b`), although `Var` is `Copy`.
#![allow(clippy::op_ref)]

mod common;

use std::ops::{Div, Sub};

use common::{Golden, assert_close, away_from_zero, randn, uniform};
use rand_pcg::Pcg64;
use tapegrad::{
    BackwardOptions, Error, Float, GradcheckOptions, Result, Tape, Tensor, Var, gradcheck,
    gradgradcheck,
};

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

fn t(data: &[f64], dims: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), dims).unwrap()
}

/// `x` with every element closer than `margin` to one of `points` moved `2·margin` away from it,
/// so that finite differences never straddle a kink.
fn nudge(x: Tensor<f64>, points: &[f64], margin: f64) -> Tensor<f64> {
    x.map(|mut v| {
        for &p in points {
            if (v - p).abs() < margin {
                v = p + if v >= p { 2.0 * margin } else { -2.0 * margin };
            }
        }
        v
    })
    .unwrap()
}

fn scaled(dims: &[usize], seed: u64, s: f64) -> Tensor<f64> {
    randn(dims, seed).map(|x| s * x).unwrap()
}

/// The error function by its Maclaurin series, independent of the crate's (libm's) erf; accurate
/// to ~1e-13 for |x| ≤ 3.5, which is where the tests use it.
fn erf_series(x: f64) -> f64 {
    let mut term = x; // (−1)ⁿ x^(2n+1) / n!
    let mut total = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        let add = term / (2 * n + 1) as f64;
        total += add;
        if add.abs() < 1e-17 * total.abs() {
            break;
        }
    }
    total * 2.0 / std::f64::consts::PI.sqrt()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

// ---------------------------------------------------------------------------------------------
// The unary ops, each with an input generator that keeps away from its kinks and poles, and its
// value and derivative written independently as plain f64 formulas.

type UnaryFn = for<'t> fn(Var<'t, f64>) -> Result<Var<'t, f64>>;
type Gen = fn(&[usize], u64) -> Tensor<f64>;

struct Unary {
    name: &'static str,
    input: Gen,
    op: UnaryFn,
    value: fn(f64) -> f64,
    deriv: fn(f64) -> f64,
}

const SQRT_2_OVER_PI: f64 = 0.7978845608028654;

fn gelu_tanh_inner(x: f64) -> f64 {
    SQRT_2_OVER_PI * (x + 0.044715 * x.powi(3))
}

fn softplus_ref(x: f64, beta: f64, threshold: f64) -> (f64, f64) {
    if beta * x > threshold {
        (x, 1.0)
    } else {
        ((beta * x).exp().ln_1p() / beta, sigmoid(beta * x))
    }
}

fn unary_cases() -> Vec<Unary> {
    macro_rules! u {
        ($name:expr, $input:expr, $op:expr, $value:expr, $deriv:expr) => {
            Unary {
                name: $name,
                input: $input,
                op: $op,
                value: $value,
                deriv: $deriv,
            }
        };
    }
    let any: Gen = |d, s| randn(d, s);
    let positive: Gen = |d, s| uniform(d, s, 0.2, 3.0);
    let nonzero: Gen = |d, s| away_from_zero(d, s, 0.3);
    let wide: Gen = |d, s| scaled(d, s, 2.0);
    vec![
        u!("sqrt", positive, |x| x.sqrt(), |x| x.sqrt(), |x| 0.5
            / x.sqrt()),
        u!("rsqrt", positive, |x| x.rsqrt(), |x| 1.0 / x.sqrt(), |x| {
            -0.5 * x.powf(-1.5)
        }),
        u!("square", any, |x| x.square(), |x| x * x, |x| 2.0 * x),
        u!(
            "reciprocal",
            nonzero,
            |x| x.reciprocal(),
            |x| 1.0 / x,
            |x| { -1.0 / (x * x) }
        ),
        u!("abs", nonzero, |x| x.abs(), f64::abs, f64::signum),
        u!("sin", wide, |x| x.sin(), f64::sin, f64::cos),
        u!("cos", wide, |x| x.cos(), f64::cos, |x| -x.sin()),
        u!(
            "log1p",
            |d, s| uniform(d, s, -0.8, 3.0),
            |x| x.log1p(),
            |x| (1.0 + x).ln(),
            |x| 1.0 / (1.0 + x)
        ),
        u!("expm1", any, |x| x.expm1(), |x| x.exp() - 1.0, f64::exp),
        u!(
            "erf",
            |d, s| scaled(d, s, 1.5).map(|x| x.clamp(-3.5, 3.5)).unwrap(),
            |x| x.erf(),
            erf_series,
            |x| 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp()
        ),
        u!(
            "pow_scalar(2)",
            any,
            |x| x.pow_scalar(2.0),
            |x| x * x,
            |x| 2.0 * x
        ),
        u!(
            "pow_scalar(3)",
            any,
            |x| x.pow_scalar(3.0),
            |x| x * x * x,
            |x| 3.0 * x * x
        ),
        u!("pow_scalar(0)", any, |x| x.pow_scalar(0.0), |_| 1.0, |_| {
            0.0
        }),
        u!("pow_scalar(1)", any, |x| x.pow_scalar(1.0), |x| x, |_| 1.0),
        u!(
            "pow_scalar(-1)",
            nonzero,
            |x| x.pow_scalar(-1.0),
            |x| 1.0 / x,
            |x| -1.0 / (x * x)
        ),
        u!(
            "pow_scalar(-2)",
            nonzero,
            |x| x.pow_scalar(-2.0),
            |x| 1.0 / (x * x),
            |x| -2.0 / (x * x * x)
        ),
        u!(
            "pow_scalar(0.5)",
            positive,
            |x| x.pow_scalar(0.5),
            f64::sqrt,
            |x| 0.5 / x.sqrt()
        ),
        u!(
            "pow_scalar(-0.5)",
            positive,
            |x| x.pow_scalar(-0.5),
            |x| 1.0 / x.sqrt(),
            |x| -0.5 / (x * x.sqrt())
        ),
        u!(
            "pow_scalar(1.5)",
            positive,
            |x| x.pow_scalar(1.5),
            |x| x * x.sqrt(),
            |x| 1.5 * x.sqrt()
        ),
        u!(
            "pow_scalar(-2.7)",
            positive,
            |x| x.pow_scalar(-2.7),
            |x| (-2.7 * x.ln()).exp(),
            |x| -2.7 * (-3.7 * x.ln()).exp()
        ),
        u!(
            "clamp(-0.5, 1)",
            |d, s| nudge(randn(d, s), &[-0.5, 1.0], 0.05),
            |x| x.clamp(Some(-0.5), Some(1.0)),
            |x| x.clamp(-0.5, 1.0),
            |x| if -0.5 < x && x < 1.0 { 1.0 } else { 0.0 }
        ),
        u!(
            "clamp(0, None)",
            |d, s| nudge(randn(d, s), &[0.0], 0.05),
            |x| x.clamp(Some(0.0), None),
            |x| x.max(0.0),
            |x| if x > 0.0 { 1.0 } else { 0.0 }
        ),
        u!(
            "clamp(None, 0.5)",
            |d, s| nudge(randn(d, s), &[0.5], 0.05),
            |x| x.clamp(None, Some(0.5)),
            |x| x.min(0.5),
            |x| if x < 0.5 { 1.0 } else { 0.0 }
        ),
        u!(
            "gelu",
            wide,
            |x| x.gelu(),
            |x| x * 0.5 * (1.0 + erf_series(x / 2f64.sqrt())),
            |x| {
                let cdf = 0.5 * (1.0 + erf_series(x / 2f64.sqrt()));
                let pdf = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
                cdf + x * pdf
            }
        ),
        u!(
            "gelu_tanh",
            wide,
            |x| x.gelu_tanh(),
            |x| 0.5 * x * (1.0 + gelu_tanh_inner(x).tanh()),
            |x| {
                let th = gelu_tanh_inner(x).tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du
            }
        ),
        u!("silu", wide, |x| x.silu(), |x| x * sigmoid(x), |x| {
            sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x)))
        }),
        u!(
            "softplus(1, 20)",
            |d, s| nudge(scaled(d, s, 12.0), &[20.0], 0.1),
            |x| x.softplus(1.0, 20.0),
            |x| softplus_ref(x, 1.0, 20.0).0,
            |x| softplus_ref(x, 1.0, 20.0).1
        ),
        u!(
            "softplus(2, 5)",
            |d, s| nudge(scaled(d, s, 3.0), &[2.5], 0.1),
            |x| x.softplus(2.0, 5.0),
            |x| softplus_ref(x, 2.0, 5.0).0,
            |x| softplus_ref(x, 2.0, 5.0).1
        ),
        u!(
            "softplus(-1.5, 20)",
            |d, s| scaled(d, s, 3.0),
            |x| x.softplus(-1.5, 20.0),
            |x| softplus_ref(x, -1.5, 20.0).0,
            |x| softplus_ref(x, -1.5, 20.0).1
        ),
        u!(
            "leaky_relu(0.01)",
            |d, s| away_from_zero(d, s, 0.05),
            |x| x.leaky_relu(0.01),
            |x| if x > 0.0 { x } else { 0.01 * x },
            |x| if x > 0.0 { 1.0 } else { 0.01 }
        ),
        u!(
            "leaky_relu(-0.5)",
            |d, s| away_from_zero(d, s, 0.05),
            |x| x.leaky_relu(-0.5),
            |x| if x > 0.0 { x } else { -0.5 * x },
            |x| if x > 0.0 { 1.0 } else { -0.5 }
        ),
        u!(
            "elu(1)",
            |d, s| away_from_zero(d, s, 0.05),
            |x| x.elu(1.0),
            |x| if x > 0.0 { x } else { x.exp() - 1.0 },
            |x| if x > 0.0 { 1.0 } else { x.exp() }
        ),
        u!(
            "elu(0.5)",
            |d, s| away_from_zero(d, s, 0.05),
            |x| x.elu(0.5),
            |x| if x > 0.0 { x } else { 0.5 * (x.exp() - 1.0) },
            |x| if x > 0.0 { 1.0 } else { 0.5 * x.exp() }
        ),
        u!(
            "hardtanh(-1, 1)",
            |d, s| nudge(scaled(d, s, 1.5), &[-1.0, 1.0], 0.05),
            |x| x.hardtanh(-1.0, 1.0),
            |x| x.clamp(-1.0, 1.0),
            |x| if x.abs() < 1.0 { 1.0 } else { 0.0 }
        ),
        u!(
            "hardtanh(0, 6)",
            |d, s| nudge(scaled(d, s, 4.0), &[0.0, 6.0], 0.05),
            |x| x.hardtanh(0.0, 6.0),
            |x| x.clamp(0.0, 6.0),
            |x| if 0.0 < x && x < 6.0 { 1.0 } else { 0.0 }
        ),
        u!("2 / x", nonzero, |x| 2.0 / x, |x| 2.0 / x, |x| -2.0
            / (x * x)),
        u!("1.5 - x", any, |x| 1.5 - x, |x| 1.5 - x, |_| -1.0),
        u!("x - 1.5", any, |x| x - 1.5, |x| x - 1.5, |_| 1.0),
        u!("x * 3", any, |x| x * 3.0, |x| 3.0 * x, |_| 3.0),
        u!("x / 4", any, |x| x / 4.0, |x| x / 4.0, |_| 0.25),
        u!("-x", any, |x| -x, |x| -x, |_| -1.0),
    ]
}

const UNARY_SHAPES: &[&[usize]] = &[&[], &[1], &[7], &[3, 4], &[2, 3, 2], &[0], &[0, 3], &[3, 0]];

#[test]
fn gradcheck_unary_over_shapes() {
    for (k, case) in unary_cases().iter().enumerate() {
        for (s, dims) in UNARY_SHAPES.iter().enumerate() {
            let x = (case.input)(dims, (100 * k + s) as u64);
            if let Err(e) = gradcheck(|_, v, _| (case.op)(v[0]), &[x], &opts()) {
                panic!("{} on {dims:?}: {e}", case.name);
            }
        }
    }
}

#[test]
fn gradgradcheck_unary() {
    for (k, case) in unary_cases().iter().enumerate() {
        for dims in [&[3, 4][..], &[5], &[0, 2]] {
            let x = (case.input)(dims, 7000 + k as u64);
            if let Err(e) = gradgradcheck(|_, v, _| (case.op)(v[0]), &[x], &opts()) {
                panic!("{} on {dims:?}: {e}", case.name);
            }
        }
    }
}

/// Forward value and gradient of every unary op against the formulas written above, element by
/// element, with a random seed gradient.
#[test]
fn unary_values_and_gradients_match_their_formulas() {
    for (k, case) in unary_cases().iter().enumerate() {
        let x = (case.input)(&[4, 5], 500 + k as u64);
        let g = randn(&[4, 5], 600 + k as u64);
        let tape = Tape::new();
        let v = tape.leaf(x.clone());
        let y = (case.op)(v).unwrap();
        let grads = y
            .backward_with(BackwardOptions::new().seed(g.clone()))
            .unwrap();
        let dx = grads.wrt(v).unwrap();
        for i in 0..x.numel() {
            let xi = x.data()[i];
            let want_y = (case.value)(xi);
            let want_dx = g.data()[i] * (case.deriv)(xi);
            let got_y = y.value().data()[i];
            let got_dx = dx.data()[i];
            assert!(
                (got_y - want_y).abs() <= 1e-12 * want_y.abs().max(1.0),
                "{} value at x = {xi}: {got_y} vs {want_y}",
                case.name
            );
            assert!(
                (got_dx - want_dx).abs() <= 1e-12 * want_dx.abs().max(1.0),
                "{} gradient at x = {xi}: {got_dx} vs {want_dx}",
                case.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ops with several inputs.

type OpFn = for<'t> fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>;

const BROADCAST_PAIRS: &[(&[usize], &[usize])] = &[
    (&[3, 4], &[3, 4]),
    (&[3, 4], &[4]),
    (&[3, 1], &[1, 4]),
    (&[4], &[2, 3, 4]),
    (&[], &[2, 3]),
    (&[0, 4], &[4]),
    (&[2, 1, 3], &[0, 1]),
];

/// A fixed 0/1 mask of the given shape (about 40% set).
fn mask(dims: &[usize], seed: u64) -> Tensor<f64> {
    uniform(dims, seed, 0.0, 1.0)
        .map(|u| if u < 0.4 { 1.0 } else { 0.0 })
        .unwrap()
}

#[test]
fn gradcheck_binary_with_broadcasting() {
    for (i, &(a, b)) in BROADCAST_PAIRS.iter().enumerate() {
        let s = 1000 + 10 * i as u64;
        let run = |name: &str, inputs: Vec<Tensor<f64>>, f: OpFn| {
            if let Err(e) = gradcheck(f, &inputs, &opts()) {
                panic!("{name} {a:?} {b:?}: {e}");
            }
        };
        run(
            "pow",
            vec![uniform(a, s, 0.3, 2.5), randn(b, s + 1)],
            |_, v, _| v[0].pow(v[1]),
        );
        run(
            "pow (base broadcast)",
            vec![uniform(b, s + 2, 0.3, 2.5), randn(a, s + 3)],
            |_, v, _| v[0].pow(v[1]),
        );
        run(
            "maximum",
            vec![randn(a, s + 4), randn(b, s + 5)],
            |_, v, _| v[0].maximum(v[1]),
        );
        run(
            "minimum",
            vec![randn(a, s + 6), randn(b, s + 7)],
            |_, v, _| v[0].minimum(v[1]),
        );
        run(
            "a + b",
            vec![randn(a, s + 8), randn(b, s + 9)],
            |_, v, _| &v[0] + &v[1],
        );
        run(
            "a * b",
            vec![randn(a, s + 8), randn(b, s + 9)],
            |_, v, _| v[0] * v[1],
        );
        run(
            "a - b",
            vec![randn(a, s + 8), randn(b, s + 9)],
            |_, v, _| v[0] - &v[1],
        );
        run(
            "a / b",
            vec![randn(a, s + 8), away_from_zero(b, s + 9, 0.5)],
            |_, v, _| &v[0] / v[1],
        );
    }
}

#[test]
fn gradcheck_selection_with_broadcasting() {
    for (i, &(a, b)) in BROADCAST_PAIRS.iter().enumerate() {
        let s = 2000 + 10 * i as u64;
        // x of shape a, mask of shape b, and the other way round.
        for (x_dims, m_dims) in [(a, b), (b, a)] {
            let m = mask(m_dims, s);
            let check = gradcheck(
                |tape, v, _| v[0].masked_fill(tape.constant(m.clone()), -3.0),
                &[randn(x_dims, s + 1)],
                &opts(),
            );
            if let Err(e) = check {
                panic!("masked_fill x {x_dims:?} mask {m_dims:?}: {e}");
            }
        }
        // where_: the condition broadcast against both branches, each branch against the other.
        for (c_dims, a_dims, b_dims) in [(a, a, b), (b, a, a), (a, b, &[][..]), (&[1][..], b, a)] {
            let c = mask(c_dims, s + 2);
            let check = gradcheck(
                |tape, v, _| tape.constant(c.clone()).where_(v[0], v[1]),
                &[randn(a_dims, s + 3), randn(b_dims, s + 4)],
                &opts(),
            );
            if let Err(e) = check {
                panic!("where cond {c_dims:?} a {a_dims:?} b {b_dims:?}: {e}");
            }
        }
    }
}

/// Every op with more than one input (or a mask), for gradgradcheck and the graph-path test.
fn multi_cases() -> Vec<(&'static str, Vec<Tensor<f64>>, OpFn)> {
    vec![
        (
            "pow",
            vec![uniform(&[3, 4], 1, 0.3, 2.5), randn(&[4], 2)],
            |_, v, _| v[0].pow(v[1]),
        ),
        (
            "pow (base broadcast)",
            vec![uniform(&[3, 1], 3, 0.3, 2.5), randn(&[3, 4], 4)],
            |_, v, _| v[0].pow(v[1]),
        ),
        (
            "maximum",
            vec![randn(&[3, 4], 5), randn(&[4], 6)],
            |_, v, _| v[0].maximum(v[1]),
        ),
        (
            "minimum",
            vec![randn(&[3, 1], 7), randn(&[1, 4], 8)],
            |_, v, _| v[0].minimum(v[1]),
        ),
        ("masked_fill", vec![randn(&[3, 4], 9)], |tape, v, _| {
            v[0].masked_fill(tape.constant(mask(&[4], 10)), 0.5)
        }),
        (
            "masked_fill (mask broadcasts x)",
            vec![randn(&[4], 11)],
            |tape, v, _| v[0].masked_fill(tape.constant(mask(&[3, 4], 12)), -1.0),
        ),
        (
            "where",
            vec![randn(&[3, 4], 13), randn(&[4], 14)],
            |tape, v, _| tape.constant(mask(&[3, 1], 15)).where_(v[0], v[1]),
        ),
        (
            "where of nonlinear branches",
            vec![randn(&[3, 4], 16)],
            |tape, v, _| {
                let c = tape.constant(mask(&[3, 4], 17));
                c.where_(v[0].square()?, v[0].sin()?)
            },
        ),
        (
            "x * (x > 0)",
            vec![away_from_zero(&[3, 4], 18, 0.1)],
            |_, v, _| v[0].mul(v[0].gt_scalar(0.0)?),
        ),
        (
            "maximum of x with x²",
            vec![away_from_zero(&[6], 19, 0.2).map(|x| x * 2.0).unwrap()],
            |_, v, _| v[0].maximum(v[0].square()?),
        ),
        (
            "gelu(x)·pow(x, 2.5)",
            vec![uniform(&[2, 3], 20, 0.2, 2.0)],
            |_, v, _| v[0].gelu()?.mul(v[0].pow_scalar(2.5)?),
        ),
    ]
}

#[test]
fn gradgradcheck_multi_input_ops() {
    for (name, inputs, f) in multi_cases() {
        if let Err(e) = gradgradcheck(f, &inputs, &opts()) {
            panic!("{name}: {e}");
        }
        if let Err(e) = gradcheck(f, &inputs, &opts()) {
            panic!("{name}: {e}");
        }
    }
}

/// The recorded backward (used for second derivatives) gives the same gradients as the plain one.
#[test]
fn graph_backward_matches_plain_backward() {
    type Build = Box<dyn for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>>;
    let mut all: Vec<(String, Vec<Tensor<f64>>, Build)> = vec![];
    for (k, case) in unary_cases().into_iter().enumerate() {
        let op = case.op;
        all.push((
            case.name.to_string(),
            vec![(case.input)(&[3, 5], 900 + k as u64)],
            Box::new(move |v| op(v[0]).unwrap()),
        ));
    }
    for (name, inputs, f) in multi_cases() {
        all.push((
            name.to_string(),
            inputs,
            Box::new(move |v| {
                f(
                    v[0].tape(),
                    v,
                    &mut <Pcg64 as rand::SeedableRng>::seed_from_u64(0),
                )
                .unwrap()
            }),
        ));
    }
    for (name, inputs, f) in all {
        let tape = Tape::new();
        let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
        let y = f(&vars);
        let g = randn(y.shape().dims(), 77);
        let graph = y.backward_graph(Some(tape.constant(g.clone()))).unwrap();
        let plain = y
            .backward_with(BackwardOptions::new().seed(g).retain_graph(true))
            .unwrap();
        for (k, &v) in vars.iter().enumerate() {
            let want = plain.wrt(v).unwrap();
            let got = graph.wrt(v).unwrap().value();
            assert_eq!(got.dims(), want.dims(), "{name} input {k}");
            for (a, b) in got.data().iter().zip(want.data()) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "{name} input {k}: graph {a} vs plain {b}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Formulas of the ops with several inputs, by explicit index loops over a broadcast.

/// Runs `f` on leaves holding `inputs`, seeds backward with `g`, returns (value, input gradients).
fn run(
    inputs: &[Tensor<f64>],
    g: &Tensor<f64>,
    f: impl for<'t> Fn(&[Var<'t, f64>]) -> Result<Var<'t, f64>>,
) -> (Tensor<f64>, Vec<Option<Tensor<f64>>>) {
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let y = f(&vars).unwrap();
    let value = (*y.value()).clone();
    let grads = y
        .backward_with(BackwardOptions::new().seed(g.clone()))
        .unwrap();
    let per_input = vars.iter().map(|&v| grads.get(v).cloned()).collect();
    (value, per_input)
}

#[test]
fn pow_broadcast_formula() {
    // x [2, 3] against e [3]: y[i][j] = x[i][j]^e[j].
    let x = uniform(&[2, 3], 1, 0.3, 2.0);
    let e = t(&[0.0, 1.7, -0.6], &[3]);
    let g = randn(&[2, 3], 2);
    let (y, grads) = run(&[x.clone(), e.clone()], &g, |v| v[0].pow(v[1]));
    let (mut want_y, mut want_dx, mut want_de) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 3]);
    for i in 0..2 {
        for j in 0..3 {
            let (xv, ev, gv) = (x.data()[i * 3 + j], e.data()[j], g.data()[i * 3 + j]);
            want_y[i * 3 + j] = xv.powf(ev);
            want_dx[i * 3 + j] = if ev == 0.0 {
                0.0
            } else {
                gv * ev * xv.powf(ev - 1.0)
            };
            want_de[j] += gv * xv.powf(ev) * xv.ln();
        }
    }
    assert_close(y.data(), &want_y, 1e-14);
    assert_close(grads[0].as_ref().unwrap().data(), &want_dx, 1e-13);
    assert_close(grads[1].as_ref().unwrap().data(), &want_de, 1e-13);
}

#[test]
fn maximum_minimum_broadcast_formula_with_ties() {
    // a [2, 3] against b [3] with ties in (0, 0), (1, 1) and (1, 2).
    let a = t(&[1.0, -2.0, 0.5, 3.0, 4.0, 0.25], &[2, 3]);
    let b = t(&[1.0, 4.0, 0.25], &[3]);
    let g = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    for max in [true, false] {
        let (y, grads) = run(&[a.clone(), b.clone()], &g, |v| {
            if max {
                v[0].maximum(v[1])
            } else {
                v[0].minimum(v[1])
            }
        });
        let (mut want_y, mut want_da, mut want_db) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 3]);
        for i in 0..2 {
            for j in 0..3 {
                let (av, bv, gv) = (a.data()[i * 3 + j], b.data()[j], g.data()[i * 3 + j]);
                let a_wins = if max { av > bv } else { av < bv };
                want_y[i * 3 + j] = if a_wins || av == bv { av } else { bv };
                let (da, db) = if av == bv {
                    (gv / 2.0, gv / 2.0)
                } else if a_wins {
                    (gv, 0.0)
                } else {
                    (0.0, gv)
                };
                want_da[i * 3 + j] = da;
                want_db[j] += db;
            }
        }
        assert_eq!(y.data(), &want_y[..], "max {max}");
        assert_eq!(grads[0].as_ref().unwrap().data(), &want_da[..], "max {max}");
        assert_eq!(grads[1].as_ref().unwrap().data(), &want_db[..], "max {max}");
    }
}

#[test]
fn masked_fill_and_where_broadcast_formulas() {
    // masked_fill: x [3] under a mask [2, 3] gives [2, 3]; x's gradient sums the unmasked rows.
    let x = t(&[1.0, 2.0, 3.0], &[3]);
    let m = t(&[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 3]);
    let g = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let tape = Tape::new();
    let vx = tape.leaf(x.clone());
    let y = vx.masked_fill(tape.constant(m.clone()), -9.0).unwrap();
    let grads = y
        .backward_with(BackwardOptions::new().seed(g.clone()))
        .unwrap();
    let mut want_y = [0.0; 6];
    let mut want_dx = [0.0; 3];
    for i in 0..2 {
        for j in 0..3 {
            let set = m.data()[i * 3 + j] != 0.0;
            want_y[i * 3 + j] = if set { -9.0 } else { x.data()[j] };
            if !set {
                want_dx[j] += g.data()[i * 3 + j];
            }
        }
    }
    assert_eq!(y.value().data(), &want_y[..]);
    assert_eq!(grads.wrt(vx).unwrap().data(), &want_dx[..]);

    // where: cond [2, 1], a [2, 3], b [3].
    let c = t(&[1.0, 0.0], &[2, 1]);
    let a = randn(&[2, 3], 3);
    let b = randn(&[3], 4);
    let tape = Tape::new();
    let (va, vb) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
    let y = tape.constant(c.clone()).where_(va, vb).unwrap();
    let grads = y
        .backward_with(BackwardOptions::new().seed(g.clone()))
        .unwrap();
    let (mut want_y, mut want_da, mut want_db) = (vec![0.0; 6], vec![0.0; 6], vec![0.0; 3]);
    for i in 0..2 {
        for j in 0..3 {
            if c.data()[i] != 0.0 {
                want_y[i * 3 + j] = a.data()[i * 3 + j];
                want_da[i * 3 + j] = g.data()[i * 3 + j];
            } else {
                want_y[i * 3 + j] = b.data()[j];
                want_db[j] += g.data()[i * 3 + j];
            }
        }
    }
    assert_eq!(y.value().data(), &want_y[..]);
    assert_eq!(grads.wrt(va).unwrap().data(), &want_da[..]);
    assert_eq!(grads.wrt(vb).unwrap().data(), &want_db[..]);
}

#[test]
fn comparisons_broadcast_and_carry_no_gradient() {
    let nan = f64::NAN;
    let a = t(&[1.0, 2.0, nan, 0.5, 2.0, -1.0], &[2, 3]);
    let b = t(&[1.0, 0.5, nan], &[3]);
    let tape = Tape::new();
    let (va, vb) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
    type Cmp = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Result<Var<'t, f64>>;
    type Test = fn(f64, f64) -> bool;
    let ops: [(Cmp, Test); 6] = [
        (|a, b| a.gt(b), |a, b| a > b),
        (|a, b| a.ge(b), |a, b| a >= b),
        (|a, b| a.lt(b), |a, b| a < b),
        (|a, b| a.le(b), |a, b| a <= b),
        (|a, b| a.eq(b), |a, b| a == b),
        (|a, b| a.ne(b), |a, b| a != b),
    ];
    for (k, (op, test)) in ops.iter().enumerate() {
        let m = op(va, vb).unwrap();
        assert!(!m.requires_grad(), "comparison {k}");
        assert_eq!(m.shape().dims(), &[2, 3]);
        for i in 0..2 {
            for j in 0..3 {
                let want = if test(a.data()[i * 3 + j], b.data()[j]) {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(
                    m.value().data()[i * 3 + j],
                    want,
                    "comparison {k} at ({i}, {j})"
                );
            }
        }
    }
    // NaN: false for every comparison except `ne`.
    let x = tape.leaf(t(&[nan, 0.5, 1.0], &[3]));
    let c = 0.5;
    assert_eq!(x.gt_scalar(c).unwrap().value().data(), &[0.0, 0.0, 1.0]);
    assert_eq!(x.ge_scalar(c).unwrap().value().data(), &[0.0, 1.0, 1.0]);
    assert_eq!(x.lt_scalar(c).unwrap().value().data(), &[0.0, 0.0, 0.0]);
    assert_eq!(x.le_scalar(c).unwrap().value().data(), &[0.0, 1.0, 0.0]);
    assert_eq!(x.eq_scalar(c).unwrap().value().data(), &[0.0, 1.0, 0.0]);
    assert_eq!(x.ne_scalar(c).unwrap().value().data(), &[1.0, 0.0, 1.0]);
    assert_eq!(x.eq_scalar(nan).unwrap().value().data(), &[0.0, 0.0, 0.0]);
    assert_eq!(x.ne_scalar(nan).unwrap().value().data(), &[1.0, 1.0, 1.0]);
    assert!(!x.gt_scalar(0.0).unwrap().requires_grad());
}

// ---------------------------------------------------------------------------------------------
// Conventions at kinks, ties, bounds and special values, with hand-written expected values
// (PyTorch 2.15's, checked by hand; the golden file holds most of these points too).

/// Value and gradient of `f` at `x` with seed gradient `g`.
fn at(
    x: &[f64],
    g: &[f64],
    f: impl for<'t> Fn(Var<'t, f64>) -> Result<Var<'t, f64>>,
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let (y, grads) = run(&[t(x, &[n])], &t(g, &[n]), |v| f(v[0]));
    (
        y.data().to_vec(),
        grads[0].as_ref().unwrap().data().to_vec(),
    )
}

/// Exact equality that treats NaN as equal to NaN and tells +0 from −0 only through `==`.
fn same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            a == b || (a.is_nan() && b.is_nan()),
            "{what}[{i}]: got {a}, want {b}"
        );
    }
}

/// Equality within `ulps` units in the last place of `want` (for values of the vectorised
/// transcendental kernels, compared with std formulas that round differently).
fn within_ulps(got: &[f64], want: &[f64], ulps: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let tolerance = ulps * b.abs() * f64::EPSILON;
        assert!(
            (a - b).abs() <= tolerance,
            "{what}[{i}]: got {a}, want {b} within {ulps} ulp"
        );
    }
}

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

#[test]
fn abs_gradient_is_zero_at_zero_and_nan() {
    let (y, dx) = at(&[-2.0, -0.0, 0.0, 3.0, NAN], &[5.0; 5], |x| x.abs());
    same(&y, &[2.0, 0.0, 0.0, 3.0, NAN], "abs");
    same(&dx, &[-5.0, 0.0, 0.0, 5.0, 0.0], "abs grad"); // sign(0) = sign(NaN) = 0
}

#[test]
fn clamp_passes_gradient_strictly_inside() {
    let x = [-1.0, -0.5, 0.0, 1.0, 2.0, NAN];
    let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let (y, dx) = at(&x, &g, |x| x.clamp(Some(-0.5), Some(1.0)));
    same(&y, &[-0.5, -0.5, 0.0, 1.0, 1.0, NAN], "clamp");
    same(&dx, &[0.0, 0.0, 3.0, 0.0, 0.0, 0.0], "clamp grad"); // 0 on both bounds
    let (y, dx) = at(&x, &g, |x| x.clamp(Some(-0.5), None));
    same(&y, &[-0.5, -0.5, 0.0, 1.0, 2.0, NAN], "clamp min");
    same(&dx, &[0.0, 0.0, 3.0, 4.0, 5.0, 0.0], "clamp min grad");
    let (y, dx) = at(&x, &g, |x| x.clamp(None, Some(1.0)));
    same(&y, &[-1.0, -0.5, 0.0, 1.0, 1.0, NAN], "clamp max");
    same(&dx, &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], "clamp max grad");
    // min > max: every element becomes max, and nothing is strictly inside.
    let (y, dx) = at(&x, &g, |x| x.clamp(Some(1.0), Some(-1.0)));
    same(&y, &[-1.0, -1.0, -1.0, -1.0, -1.0, NAN], "clamp inverted");
    same(&dx, &[0.0; 6], "clamp inverted grad");
    // A NaN gradient outside does not leak through (a selection, not a product).
    let (_, dx) = at(&[5.0, 0.5], &[NAN, 1.0], |x| x.clamp(Some(0.0), Some(1.0)));
    same(&dx, &[0.0, 1.0], "clamp NaN g");
}

#[test]
fn hardtanh_passes_gradient_strictly_inside() {
    let (y, dx) = at(
        &[-2.0, -1.0, 0.0, 1.0, 2.0, NAN],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        |x| x.hardtanh(-1.0, 1.0),
    );
    same(&y, &[-1.0, -1.0, 0.0, 1.0, 1.0, NAN], "hardtanh");
    same(&dx, &[0.0, 0.0, 3.0, 0.0, 0.0, 0.0], "hardtanh grad");
    // min = max is allowed: a constant, no gradient anywhere.
    let (y, dx) = at(&[-1.0, 0.0, 1.0], &[1.0; 3], |x| x.hardtanh(0.0, 0.0));
    same(&y, &[0.0, 0.0, 0.0], "hardtanh min = max");
    same(&dx, &[0.0, 0.0, 0.0], "hardtanh min = max grad");
}

#[test]
fn leaky_relu_and_elu_take_the_left_branch_at_zero() {
    let x = [-2.0, -0.0, 0.0, 3.0, NAN];
    let g = [1.0, 2.0, 3.0, 4.0, 5.0];
    let (y, dx) = at(&x, &g, |x| x.leaky_relu(0.1));
    same(&y, &[-0.2, -0.0, 0.0, 3.0, NAN], "leaky_relu");
    same(
        &dx,
        &[0.1, 0.2, 0.30000000000000004, 4.0, 0.5],
        "leaky_relu grad",
    ); // g·0.1 at 0 and NaN
    let (y, dx) = at(&x, &g, |x| x.elu(0.5));
    same(&y, &[0.5 * (-2f64).exp_m1(), 0.0, 0.0, 3.0, NAN], "elu");
    same(
        &dx,
        &[0.5 * (-2f64).exp(), 1.0, 1.5, 4.0, NAN],
        "elu grad", // α·g at 0; NaN at NaN
    );
}

#[test]
fn softplus_threshold_and_overflow() {
    // βx = threshold exactly is still the smooth branch (the test is βx > threshold).
    let (y, dx) = at(&[20.0, 20.5, -30.0], &[1.0; 3], |x| x.softplus(1.0, 20.0));
    same(
        &y,
        &[20f64.exp().ln_1p(), 20.5, (-30f64).exp().ln_1p()],
        "softplus",
    );
    // The smooth branch's slope σ(βx) comes from the vectorised kernel, within an ulp of these
    // std formulas (which themselves round twice); the linear branch's slope is exactly 1.
    within_ulps(
        &dx,
        &[
            20f64.exp() / (20f64.exp() + 1.0),
            1.0,
            (-30f64).exp() / ((-30f64).exp() + 1.0),
        ],
        2.0,
        "softplus grad",
    );
    assert_eq!(dx[1], 1.0);
    // threshold = ∞: never linear; where e^(βx) overflows the value is x and the slope 1 (PyTorch
    // gives ∞ and NaN there).
    let (y, dx) = at(&[800.0, 1.0], &[1.0; 2], |x| x.softplus(1.0, f64::INFINITY));
    same(&y, &[800.0, 1f64.exp().ln_1p()], "softplus inf threshold");
    within_ulps(
        &dx,
        &[1.0, 1f64.exp() / (1f64.exp() + 1.0)],
        2.0,
        "softplus inf threshold grad",
    );
    assert_eq!(dx[0], 1.0);
    // β < 0 flips the curve: ln(1 + e^(βx))/β ≤ 0.
    let (y, _) = at(&[0.0], &[1.0], |x| x.softplus(-1.0, 20.0));
    same(&y, &[-(2f64.ln())], "softplus beta -1");
}

#[test]
fn pow_scalar_at_zero_follows_pytorch() {
    let x = [0.0, -0.0, 2.0, NAN];
    let g = [1.0; 4];
    let cases: [(f64, [f64; 4], [f64; 4]); 6] = [
        // e = 0: the value is 1 everywhere (NaN too) and the gradient exactly 0.
        (0.0, [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]),
        // e = 1: a copy, gradient g even at NaN (x^0 = 1).
        (1.0, [0.0, -0.0, 2.0, NAN], [1.0, 1.0, 1.0, 1.0]),
        // e = ½ is sqrt: ±∞ at ±0.
        (
            0.5,
            [0.0, -0.0, 2f64.sqrt(), NAN],
            [INF, -INF, 0.5 / 2f64.sqrt(), NAN],
        ),
        (2.0, [0.0, 0.0, 4.0, NAN], [0.0, -0.0, 4.0, NAN]),
        (
            1.5,
            [0.0, 0.0, 2f64.powf(1.5), NAN],
            [0.0, -0.0, 1.5 * 2f64.sqrt(), NAN],
        ),
        (-1.0, [INF, -INF, 0.5, NAN], [-INF, -INF, -0.25, NAN]),
    ];
    for (e, want_y, want_dx) in cases {
        let (y, dx) = at(&x, &g, |x| x.pow_scalar(e));
        same(&y, &want_y, &format!("pow_scalar({e})"));
        same(&dx, &want_dx, &format!("pow_scalar({e}) grad"));
    }
}

#[test]
fn pow_masks_at_zero_base_and_zero_exponent() {
    let x = t(&[0.0, 0.0, 0.0, 2.0, -2.0], &[5]);
    let e = t(&[0.0, 1.0, 2.5, 0.0, 0.5], &[5]);
    let g = t(&[1.0; 5], &[5]);
    let (y, grads) = run(&[x, e], &g, |v| v[0].pow(v[1]));
    same(y.data(), &[1.0, 0.0, 0.0, 1.0, NAN], "pow");
    // ∂/∂x: 0 where e = 0 (even at x = 0); e·x^(e−1) elsewhere (NaN for a negative base).
    same(
        grads[0].as_ref().unwrap().data(),
        &[0.0, 1.0, 0.0, 0.0, NAN],
        "pow grad base",
    );
    // ∂/∂e: 0 where x = 0 and e ≥ 0; xᵉ·ln x elsewhere.
    same(
        grads[1].as_ref().unwrap().data(),
        &[0.0, 0.0, 0.0, 2f64.ln(), NAN],
        "pow grad exponent",
    );
    // x = 0 with e < 0: the mask does not apply; ∞·(−∞).
    let (_, grads) = run(
        &[t(&[0.0], &[1]), t(&[-1.0], &[1])],
        &t(&[1.0], &[1]),
        |v| v[0].pow(v[1]),
    );
    same(
        grads[1].as_ref().unwrap().data(),
        &[-INF],
        "pow grad exponent, e < 0",
    );
}

#[test]
fn maximum_minimum_split_ties_and_pass_nan() {
    let a = t(&[1.0, 2.0, 3.0, NAN, 1.0], &[5]);
    let b = t(&[1.0, 1.0, 4.0, 1.0, NAN], &[5]);
    let g = t(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5]);
    let (y, grads) = run(&[a.clone(), b.clone()], &g, |v| v[0].maximum(v[1]));
    same(y.data(), &[1.0, 2.0, 4.0, NAN, NAN], "maximum");
    same(
        grads[0].as_ref().unwrap().data(),
        &[0.5, 2.0, 0.0, 4.0, 5.0],
        "maximum grad a",
    );
    same(
        grads[1].as_ref().unwrap().data(),
        &[0.5, 0.0, 3.0, 4.0, 5.0],
        "maximum grad b",
    );
    let (y, grads) = run(&[a, b], &g, |v| v[0].minimum(v[1]));
    same(y.data(), &[1.0, 1.0, 3.0, NAN, NAN], "minimum");
    same(
        grads[0].as_ref().unwrap().data(),
        &[0.5, 0.0, 3.0, 4.0, 5.0],
        "minimum grad a",
    );
    same(
        grads[1].as_ref().unwrap().data(),
        &[0.5, 2.0, 0.0, 4.0, 5.0],
        "minimum grad b",
    );
    // A broadcast operand tied in two places collects both halves.
    let (_, grads) = run(
        &[t(&[2.0, 2.0], &[2]), t(&[2.0], &[1])],
        &t(&[1.0, 3.0], &[2]),
        |v| v[0].maximum(v[1]),
    );
    same(
        grads[1].as_ref().unwrap().data(),
        &[2.0],
        "maximum tie broadcast",
    );
}

#[test]
fn selections_keep_nan_out_of_the_branch_not_taken() {
    // where_: the branch not taken holds NaN and ∞; its gradient is exactly 0 there.
    let tape = Tape::new();
    let a = tape.leaf(t(&[NAN, 1.0, INF], &[3]));
    let b = tape.leaf(t(&[5.0, NAN, 6.0], &[3]));
    let cond = tape.constant(t(&[0.0, 1.0, 0.0], &[3]));
    let y = cond.where_(a, b).unwrap();
    same(y.value().data(), &[5.0, 1.0, 6.0], "where");
    let grads = y.sum().unwrap().backward().unwrap();
    same(
        grads.wrt(a).unwrap().data(),
        &[0.0, 1.0, 0.0],
        "where grad a",
    );
    same(
        grads.wrt(b).unwrap().data(),
        &[1.0, 0.0, 1.0],
        "where grad b",
    );
    // masked_fill: a NaN mask element counts as set (nonzero); a NaN gradient under the mask does
    // not reach x.
    let tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0, 3.0], &[3]));
    let m = tape.constant(t(&[1.0, 0.0, NAN], &[3]));
    let y = x.masked_fill(m, -INF).unwrap();
    same(y.value().data(), &[-INF, 2.0, -INF], "masked_fill");
    let grads = y
        .backward_with(BackwardOptions::new().seed(t(&[NAN, 2.0, NAN], &[3])))
        .unwrap();
    same(
        grads.wrt(x).unwrap().data(),
        &[0.0, 2.0, 0.0],
        "masked_fill grad",
    );
    // A mask or condition that is a leaf gets no gradient.
    let tape = Tape::new();
    let x = tape.leaf(t(&[1.0, 2.0], &[2]));
    let m = tape.leaf(t(&[1.0, 0.0], &[2]));
    let grads = x
        .masked_fill(m, 0.0)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(m).is_none());
}

#[test]
fn sqrt_and_reciprocal_at_zero() {
    let (y, dx) = at(&[0.0, -0.0, 4.0], &[1.0, 1.0, 1.0], |x| x.sqrt());
    same(&y, &[0.0, -0.0, 2.0], "sqrt");
    same(&dx, &[INF, -INF, 0.25], "sqrt grad"); // g / (2·(±0))
    let (y, dx) = at(&[0.0, 2.0], &[1.0, 1.0], |x| x.reciprocal());
    same(&y, &[INF, 0.5], "reciprocal");
    same(&dx, &[-INF, -0.25], "reciprocal grad");
}

// ---------------------------------------------------------------------------------------------
// Operators and item.

#[test]
fn operators_record_the_named_ops() {
    let tape = Tape::new();
    let a = tape.leaf(randn(&[2, 3], 1));
    let b = tape.leaf(away_from_zero(&[3], 2, 0.5));
    let pairs: Vec<(Var<'_, f64>, Var<'_, f64>)> = vec![
        ((a + b).unwrap(), a.add(b).unwrap()),
        ((&a + &b).unwrap(), a.add(b).unwrap()),
        ((a + &b).unwrap(), a.add(b).unwrap()),
        ((&a + b).unwrap(), a.add(b).unwrap()),
        ((a - b).unwrap(), a.sub(b).unwrap()),
        ((&a - &b).unwrap(), a.sub(b).unwrap()),
        ((a * b).unwrap(), a.mul(b).unwrap()),
        ((&a * b).unwrap(), a.mul(b).unwrap()),
        ((a / b).unwrap(), a.div(b).unwrap()),
        ((a / &b).unwrap(), a.div(b).unwrap()),
        ((a + 2.0).unwrap(), a.add_scalar(2.0).unwrap()),
        ((&a + 2.0).unwrap(), a.add_scalar(2.0).unwrap()),
        ((a - 2.0).unwrap(), a.add_scalar(-2.0).unwrap()),
        ((a - 2.0).unwrap(), a.sub_scalar(2.0).unwrap()),
        ((a * 2.0).unwrap(), a.mul_scalar(2.0).unwrap()),
        ((&a / 3.0).unwrap(), a.div_scalar(3.0).unwrap()),
        ((2.0 + a).unwrap(), a.add_scalar(2.0).unwrap()),
        ((2.0 * &a).unwrap(), a.mul_scalar(2.0).unwrap()),
        (
            (2.0 - a).unwrap(),
            a.neg().unwrap().add_scalar(2.0).unwrap(),
        ),
        (
            (3.0 / b).unwrap(),
            b.reciprocal().unwrap().mul_scalar(3.0).unwrap(),
        ),
        ((-a).unwrap(), a.neg().unwrap()),
        ((-&a).unwrap(), a.neg().unwrap()),
    ];
    for (k, (op, named)) in pairs.iter().enumerate() {
        assert_eq!(*op.value(), *named.value(), "pair {k}");
    }
    // c − x is computed exactly as c − x, and x − c as x − c.
    let x = tape.leaf(t(&[0.1, 1e-20, 3.0], &[3]));
    let want: Vec<f64> = [0.1, 1e-20, 3.0].iter().map(|v| 0.7 - v).collect();
    assert_eq!((0.7 - x).unwrap().value().data(), &want[..]);
    let want: Vec<f64> = [0.1, 1e-20, 3.0].iter().map(|v| v - 0.7).collect();
    assert_eq!((x - 0.7).unwrap().value().data(), &want[..]);
    // The operators compose with `?` and backpropagate.
    let f = |a: Var<'_, f64>, b: Var<'_, f64>| -> Result<f64> {
        let y = (((&a * &b)? - 1.0)? / b)?;
        let loss = (-(2.0 * y)?)?.sum()?;
        loss.item()
    };
    assert!(f(a, b).unwrap().is_finite());
    // f32 works the same way.
    let tape32 = Tape::<f32>::new();
    let x = tape32.leaf(Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap());
    let y = ((1.0f32 - x).unwrap() * 4.0f32).unwrap();
    assert_eq!(y.value().data(), &[0.0f32, -4.0]);
    assert_eq!((2.0f32 / x).unwrap().value().data(), &[2.0f32, 1.0]);
}

#[test]
fn item_reads_one_element_and_rejects_more() {
    let tape = Tape::new();
    assert_eq!(tape.leaf(Tensor::scalar(2.5f64)).item().unwrap(), 2.5);
    assert_eq!(tape.leaf(t(&[7.0], &[1, 1])).item().unwrap(), 7.0);
    assert!(matches!(
        tape.leaf(t(&[1.0, 2.0], &[2])).item(),
        Err(Error::BadRank { op: "item", .. })
    ));
    assert!(matches!(
        tape.leaf(t(&[], &[0])).item(),
        Err(Error::BadRank { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn bad_hyperparameters_are_errors() {
    let tape = Tape::new();
    let x = tape.leaf(randn(&[3], 1));
    let bad = |r: Result<Var<'_, f64>>, op: &str, name: &str| match r {
        Err(Error::InvalidHyperparameter { op: o, name: n, .. }) if o == op && n == name => {}
        other => panic!("{op} {name}: expected InvalidHyperparameter, got {other:?}"),
    };
    bad(x.softplus(0.0, 20.0), "softplus", "beta");
    bad(x.softplus(NAN, 20.0), "softplus", "beta");
    bad(x.softplus(INF, 20.0), "softplus", "beta");
    bad(x.softplus(1.0, NAN), "softplus", "threshold");
    bad(x.leaky_relu(NAN), "leaky_relu", "negative_slope");
    bad(x.leaky_relu(-INF), "leaky_relu", "negative_slope");
    bad(x.elu(NAN), "elu", "alpha");
    bad(x.elu(INF), "elu", "alpha");
    bad(x.hardtanh(NAN, 1.0), "hardtanh", "min");
    bad(x.hardtanh(-1.0, NAN), "hardtanh", "max");
    bad(x.hardtanh(1.0, -1.0), "hardtanh", "min");
    bad(x.clamp(Some(NAN), None), "clamp", "min");
    bad(x.clamp(Some(0.0), Some(NAN)), "clamp", "max");
    assert!(matches!(
        x.clamp(None, None),
        Err(Error::InvalidArgument { op: "clamp", .. })
    ));
    // Accepted as in PyTorch: negative slopes, alphas and betas, infinite bounds and thresholds.
    assert!(x.leaky_relu(-0.5).is_ok());
    assert!(x.elu(-1.0).is_ok());
    assert!(x.softplus(-2.0, INF).is_ok());
    assert!(x.hardtanh(-INF, INF).is_ok());
    assert!(x.clamp(Some(-INF), None).is_ok());
    assert!(x.pow_scalar(NAN).is_ok());
    // A rejected op records nothing.
    let before = tape.len();
    assert!(x.softplus(0.0, 1.0).is_err());
    assert_eq!(tape.len(), before);
}

#[test]
fn shape_mismatches_are_errors() {
    let tape = Tape::new();
    let a = tape.leaf(randn(&[2, 3], 1));
    let b = tape.leaf(randn(&[4], 2));
    let c = tape.leaf(randn(&[2, 1], 3));
    type Bin = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Result<Var<'t, f64>>;
    let ops: [(&str, Bin); 15] = [
        ("pow", |a, b| a.pow(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
        ("gt", |a, b| a.gt(b)),
        ("ge", |a, b| a.ge(b)),
        ("lt", |a, b| a.lt(b)),
        ("le", |a, b| a.le(b)),
        ("eq", |a, b| a.eq(b)),
        ("ne", |a, b| a.ne(b)),
        ("masked_fill", |a, b| a.masked_fill(b, 0.0)),
        ("add", |a, b| a + b),
        ("sub", |a, b| &a - &b),
        ("mul", |a, b| a * &b),
        ("div", |a, b| &a / b),
        ("where", |a, b| a.where_(a, b)),
    ];
    for (name, op) in ops {
        match op(a, b) {
            Err(Error::ShapeMismatch { op, lhs, rhs }) => {
                assert_eq!(op, name);
                assert!(!lhs.dims().is_empty() && !rhs.dims().is_empty());
            }
            other => panic!("{name}: expected ShapeMismatch, got {other:?}"),
        }
    }
    // where_: any of the three can be the one that does not fit.
    for (cond, x, y) in [(b, a, c), (a, b, c), (a, c, b)] {
        assert!(matches!(
            cond.where_(x, y),
            Err(Error::ShapeMismatch { op: "where", .. })
        ));
    }
}

#[test]
fn vars_of_another_tape_are_errors() {
    let (t1, t2) = (Tape::new(), Tape::new());
    let a = t1.leaf(randn(&[3], 1));
    let b = t2.leaf(randn(&[3], 2));
    type Bin = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Result<Var<'t, f64>>;
    let ops: [(&str, Bin); 12] = [
        ("pow", |a, b| a.pow(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
        ("gt", |a, b| a.gt(b)),
        ("ge", |a, b| a.ge(b)),
        ("lt", |a, b| a.lt(b)),
        ("le", |a, b| a.le(b)),
        ("eq", |a, b| a.eq(b)),
        ("ne", |a, b| a.ne(b)),
        ("masked_fill", |a, b| a.masked_fill(b, 0.0)),
        ("where", |a, b| a.where_(a, b)),
        ("where", |a, b| b.where_(a, a)),
    ];
    for (name, op) in ops {
        match op(a, b) {
            Err(Error::ForeignVar { op }) => assert_eq!(op, name),
            other => panic!("{name}: expected ForeignVar, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Large tensors take the chunked, multi-threaded path; results do not depend on it.

#[test]
fn large_tensors_match_element_by_element_results() {
    tapegrad::set_num_threads(2);
    let n = (1 << 18) + 123;
    let x = randn(&[n], 5);
    let tape = Tape::new();
    let v = tape.leaf(x.clone());
    type U = for<'t> fn(Var<'t, f64>) -> Result<Var<'t, f64>>;
    let ops: [U; 4] = [
        |x| x.gelu(),
        |x| x.erf(),
        |x| x.softplus(1.0, 20.0),
        |x| x.abs(),
    ];
    for op in ops {
        let big = op(v).unwrap();
        let dx = big
            .backward_with(BackwardOptions::new().seed(x.clone()).retain_graph(true))
            .unwrap();
        let dx = dx.wrt(v).unwrap();
        // The same op on a few single elements, far from the chunk boundaries and at them.
        for i in [0, 1, 16383, 16384, 16385, n / 2, n - 1] {
            let small_tape = Tape::new();
            let s = small_tape.leaf(t(&[x.data()[i]], &[1]));
            let y = op(s).unwrap();
            let g = y
                .backward_with(BackwardOptions::new().seed(t(&[x.data()[i]], &[1])))
                .unwrap();
            assert_eq!(big.value().data()[i], y.value().data()[0], "value {i}");
            assert_eq!(dx.data()[i], g.wrt(s).unwrap().data()[0], "grad {i}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PyTorch golden values.

/// The element types, with their golden-file readers and tolerances.
trait Num: Float
where
    Self: for<'t> Div<Var<'t, Self>, Output = Result<Var<'t, Self>>>,
    Self: for<'t> Sub<Var<'t, Self>, Output = Result<Var<'t, Self>>>,
{
    const TAG: &'static str;
    const RTOL: f64;
    const ATOL: f64;
    fn load(golden: &Golden, name: &str) -> Tensor<Self>;
}

impl Num for f32 {
    const TAG: &'static str = "f32";
    const RTOL: f64 = 1e-5;
    const ATOL: f64 = 1e-6;
    fn load(golden: &Golden, name: &str) -> Tensor<f32> {
        golden.f32(name)
    }
}

impl Num for f64 {
    const TAG: &'static str = "f64";
    const RTOL: f64 = 1e-12;
    const ATOL: f64 = 1e-12;
    fn load(golden: &Golden, name: &str) -> Tensor<f64> {
        golden.f64(name)
    }
}

/// The op each golden case names, for either element type.
fn apply<'t, T: Num>(case: &str, v: &[Var<'t, T>]) -> Result<Var<'t, T>> {
    let c = T::from_f64;
    if let Some(label) = case.strip_prefix("pow_scalar_") {
        let e: f64 = label.replace('m', "-").replace('p', ".").parse().unwrap();
        return v[0].pow_scalar(c(e));
    }
    match case {
        "sqrt" => v[0].sqrt(),
        "rsqrt" => v[0].rsqrt(),
        "square" => v[0].square(),
        "reciprocal" => v[0].reciprocal(),
        "abs" => v[0].abs(),
        "sin" => v[0].sin(),
        "cos" => v[0].cos(),
        "log1p" => v[0].log1p(),
        "expm1" => v[0].expm1(),
        "erf" => v[0].erf(),
        "clamp_both" => v[0].clamp(Some(c(-0.5)), Some(c(1.0))),
        "clamp_min" => v[0].clamp(Some(c(0.0)), None),
        "clamp_max" => v[0].clamp(None, Some(c(0.5))),
        "clamp_inverted" => v[0].clamp(Some(c(1.0)), Some(c(-1.0))),
        "gelu" => v[0].gelu(),
        "gelu_tanh" => v[0].gelu_tanh(),
        "silu" => v[0].silu(),
        "softplus" => v[0].softplus(c(1.0), c(20.0)),
        "softplus_beta2" => v[0].softplus(c(2.0), c(5.0)),
        "softplus_negbeta" => v[0].softplus(c(-1.5), c(20.0)),
        "leaky_relu" => v[0].leaky_relu(c(0.01)),
        "leaky_relu_0p2" => v[0].leaky_relu(c(0.2)),
        "leaky_relu_neg" => v[0].leaky_relu(c(-0.5)),
        "elu" => v[0].elu(c(1.0)),
        "elu_0p5" => v[0].elu(c(0.5)),
        "hardtanh" => v[0].hardtanh(c(-1.0), c(1.0)),
        "hardtanh_relu6" => v[0].hardtanh(c(0.0), c(6.0)),
        "pow" | "pow_bcast_base" | "pow_special" => v[0].pow(v[1]),
        "maximum" | "maximum_nan" => v[0].maximum(v[1]),
        "minimum" | "minimum_nan" => v[0].minimum(v[1]),
        "gt" => v[0].gt(v[1]),
        "ge" => v[0].ge(v[1]),
        "lt" => v[0].lt(v[1]),
        "le" => v[0].le(v[1]),
        "eq" => v[0].eq(v[1]),
        "ne" => v[0].ne(v[1]),
        "gt_scalar" => v[0].gt_scalar(c(0.5)),
        "ge_scalar" => v[0].ge_scalar(c(0.5)),
        "lt_scalar" => v[0].lt_scalar(c(0.5)),
        "le_scalar" => v[0].le_scalar(c(0.5)),
        "eq_scalar" => v[0].eq_scalar(c(0.5)),
        "ne_scalar" => v[0].ne_scalar(c(0.5)),
        "masked_fill" => v[0].masked_fill(v[1], T::NEG_INFINITY),
        "masked_fill_bcast" => v[0].masked_fill(v[1], c(0.25)),
        "where" | "where_scalar" => v[0].where_(v[1], v[2]),
        "rdiv" => c(2.0) / v[0],
        "rsub" => c(1.5) - v[0],
        other => panic!("golden case {other} has no op here"),
    }
}

/// |ours − theirs| ≤ atol + rtol·|theirs|, with NaN matching NaN and ∞ matching the same ∞.
fn compare<T: Num>(what: &str, ours: &Tensor<T>, theirs: &Tensor<T>) -> f64 {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in ours.data().iter().zip(theirs.data()).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "{what}[{i}]: tapegrad {a:e} vs PyTorch {b:e}"
            );
            continue;
        }
        let allowed = T::ATOL + T::RTOL * b.abs();
        assert!(
            (a - b).abs() <= allowed,
            "{what}[{i}]: tapegrad {a:e} vs PyTorch {b:e}"
        );
        worst = worst.max((a - b).abs() / allowed);
    }
    worst
}

/// Every case of the golden file, forward and backward, through the plain and the recorded
/// backward pass. Returns how many cases ran.
fn golden_cases<T: Num>() -> usize {
    let golden = Golden::open("ops_elementwise.safetensors");
    let prefix = format!(".{}.", T::TAG);
    let mut cases: Vec<String> = golden
        .names()
        .iter()
        .filter_map(|n| n.split_once(&prefix).map(|(case, _)| case.to_string()))
        .collect();
    cases.dedup();
    let mut worst = (0.0f64, String::new());
    for case in &cases {
        let key = |s: &str| format!("{case}.{}.{s}", T::TAG);
        let inputs: Vec<Tensor<T>> = (0..)
            .map(|k| key(&format!("in{k}")))
            .take_while(|n| golden.has(n))
            .map(|n| T::load(&golden, &n))
            .collect();
        for graph in [false, true] {
            let tape = Tape::<T>::new();
            let vars: Vec<Var<'_, T>> = inputs
                .iter()
                .enumerate()
                .map(|(k, x)| {
                    if golden.has(&key(&format!("grad{k}"))) {
                        tape.leaf(x.clone())
                    } else {
                        tape.constant(x.clone())
                    }
                })
                .collect();
            let y = apply(case, &vars).unwrap_or_else(|e| panic!("{case}: {e}"));
            let w = compare(&key("out"), &y.value(), &T::load(&golden, &key("out")));
            if w > worst.0 {
                worst = (w, key("out"));
            }
            if !golden.has(&key("g")) {
                assert!(!y.requires_grad(), "{case}: PyTorch has no gradient");
                continue;
            }
            let g = T::load(&golden, &key("g"));
            let grads: Vec<Option<Tensor<T>>> = if graph {
                let grads = y.backward_graph(Some(tape.constant(g))).unwrap();
                vars.iter()
                    .map(|&v| grads.wrt(v).ok().map(|g| (*g.value()).clone()))
                    .collect()
            } else {
                let grads = y.backward_with(BackwardOptions::new().seed(g)).unwrap();
                vars.iter().map(|&v| grads.get(v).cloned()).collect()
            };
            for (k, grad) in grads.iter().enumerate() {
                let name = key(&format!("grad{k}"));
                if golden.has(&name) {
                    let ours = grad
                        .as_ref()
                        .unwrap_or_else(|| panic!("{name}: no gradient"));
                    let what = format!(
                        "{name} ({} backward)",
                        if graph { "graph" } else { "plain" }
                    );
                    let w = compare(&what, ours, &T::load(&golden, &name));
                    if w > worst.0 {
                        worst = (w, what);
                    }
                }
            }
        }
    }
    println!(
        "{} golden cases in {}: the closest entry used {:.3} of its tolerance ({})",
        cases.len(),
        T::TAG,
        worst.0,
        worst.1
    );
    cases.len()
}

#[test]
fn golden_f32_matches_pytorch() {
    assert!(golden_cases::<f32>() >= 60);
}

#[test]
fn golden_f64_matches_pytorch() {
    assert!(golden_cases::<f64>() >= 60);
}
