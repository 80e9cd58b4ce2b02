//! Gradient testing as a job: the functional derivatives against PyTorch's
//! `torch.autograd.functional` (golden file), and every checker against planted bugs — each must
//! fail on a wrong rule (a sign, a missing factor of 2, a transposed matrix, a mask not reused, a
//! missing accumulation) and pass on the right one.

mod common;

use common::Golden;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::functional::{hessian, jacobian, jvp, vjp};
use tapegrad::gradcheck::{
    Culprit, Difference, ManualCheckOptions, ModuleCheckOptions, OpSweepOptions, OpUnderTest,
    ToF64, check_manual_gradients, check_op, gradcheck_module,
};
use tapegrad::lesson::LessonConfig;
use tapegrad::nn::{Context, Dropout, Forward, Linear, Module, ReLU, Sequential, Visitor};
use tapegrad::ops::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use tapegrad::{
    BitMask, Error, Float, GradcheckOptions, Param, Result, Tape, Tensor, Var, gradcheck,
};

/// Gives a closure the higher-ranked signature the functional derivatives want.
fn fun<T: Float, F>(f: F) -> F
where
    F: for<'t> Fn(&'t Tape<T>, &[Var<'t, T>]) -> Result<Vec<Var<'t, T>>> + Copy,
{
    f
}

/// Gives a closure the higher-ranked signature gradcheck wants.
fn checked<F>(f: F) -> F
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>> + Copy,
{
    f
}

// ---------------------------------------------------------------------------------------------
// Functional derivatives against torch.autograd.functional.

/// The golden cases, written once for both float types (the same functions as
/// tests/golden/functional.py).
fn case<'t, T: Float>(name: &str, v: &[Var<'t, T>]) -> Result<Vec<Var<'t, T>>> {
    Ok(match name {
        "layer" => vec![
            v[0].matmul(v[1])?.add(v[2])?.tanh()?,
            v[0].mul(v[0])?.sum_axis(1, false)?,
        ],
        "softmax" => vec![v[0].softmax()?],
        "broadcast" => vec![v[0].mul(v[1])?.exp()?.sub(v[0])?],
        "cubic" => {
            let s = v[0].mul(v[1])?.sum()?;
            vec![
                v[0].pow_scalar(T::from_f64(3.0))?
                    .mul(v[1])?
                    .sum()?
                    .add(s.mul(s)?)?,
            ]
        }
        "lse_sin" => vec![
            v[0].logsumexp(Some(0), false)?
                .add(v[0].sin()?.mul(v[0])?.sum()?)?,
        ],
        "tanh_matmul" => vec![v[0].matmul(v[1])?.tanh()?.sum()?],
        other => panic!("no case {other}"),
    })
}

const CASES: [(&str, usize, usize, bool); 6] = [
    // name, inputs, outputs, scalar (has a Hessian)
    ("layer", 3, 2, false),
    ("softmax", 1, 1, false),
    ("broadcast", 2, 1, false),
    ("cubic", 2, 1, true),
    ("lse_sin", 1, 1, true),
    ("tanh_matmul", 2, 1, true),
];

trait GoldenRead: Float {
    fn read(g: &Golden, name: &str) -> Tensor<Self>;
    const RTOL: f64;
    const ATOL: f64;
}
impl GoldenRead for f32 {
    fn read(g: &Golden, name: &str) -> Tensor<f32> {
        g.f32(name)
    }
    const RTOL: f64 = 1e-5;
    const ATOL: f64 = 1e-6;
}
impl GoldenRead for f64 {
    fn read(g: &Golden, name: &str) -> Tensor<f64> {
        g.f64(name)
    }
    const RTOL: f64 = 1e-12;
    const ATOL: f64 = 1e-12;
}

fn assert_matches<T: GoldenRead>(got: &Tensor<T>, golden: &Golden, name: &str) {
    let want = T::read(golden, name);
    assert_eq!(got.dims(), want.dims(), "{name}: shape");
    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(
            (g - w).abs() <= T::ATOL + T::RTOL * w.abs(),
            "{name}[{i}]: got {g:e}, PyTorch {w:e}"
        );
    }
}

fn functional_cases_match_pytorch<T: GoldenRead>() {
    let golden = Golden::open("functional.safetensors");
    for (name, n_in, n_out, scalar) in CASES {
        let p = format!("{name}.{}.", T::DTYPE);
        let inputs: Vec<Tensor<T>> = (0..n_in)
            .map(|k| T::read(&golden, &format!("{p}in{k}")))
            .collect();
        let f = fun(|_, v| case(name, v));

        let j = jacobian(f, &inputs).unwrap();
        assert_eq!((j.len(), j[0].len()), (n_out, n_in));
        for (i, row) in j.iter().enumerate() {
            for (k, block) in row.iter().enumerate() {
                assert_matches(block, &golden, &format!("{p}jac{i}_{k}"));
            }
        }

        let cot: Vec<Tensor<T>> = (0..n_out)
            .map(|i| T::read(&golden, &format!("{p}vjp_v{i}")))
            .collect();
        let (outs, vj) = vjp(f, &inputs, &cot).unwrap();
        for (i, o) in outs.iter().enumerate() {
            assert_matches(o, &golden, &format!("{p}out{i}"));
        }
        for (k, g) in vj.iter().enumerate() {
            assert_matches(g, &golden, &format!("{p}vjp{k}"));
        }

        let tan: Vec<Tensor<T>> = (0..n_in)
            .map(|k| T::read(&golden, &format!("{p}jvp_v{k}")))
            .collect();
        let (_, jv) = jvp(f, &inputs, &tan).unwrap();
        for (i, g) in jv.iter().enumerate() {
            assert_matches(g, &golden, &format!("{p}jvp{i}"));
        }

        if scalar {
            let h = hessian(f, &inputs).unwrap();
            for (k, row) in h.iter().enumerate() {
                for (l, block) in row.iter().enumerate() {
                    assert_matches(block, &golden, &format!("{p}hess{k}_{l}"));
                }
            }
        }
    }
}

#[test]
fn functional_derivatives_match_pytorch_in_f64() {
    functional_cases_match_pytorch::<f64>();
}

#[test]
fn functional_derivatives_match_pytorch_in_f32() {
    functional_cases_match_pytorch::<f32>();
}

#[test]
fn functional_derivatives_validate_their_arguments() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap();
    let f = fun(|_, v: &[Var<'_, f64>]| Ok(vec![v[0].mul(v[0])?]));
    // v of the wrong shape or count.
    let bad = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap();
    assert!(matches!(
        vjp(f, std::slice::from_ref(&x), std::slice::from_ref(&bad)),
        Err(Error::ShapeMismatch { op: "vjp", .. })
    ));
    assert!(matches!(
        jvp(f, std::slice::from_ref(&x), &[]),
        Err(Error::ArgumentCount { op: "jvp", .. })
    ));
    // The Hessian of a non-scalar function.
    assert!(matches!(
        hessian(f, std::slice::from_ref(&x)),
        Err(Error::NonScalarLoss { .. })
    ));
    // An output that does not depend on the inputs: zero derivatives, as PyTorch gives
    // (with strict=False).
    let constant = fun(|t: &Tape<f64>, _| Ok(vec![t.constant(Tensor::ones(&[3])?)]));
    let j = jacobian(constant, std::slice::from_ref(&x)).unwrap();
    assert_eq!(j[0][0].dims(), &[3, 2]);
    assert!(j[0][0].data().iter().all(|&v| v == 0.0));
    let (_, jv) = jvp(constant, std::slice::from_ref(&x), std::slice::from_ref(&x)).unwrap();
    assert_eq!(jv[0].data(), &[0.0; 3]);
}

// ---------------------------------------------------------------------------------------------
// Planted bugs: custom ops with a right rule and wrong ones.

/// Which rule a planted op uses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Right,
    /// The sign flipped.
    Sign,
    /// A factor of 2 missing.
    NoTwo,
    /// A transposed matrix.
    Transposed,
    /// The gradient of a broadcast input taken from one slice instead of summed.
    NoAccumulation,
    /// The recorded backward uses the input's value as a constant: right values, but the second
    /// derivative through it is lost.
    Detached,
}

/// y = x², with the plain and the recorded backward chosen separately; in f32 the forward may
/// also be planted wrong (`sloppy_f32`).
#[derive(Debug)]
struct SquareBackward {
    plain: Rule,
    graph: Rule,
}

impl<T: Float> Backward<T> for SquareBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let k = match self.plain {
            Rule::Right => 2.0,
            Rule::Sign => -2.0,
            Rule::NoTwo => 1.0,
            other => unreachable!("{other:?}"),
        };
        let k = T::from_f64(k);
        let dx = g.zip_map(cx.input(0), "square", move |g, x| k * g * x)?;
        Ok([Some(dx)].into_iter().collect())
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let k = match self.graph {
            Rule::Right | Rule::Detached => 2.0,
            Rule::Sign => -2.0,
            Rule::NoTwo => 1.0,
            other => unreachable!("{other:?}"),
        };
        let x = if self.graph == Rule::Detached {
            cx.tape().constant(cx.input(0).value().try_clone()?)
        } else {
            cx.input(0)
        };
        Ok([Some(g.mul(x)?.mul_scalar(T::from_f64(k))?)]
            .into_iter()
            .collect())
    }
}

struct Square {
    plain: Rule,
    graph: Rule,
    sloppy_f32: bool,
}

impl Square {
    fn right() -> Self {
        Square {
            plain: Rule::Right,
            graph: Rule::Right,
            sloppy_f32: false,
        }
    }
}

impl OpUnderTest for Square {
    fn name(&self) -> &str {
        "square"
    }
    fn arity(&self) -> usize {
        1
    }
    fn forward<'t, T: Float>(&self, x: &[Var<'t, T>]) -> Result<Var<'t, T>> {
        // The planted f32 bug: a relative error of 1e-3 in the f32 forward only.
        let fudge = if self.sloppy_f32 && T::DTYPE == "float32" {
            T::from_f64(1.001)
        } else {
            T::ONE
        };
        let value = x[0].value().map(|v| v * v * fudge)?;
        x[0].tape().push_op(
            "square",
            value,
            &[x[0]],
            SquareBackward {
                plain: self.plain,
                graph: self.graph,
            },
        )
    }
}

/// y = a ⊙ b with broadcasting; the gradient of a broadcast input must be summed over the
/// broadcast axes (`Rule::NoAccumulation` takes the first elements instead).
#[derive(Debug)]
struct MulBackward {
    rule: Rule,
}

fn reduce_like<T: Float>(full: &Tensor<T>, like: &Tensor<T>, rule: Rule) -> Result<Tensor<T>> {
    if rule != Rule::NoAccumulation || full.dims() == like.dims() {
        return full.sum_to(like.shape());
    }
    // The planted bug: the first `like.numel()` elements, no sum.
    let n = like.numel();
    let data = if full.numel() >= n {
        full.data()[..n].to_vec()
    } else {
        vec![T::ZERO; n]
    };
    Tensor::from_vec(data, like.dims())
}

impl<T: Float> Backward<T> for MulBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        let da = reduce_like(&g.zip_map(b, "mul", |g, b| g * b)?, a, self.rule)?;
        let db = reduce_like(&g.zip_map(a, "mul", |g, a| g * a)?, b, self.rule)?;
        Ok([Some(da), Some(db)].into_iter().collect())
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (a, b) = (cx.input(0), cx.input(1));
        Ok([
            Some(g.mul(b)?.sum_to(&a.shape())?),
            Some(g.mul(a)?.sum_to(&b.shape())?),
        ]
        .into_iter()
        .collect())
    }
}

struct BroadcastMul {
    rule: Rule,
}

impl OpUnderTest for BroadcastMul {
    fn name(&self) -> &str {
        "broadcast_mul"
    }
    fn arity(&self) -> usize {
        2
    }
    fn broadcasts(&self) -> bool {
        true
    }
    fn forward<'t, T: Float>(&self, x: &[Var<'t, T>]) -> Result<Var<'t, T>> {
        let value = x[0]
            .value()
            .zip_map(&x[1].value(), "broadcast_mul", |a, b| a * b)?;
        x[0].tape().push_op(
            "broadcast_mul",
            value,
            &[x[0], x[1]],
            MulBackward { rule: self.rule },
        )
    }
}

/// y = x·W for a square W, with dW = xᵀ·g (right) or its transpose (planted).
#[derive(Debug)]
struct MatmulBackward {
    rule: Rule,
}

impl<T: Float> Backward<T> for MatmulBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (x, w) = (cx.input(0), cx.input(1));
        let dx = g.matmul_t(w)?;
        let dw = x.t_matmul(g)?;
        let dw = if self.rule == Rule::Transposed {
            dw.transpose(0, 1)?
        } else {
            dw
        };
        Ok([Some(dx), Some(dw)].into_iter().collect())
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, w) = (cx.input(0), cx.input(1));
        let dw = x.t()?.matmul(g)?;
        let dw = if self.rule == Rule::Transposed {
            dw.t()?
        } else {
            dw
        };
        Ok([Some(g.matmul(w.t()?)?), Some(dw)].into_iter().collect())
    }
}

fn planted_matmul<'t, T: Float>(x: Var<'t, T>, w: Var<'t, T>, rule: Rule) -> Result<Var<'t, T>> {
    let value = x.value().matmul(&w.value())?;
    x.tape()
        .push_op("planted_matmul", value, &[x, w], MatmulBackward { rule })
}

/// Dropout whose backward either reuses the forward's mask (right) or draws another (planted).
#[derive(Debug)]
struct PlantedDropoutBackward {
    mask: BitMask,
    scale: f64,
}

impl<T: Float> Backward<T> for PlantedDropoutBackward {
    fn backward(&self, _: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let s = T::from_f64(self.scale);
        let mut dx = g.try_clone()?;
        for (i, d) in dx.data_mut().iter_mut().enumerate() {
            *d = if self.mask.get(i) { *d * s } else { T::ZERO };
        }
        Ok([Some(dx)].into_iter().collect())
    }

    fn backward_graph<'t>(&self, _: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        Ok([Some(
            g.dropout_with_mask(&self.mask, 1.0 - 1.0 / self.scale)?,
        )]
        .into_iter()
        .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// gradcheck itself (the function checker): sign, factor 2; kinks and the numeric schemes.

fn square_gradcheck(plain: Rule, options: &GradcheckOptions) -> Result<tapegrad::GradcheckReport> {
    let x = Tensor::from_vec(vec![0.7, -1.3, 2.1, 0.4], &[2, 2]).unwrap();
    let op = Square {
        plain,
        graph: Rule::Right,
        sloppy_f32: false,
    };
    gradcheck(|_, v, _| op.forward(v), &[x], options)
}

#[test]
fn gradcheck_fails_on_a_wrong_sign_and_a_missing_factor_of_two_in_every_scheme() {
    for scheme in [Difference::Central, Difference::Central4, Difference::Auto] {
        let options = GradcheckOptions {
            scheme,
            ..GradcheckOptions::default()
        };
        let right = square_gradcheck(Rule::Right, &options).unwrap();
        assert!(right.passed(), "{scheme:?}: {right}");
        for bug in [Rule::Sign, Rule::NoTwo] {
            let Err(Error::GradcheckFailed(report)) = square_gradcheck(bug, &options) else {
                panic!("{scheme:?}: the planted {bug:?} passed");
            };
            // The worst element is the largest |x| = 2.1 at [1, 0], on the diagonal (output 2).
            let w = report.inputs[0].worst.as_ref().unwrap();
            assert_eq!((w.input_index.as_slice(), w.output_index), (&[1, 0][..], 2));
            assert!((w.numeric - 4.2).abs() < 1e-6, "{scheme:?}: {}", w.numeric);
            let expected = if bug == Rule::Sign { -4.2 } else { 2.1 };
            assert!((w.analytic - expected).abs() < 1e-12);
        }
    }
}

#[test]
fn the_fourth_order_scheme_passes_where_the_central_one_is_too_coarse() {
    // f = Σ exp(3x) with a large step ε = 1e-2: the central difference is off by ε²·f‴/6
    // = 1e-4 · 27eˣ/6 relative error 1.5e-4 · 3 … beyond rtol = 1e-5; the 4th-order scheme's
    // error, O(ε⁴), is far below.
    let x = Tensor::from_vec(vec![0.5, 1.0, -0.2], &[3]).unwrap();
    let f = checked(|_, v, _| v[0].mul_scalar(3.0)?.exp()?.sum());
    let coarse = |scheme| GradcheckOptions {
        eps: 1e-2,
        rtol: 1e-5,
        atol: 1e-8,
        scheme,
        ..GradcheckOptions::default()
    };
    assert!(gradcheck(f, std::slice::from_ref(&x), &coarse(Difference::Central)).is_err());
    let report = gradcheck(f, &[x], &coarse(Difference::Central4)).unwrap();
    assert!(report.inputs[0].max_rel_err < 1e-6, "{report}");
}

#[test]
fn the_step_sweep_diagnoses_a_badly_scaled_input_the_fixed_step_reports_as_a_failure() {
    // f(x) = 1e12 · sin(x / 1e12) at x = 1e12: f′ = cos(1). A step of 1e-6 is below the spacing of
    // f64 numbers near 1e12 (1.2e-4), so x ± ε rounds to x and the central difference is 0.
    let x = Tensor::from_vec(vec![1e12], &[1]).unwrap();
    let f = checked(|_, v, _| v[0].mul_scalar(1e-12)?.sin()?.mul_scalar(1e12)?.sum());
    let fixed = gradcheck(f, std::slice::from_ref(&x), &GradcheckOptions::default());
    assert!(matches!(fixed, Err(Error::GradcheckFailed(_))));
    let auto = GradcheckOptions {
        scheme: Difference::Auto,
        ..GradcheckOptions::default()
    };
    let report = gradcheck(f, &[x], &auto).unwrap();
    let w = report.inputs[0].worst.as_ref().unwrap();
    assert!((w.numeric - 1f64.cos()).abs() < 1e-6, "{report}");
    assert!(report.inputs[0].max_numeric_error < 1e-6);
}

#[test]
fn an_input_within_eps_of_a_kink_is_diagnosed_not_failed() {
    // relu at 2e-7 (within ε = 1e-6 of its kink at 0): the central difference is
    // (1e-6 + 2e-7) / 2e-6 = 0.6, backward says 1; the one-sided slopes are 0 and 1.
    let x = Tensor::from_vec(vec![2e-7, 1.5, -0.8], &[3]).unwrap();
    let report = gradcheck(
        |_, v, _| v[0].relu()?.sum(),
        std::slice::from_ref(&x),
        &GradcheckOptions::default(),
    )
    .unwrap();
    let kinks = &report.inputs[0].kinks;
    assert_eq!(kinks.len(), 1, "{report}");
    assert_eq!(kinks[0].input_index, [0]);
    assert!(kinks[0].left.abs() < 1e-9 && (kinks[0].right - 1.0).abs() < 1e-9);
    assert!(
        (kinks[0].offset + 2e-7).abs() < 1e-10,
        "{}",
        kinks[0].offset
    );
    assert!(report.to_string().contains("kink within eps"), "{report}");
    // With the diagnosis off, the same check fails, as PyTorch's does.
    let strict = GradcheckOptions {
        diagnose_kinks: false,
        ..GradcheckOptions::default()
    };
    assert!(gradcheck(|_, v, _| v[0].relu()?.sum(), &[x], &strict).is_err());
}

#[test]
fn a_wrong_rule_at_a_kink_still_fails() {
    // |x| at 2e-7 with a planted backward of 0.5·sign: neither one-sided slope (−1, 1), so it is
    // not excused as a kink.
    #[derive(Debug)]
    struct HalfAbs;
    impl Backward<f64> for HalfAbs {
        fn backward(&self, cx: &BackwardCx<'_, f64>, g: &Tensor<f64>) -> Result<InputGrads<f64>> {
            let dx = g.zip_map(cx.input(0), "abs", |g, x| 0.5 * g * x.signum())?;
            Ok([Some(dx)].into_iter().collect())
        }
        fn backward_graph<'t>(
            &self,
            _: &GraphCx<'t, f64>,
            g: Var<'t, f64>,
        ) -> Result<InputVars<'t, f64>> {
            Ok([Some(g)].into_iter().collect())
        }
    }
    let x = Tensor::from_vec(vec![2e-7], &[1]).unwrap();
    let result = gradcheck(
        |t, v, _| t.push_op("half_abs", v[0].value().map(f64::abs)?, &[v[0]], HalfAbs),
        &[x],
        &GradcheckOptions::default(),
    );
    let Err(Error::GradcheckFailed(report)) = result else {
        panic!("a wrong rule at a kink passed");
    };
    assert!(report.inputs[0].kinks.is_empty());
}

#[test]
fn reports_render_as_json_and_as_an_svg_heat_map() {
    let Err(Error::GradcheckFailed(report)) =
        square_gradcheck(Rule::NoTwo, &GradcheckOptions::default())
    else {
        panic!("the planted bug passed");
    };
    let json: serde_json::Value = serde_json::from_str(&report.to_json_string()).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["inputs"][0]["passed"], false);
    assert_eq!(
        json["inputs"][0]["worst"]["input_index"],
        serde_json::json!([1, 0])
    );
    // |2.1 − 4.2| / (1e-5 + 1e-3·4.2)
    let ratio = json["inputs"][0]["worst"]["ratio"].as_f64().unwrap();
    assert!((ratio - 2.1 / (1e-5 + 4.2e-3)).abs() < 1e-3, "{ratio}");
    let jac = &json["jacobians"][0];
    assert_eq!(
        (jac["rows"].as_u64(), jac["cols"].as_u64()),
        (Some(4), Some(4))
    );
    // The analytic Jacobian is diag(x) (factor 2 missing), the numeric one diag(2x).
    assert!((jac["analytic"][0].as_f64().unwrap() - 0.7).abs() < 1e-12);
    assert!((jac["numeric"][0].as_f64().unwrap() - 1.4).abs() < 1e-6);

    let svg = report.heatmap_svg().unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // 16 cells, 4 of them (the diagonal) out of tolerance and framed, plus the legend.
    assert!(svg.matches("<rect").count() >= 16 + 4);
    assert!(svg.contains("input 0 [2, 2]"), "{svg}");

    // A fast-mode report has no Jacobian to draw.
    let fast = GradcheckOptions {
        fast: true,
        ..GradcheckOptions::default()
    };
    let report = square_gradcheck(Rule::Right, &fast).unwrap();
    assert!(matches!(
        report.heatmap_svg(),
        Err(Error::InvalidArgument {
            op: "heatmap_svg",
            ..
        })
    ));
    assert_eq!(report.to_json()["fast"], true);
}

// ---------------------------------------------------------------------------------------------
// The model checker: the lesson model in f32, the digits MLP, and planted bugs.

/// The lesson's model (Linear → ReLU → Dropout(0.5) → Linear) with the lesson's f32 weights.
fn lesson_model(n: usize) -> (Sequential<f32>, Tensor<f32>, Vec<usize>) {
    let config = LessonConfig {
        n,
        ..LessonConfig::default()
    };
    let (data, w) = config.generate::<f32>().unwrap();
    // The lesson stores W as [in, out]; Linear stores [out, in], as PyTorch does.
    let linear = |weight: &Tensor<f32>, bias: &Tensor<f32>| {
        Linear::from_tensors(weight.transpose(0, 1).unwrap(), Some(bias.clone())).unwrap()
    };
    let model = Sequential::new()
        .push(linear(&w.w1, &w.b1))
        .push(ReLU)
        .push(Dropout::new(0.5).unwrap())
        .push(linear(&w.w2, &w.b2));
    (model, data.x, data.labels)
}

#[test]
fn the_lesson_model_in_f32_passes_the_model_checker_with_every_parameter_in_full() {
    let (model, x, labels) = lesson_model(128);
    let before = model.params()[0].value();
    let report = gradcheck_module(
        &model,
        &x,
        |y| y.cross_entropy(&labels),
        &ModuleCheckOptions::default(),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.dtype, "float32");
    let names: Vec<&str> = report.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"]);
    assert!(report.params.iter().all(|p| p.full && p.ratio <= 1.0));
    // The loss is the lesson's at the start, about ln 5.
    assert!((report.loss - 5f64.ln()).abs() < 0.05, "{}", report.loss);
    // The f32 model is untouched.
    assert_eq!(model.params()[0].value().data(), before.data());
    let text = report.to_string();
    assert!(text.contains("0.weight") && text.contains("full"), "{text}");
}

/// The digits example's MLP (64 → 256 → 256 → 10 with dropout, 85 002 parameters) on 8 images.
fn digits_mlp() -> (Sequential<f32>, Tensor<f32>, Vec<usize>) {
    let mut rng = Pcg64::seed_from_u64(0);
    let model = Sequential::new()
        .push(Linear::new(64, 256, &mut rng).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.2).unwrap())
        .push(Linear::new(256, 256, &mut rng).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.2).unwrap())
        .push(Linear::new(256, 10, &mut rng).unwrap());
    let digits = tapegrad::datasets::Digits::load_shipped().unwrap();
    let batch = digits.subset::<f32>(&(0..8).collect::<Vec<_>>()).unwrap();
    (model, batch.x, batch.labels)
}

#[test]
fn the_digits_mlp_passes_fast_mode_for_large_parameters_and_full_for_small() {
    let (model, x, labels) = digits_mlp();
    assert_eq!(model.num_params(), 85_002);
    let options = ModuleCheckOptions {
        full_up_to: 300,
        ..ModuleCheckOptions::default()
    };
    let report = gradcheck_module(&model, &x, |y| y.cross_entropy(&labels), &options).unwrap();
    assert!(report.passed(), "{report}");
    let modes: Vec<(&str, bool)> = report
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.full))
        .collect();
    assert_eq!(
        modes,
        [
            ("0.weight", false),
            ("0.bias", true),
            ("3.weight", false),
            ("3.bias", true),
            ("6.weight", false),
            ("6.bias", true)
        ]
    );
}

/// A model with a planted layer: Linear → planted mixing matmul (square W) → planted dropout →
/// tanh → Linear. Generic, so it converts to f64 with one line per field.
#[derive(Clone)]
struct Planted<T: Float> {
    first: Linear<T>,
    mix: Param<T>,
    last: Linear<T>,
    matmul: Rule,
    /// Whether the dropout's backward draws its own mask instead of reusing the forward's.
    fresh_mask: bool,
}

impl<T: Float> Module<T> for Planted<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.module("first", &self.first);
        v.param("mix", &self.mix);
        v.module("last", &self.last);
    }
}

impl<T: Float> Forward<T> for Planted<T> {
    fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let h = self.first.forward(cx, x)?;
        let h = planted_matmul(h, tape.param(&self.mix), self.matmul)?;
        // Dropout by hand: the forward draws its mask from the context's generator.
        let p = 0.5;
        let n = h.shape().numel();
        let mask = BitMask::dropout(n, p, cx.rng("planted dropout")?)?;
        let backward_mask = if self.fresh_mask {
            BitMask::dropout(n, p, &mut Pcg64::seed_from_u64(12_345))?
        } else {
            mask.try_clone()?
        };
        let mut value = h.value().try_clone()?;
        for (i, v) in value.data_mut().iter_mut().enumerate() {
            *v = if mask.get(i) {
                *v * T::from_f64(2.0)
            } else {
                T::ZERO
            };
        }
        let h = tape.push_op(
            "planted_dropout",
            value,
            &[h],
            PlantedDropoutBackward {
                mask: backward_mask,
                scale: 2.0,
            },
        )?;
        self.last.forward(cx, h.tanh()?)
    }
}

impl<T: Float> ToF64 for Planted<T> {
    type F64 = Planted<f64>;
    fn to_f64(&self) -> Result<Planted<f64>> {
        Ok(Planted {
            first: self.first.to_f64()?,
            mix: Param::new("mix", self.mix.value().cast()?),
            last: self.last.to_f64()?,
            matmul: self.matmul,
            fresh_mask: self.fresh_mask,
        })
    }
}

fn planted_model(matmul: Rule, fresh_mask: bool) -> Planted<f32> {
    let mut rng = Pcg64::seed_from_u64(4);
    Planted {
        first: Linear::new(3, 4, &mut rng).unwrap(),
        mix: Param::new("mix", Tensor::normal(&[4, 4], 0.0, 0.5, &mut rng).unwrap()),
        last: Linear::new(4, 2, &mut rng).unwrap(),
        matmul,
        fresh_mask,
    }
}

fn check_planted(model: &Planted<f32>) -> tapegrad::gradcheck::ModuleReport {
    let x = Tensor::<f32>::normal(&[5, 3], 0.0, 1.0, &mut Pcg64::seed_from_u64(5)).unwrap();
    let target = Tensor::<f64>::normal(&[5, 2], 0.0, 1.0, &mut Pcg64::seed_from_u64(6)).unwrap();
    gradcheck_module(
        model,
        &x,
        |y| y.sub(y.tape().constant(target.clone()))?.square()?.mean(),
        &ModuleCheckOptions::default(),
    )
    .unwrap()
}

#[test]
fn the_model_checker_passes_the_right_planted_model_and_catches_a_transposed_matrix() {
    let right = check_planted(&planted_model(Rule::Right, false));
    assert!(right.passed(), "{right}");

    let wrong = check_planted(&planted_model(Rule::Transposed, false));
    assert!(!wrong.passed(), "{wrong}");
    // Only the mixing matrix's gradient is wrong: the rule for x is right.
    for p in &wrong.params {
        assert_eq!(p.passed, p.name != "mix", "{wrong}");
    }
    let mix = wrong.param("mix").unwrap();
    assert!(mix.full && mix.ratio > 1.0);
    assert_eq!(mix.worst.as_ref().unwrap().input_index.len(), 2);
    assert!(wrong.to_string().contains("MISMATCH"));
}

#[test]
fn the_model_checker_catches_a_dropout_mask_not_reused_in_backward() {
    let wrong = check_planted(&planted_model(Rule::Right, true));
    assert!(!wrong.passed(), "{wrong}");
    // Everything before the dropout gets the wrong mask's gradient; the last layer does not.
    assert!(!wrong.param("mix").unwrap().passed);
    assert!(!wrong.param("first.weight").unwrap().passed);
    assert!(wrong.param("last.weight").unwrap().passed);
    assert!(wrong.param("last.bias").unwrap().passed);
}

#[test]
fn a_sequential_with_an_unknown_layer_cannot_be_converted() {
    let model = Sequential::<f32>::new().push(planted_model(Rule::Right, false));
    let x = Tensor::<f32>::zeros(&[1, 3]).unwrap();
    let err =
        gradcheck_module(&model, &x, |y| y.sum(), &ModuleCheckOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { op: "to_f64", reason } if reason.contains("layer 0")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The hand-derived-gradient checker: a small model written out by hand, right and with each bug.
//
// Z = X·W1 + b1, H = relu(Z), Hd = m ⊙ H · 2 (dropout 0.5), S = Hd·W2 (W2 square),
// loss = Σ S² / N. By hand: dS = 2S/N, dW2 = Hdᵀ·dS, dHd = dS·W2ᵀ, dH = m ⊙ dHd · 2,
// dZ = dH ⊙ [Z > 0], dW1 = Xᵀ·dZ, db1 = Σ_rows dZ.

/// A loss and its gradients, as the hand-derived function returns them.
type LossAndGrads = (f64, Vec<Tensor<f64>>);
/// A planted bug, whether the mask is redrawn, the gradients that must fail, those that must pass.
type BugCase = (
    Option<Rule>,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

const N: usize = 6;
const D: usize = 3;
const H: usize = 4;

fn data_x() -> Tensor<f64> {
    Tensor::normal(&[N, D], 0.0, 1.0, &mut Pcg64::seed_from_u64(11)).unwrap()
}

fn manual(
    bug: Option<Rule>,
    mask_bug: bool,
) -> impl Fn(&[Tensor<f64>], &mut Pcg64) -> Result<LossAndGrads> {
    move |p, rng| {
        let x = data_x();
        let (x, w1, b1, w2) = (x.data(), p[0].data(), p[1].data(), p[2].data());
        let mask = BitMask::dropout(N * H, 0.5, rng)?;
        let mut z = [0.0; N * H];
        let mut hd = [0.0; N * H];
        for i in 0..N {
            for j in 0..H {
                z[i * H + j] = b1[j] + (0..D).map(|q| x[i * D + q] * w1[q * H + j]).sum::<f64>();
                hd[i * H + j] = if mask.get(i * H + j) {
                    2.0 * z[i * H + j].max(0.0)
                } else {
                    0.0
                };
            }
        }
        let mut s = [0.0; N * H];
        for i in 0..N {
            for c in 0..H {
                s[i * H + c] = (0..H).map(|j| hd[i * H + j] * w2[j * H + c]).sum::<f64>();
            }
        }
        let loss = s.iter().map(|v| v * v).sum::<f64>() / N as f64;
        let two = if bug == Some(Rule::NoTwo) { 1.0 } else { 2.0 };
        let ds: Vec<f64> = s.iter().map(|v| two * v / N as f64).collect();
        // The backward's mask: the forward's (right), or a fresh draw (planted).
        let mask = if mask_bug {
            BitMask::dropout(N * H, 0.5, rng)?
        } else {
            mask
        };
        let mut dw1 = vec![0.0; D * H];
        let mut db1 = vec![0.0; H];
        let mut dw2 = vec![0.0; H * H];
        for i in 0..N {
            for j in 0..H {
                for c in 0..H {
                    let term = hd[i * H + j] * ds[i * H + c];
                    if bug == Some(Rule::Transposed) {
                        dw2[c * H + j] += term;
                    } else {
                        dw2[j * H + c] += term;
                    }
                }
                let dhd: f64 = (0..H).map(|c| ds[i * H + c] * w2[j * H + c]).sum();
                let dh = if mask.get(i * H + j) { 2.0 * dhd } else { 0.0 };
                let dz = if z[i * H + j] > 0.0 { dh } else { 0.0 };
                if bug == Some(Rule::NoAccumulation) {
                    if i == 0 {
                        db1[j] = dz; // the rows are not summed: only the first counts
                    }
                } else {
                    db1[j] += dz;
                }
                for q in 0..D {
                    dw1[q * H + j] += x[i * D + q] * dz;
                }
            }
        }
        if bug == Some(Rule::Sign) {
            dw1.iter_mut().for_each(|v| *v = -*v);
        }
        Ok((
            loss,
            vec![
                Tensor::from_vec(dw1, &[D, H])?,
                Tensor::from_vec(db1, &[H])?,
                Tensor::from_vec(dw2, &[H, H])?,
            ],
        ))
    }
}

fn tape_fn<'t>(tape: &'t Tape<f64>, v: &[Var<'t, f64>], rng: &mut Pcg64) -> Result<Var<'t, f64>> {
    let x = tape.constant(data_x());
    let s = x
        .matmul(v[0])?
        .add(v[1])?
        .relu()?
        .dropout(0.5, rng)?
        .matmul(v[2])?;
    s.square()?.sum()?.div_scalar(N as f64)
}

fn manual_params() -> Vec<Tensor<f64>> {
    let mut rng = Pcg64::seed_from_u64(12);
    vec![
        Tensor::normal(&[D, H], 0.0, 1.0, &mut rng).unwrap(),
        Tensor::normal(&[H], 0.0, 0.5, &mut rng).unwrap(),
        Tensor::normal(&[H, H], 0.0, 1.0, &mut rng).unwrap(),
    ]
}

fn run_manual(bug: Option<Rule>, mask_bug: bool) -> tapegrad::gradcheck::ManualReport {
    check_manual_gradients(
        manual(bug, mask_bug),
        tape_fn,
        &["w1", "b1", "w2"],
        &manual_params(),
        &ManualCheckOptions::default(),
    )
    .unwrap()
}

#[test]
fn the_manual_checker_passes_the_right_hand_derived_gradients() {
    let report = run_manual(None, false);
    assert!(report.passed(), "{report}");
    assert_eq!(report.points, 6);
    assert!(report.max_loss_diff < 1e-12);
}

#[test]
fn the_manual_checker_names_the_wrong_gradient_for_each_planted_bug() {
    // (bug, mask bug, the gradients that must be reported wrong, those that must not)
    let cases: [BugCase; 5] = [
        (Some(Rule::Sign), false, &["w1"], &["b1", "w2"]),
        (Some(Rule::NoTwo), false, &["w1", "b1", "w2"], &[]),
        (Some(Rule::Transposed), false, &["w2"], &["w1", "b1"]),
        (Some(Rule::NoAccumulation), false, &["b1"], &["w1", "w2"]),
        (None, true, &["w1", "b1"], &["w2"]),
    ];
    for (bug, mask_bug, wrong, right) in cases {
        let report = run_manual(bug, mask_bug);
        assert!(!report.passed(), "{bug:?} {mask_bug}: {report}");
        for name in wrong {
            let t = report.tensor(name).unwrap();
            assert!(!t.passed, "{bug:?} {mask_bug}: {name} passed\n{report}");
            assert_eq!(t.culprit, Some(Culprit::Manual), "{report}");
            let w = t.worst.as_ref().unwrap();
            assert!((w.manual - w.tape).abs() > 1e-8, "{report}");
            // Finite differences side with the tape at that element.
            let num = w.numeric.unwrap();
            assert!((num - w.tape).abs() <= 1e-5 + 1e-3 * num.abs(), "{report}");
        }
        for name in right {
            assert!(
                report.tensor(name).unwrap().passed,
                "{bug:?}: {name}\n{report}"
            );
        }
        let text = report.to_string();
        assert!(text.contains("WRONG (the hand-derived gradient)"), "{text}");
        assert!(text.contains("at seed"), "{text}");
    }
}

#[test]
fn the_manual_checker_blames_the_tape_when_the_tape_function_is_wrong() {
    // The hand-derived gradients are right; the "tape" side uses the planted square (factor 2
    // missing) for S²: finite differences side with the hand-derived ones.
    let wrong_tape = checked(|tape, v, rng| {
        let x = tape.constant(data_x());
        let s = x
            .matmul(v[0])?
            .add(v[1])?
            .relu()?
            .dropout(0.5, rng)?
            .matmul(v[2])?;
        let op = Square {
            plain: Rule::NoTwo,
            graph: Rule::NoTwo,
            sloppy_f32: false,
        };
        op.forward(&[s])?.sum()?.div_scalar(N as f64)
    });
    let report = check_manual_gradients(
        manual(None, false),
        wrong_tape,
        &["w1", "b1", "w2"],
        &manual_params(),
        &ManualCheckOptions::default(),
    )
    .unwrap();
    assert!(!report.passed());
    assert_eq!(
        report.tensor("w2").unwrap().culprit,
        Some(Culprit::Tape),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// The op sweep.

#[test]
fn the_op_sweep_passes_right_ops_over_every_generated_shape() {
    let square = check_op(&Square::right(), &OpSweepOptions::default()).unwrap();
    assert!(square.passed(), "{square}");
    // Rank 0 to 4, zero-size dimensions among them.
    let ranks: Vec<usize> = square.cases.iter().map(|c| c.shapes[0].len()).collect();
    assert!((0..=4).all(|r| ranks.contains(&r)));
    assert!(square.cases.iter().any(|c| c.shapes[0].contains(&0)));
    assert!(square.cases.iter().all(|c| c.checks.len() == 4));

    let mul = check_op(
        &BroadcastMul { rule: Rule::Right },
        &OpSweepOptions::default(),
    )
    .unwrap();
    assert!(mul.passed(), "{mul}");
    assert!(mul.cases.iter().any(|c| c.shapes[0] != c.shapes[1]));
}

fn failing_checks(report: &tapegrad::gradcheck::OpReport) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = report.failures().map(|(_, c)| c.name).collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_op_sweep_catches_a_wrong_sign_in_backward() {
    let op = Square {
        plain: Rule::Sign,
        graph: Rule::Right,
        sloppy_f32: false,
    };
    let report = check_op(&op, &OpSweepOptions::default()).unwrap();
    assert!(!report.passed());
    assert_eq!(
        failing_checks(&report),
        [
            "backward vs finite differences",
            "backward_graph vs backward"
        ]
    );
    assert!(
        report
            .to_string()
            .contains("first failure of backward vs finite differences")
    );
}

#[test]
fn the_op_sweep_catches_a_missing_factor_in_the_recorded_backward_only() {
    // gradgradcheck alone cannot see it: it differentiates the recorded rule consistently with
    // itself. The comparison of the two backward paths does.
    let op = Square {
        plain: Rule::Right,
        graph: Rule::NoTwo,
        sloppy_f32: false,
    };
    let report = check_op(&op, &OpSweepOptions::default()).unwrap();
    assert_eq!(
        failing_checks(&report),
        ["backward_graph vs backward"],
        "{report}"
    );
}

#[test]
fn the_op_sweep_catches_a_recorded_backward_that_loses_the_second_derivative() {
    // The values of both backward paths agree; only gradgradcheck sees the difference.
    let op = Square {
        plain: Rule::Right,
        graph: Rule::Detached,
        sloppy_f32: false,
    };
    let report = check_op(&op, &OpSweepOptions::default()).unwrap();
    assert_eq!(failing_checks(&report), ["gradgradcheck"], "{report}");
}

#[test]
fn the_op_sweep_catches_a_sloppy_f32_forward() {
    let op = Square {
        sloppy_f32: true,
        ..Square::right()
    };
    let report = check_op(&op, &OpSweepOptions::default()).unwrap();
    assert_eq!(failing_checks(&report), ["f32 vs f64"], "{report}");
}

#[test]
fn the_op_sweep_catches_a_missing_accumulation_only_where_inputs_broadcast() {
    let report = check_op(
        &BroadcastMul {
            rule: Rule::NoAccumulation,
        },
        &OpSweepOptions::default(),
    )
    .unwrap();
    assert!(!report.passed());
    for case in &report.cases {
        let broadcast = case.shapes[0] != case.shapes[1];
        let empty = case.output.contains(&0);
        // Same shapes (no accumulation needed) and empty outputs pass; broadcasting fails.
        assert_eq!(
            case.passed(),
            !broadcast || empty,
            "{:?}: {report}",
            case.shapes
        );
    }
}
