//! Backward through backward: the recorded (graph) backward rules agree with the plain ones, second
//! derivatives pass gradgradcheck for every op, and Hessian-vector products match known Hessians.

mod common;

use common::{assert_close, away_from_zero, randn, uniform};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{
    BackwardOptions, GradcheckOptions, Result, Shape, Tape, Tensor, Var, gradgradcheck, hvp,
};

type OpFn = for<'t> fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>>;

/// Every op, with inputs kept away from kinks and poles.
fn cases() -> Vec<(&'static str, Vec<Tensor<f64>>, OpFn)> {
    vec![
        ("add", vec![randn(&[3, 4], 1), randn(&[4], 2)], |_, v, _| {
            v[0].add(v[1])
        }),
        (
            "sub",
            vec![randn(&[3, 1], 3), randn(&[1, 4], 4)],
            |_, v, _| v[0].sub(v[1]),
        ),
        ("mul", vec![randn(&[3, 4], 5), randn(&[4], 6)], |_, v, _| {
            v[0].mul(v[1])
        }),
        (
            "div",
            vec![randn(&[2, 3], 7), away_from_zero(&[3], 8, 0.7)],
            |_, v, _| v[0].div(v[1]),
        ),
        ("neg", vec![randn(&[4], 9)], |_, v, _| v[0].neg()),
        ("add_scalar", vec![randn(&[4], 10)], |_, v, _| {
            v[0].add_scalar(0.5)
        }),
        ("mul_scalar", vec![randn(&[4], 11)], |_, v, _| {
            v[0].mul_scalar(-2.0)
        }),
        (
            "matmul",
            vec![randn(&[3, 4], 12), randn(&[4, 2], 13)],
            |_, v, _| v[0].matmul(v[1]),
        ),
        ("relu", vec![away_from_zero(&[3, 4], 14, 0.1)], |_, v, _| {
            v[0].relu()
        }),
        ("dropout", vec![randn(&[4, 5], 15)], |_, v, rng| {
            v[0].dropout(0.4, rng)
        }),
        ("log_softmax", vec![randn(&[3, 4], 16)], |_, v, _| {
            v[0].log_softmax()
        }),
        ("softmax", vec![randn(&[3, 4], 17)], |_, v, _| {
            v[0].softmax()
        }),
        ("nll", vec![randn(&[3, 4], 18)], |_, v, _| {
            v[0].nll(&[1, 0, 3])
        }),
        ("cross_entropy", vec![randn(&[3, 4], 19)], |_, v, _| {
            v[0].cross_entropy(&[2, 2, 0])
        }),
        ("exp", vec![randn(&[5], 20)], |_, v, _| v[0].exp()),
        ("log", vec![uniform(&[5], 21, 0.5, 2.0)], |_, v, _| {
            v[0].log()
        }),
        ("tanh", vec![randn(&[5], 22)], |_, v, _| v[0].tanh()),
        ("sigmoid", vec![randn(&[5], 23)], |_, v, _| v[0].sigmoid()),
        ("sum", vec![randn(&[2, 3], 24)], |_, v, _| v[0].sum()),
        ("mean", vec![randn(&[2, 3], 25)], |_, v, _| v[0].mean()),
        ("sum_axis", vec![randn(&[2, 3, 4], 26)], |_, v, _| {
            v[0].sum_axis(1, false)
        }),
        ("mean_axis", vec![randn(&[2, 3], 27)], |_, v, _| {
            v[0].mean_axis(-1, true)
        }),
        ("sum_to", vec![randn(&[2, 3, 4], 28)], |_, v, _| {
            v[0].sum_to(&Shape::new(&[3, 1])?)
        }),
        ("broadcast_to", vec![randn(&[3, 1], 29)], |_, v, _| {
            v[0].broadcast_to(&Shape::new(&[2, 3, 4])?)
        }),
        ("transpose", vec![randn(&[2, 3, 4], 30)], |_, v, _| {
            v[0].transpose(0, 2)
        }),
        ("t", vec![randn(&[2, 3], 31)], |_, v, _| v[0].t()),
        ("reshape", vec![randn(&[2, 6], 32)], |_, v, _| {
            v[0].reshape(&[3, 4])
        }),
        ("x*x+x (reuse)", vec![randn(&[3], 33)], |_, v, _| {
            v[0].mul(v[0])?.add(v[0])
        }),
        (
            "lesson model",
            vec![randn(&[4, 3], 34), randn(&[3, 5], 35), randn(&[5, 3], 36)],
            |_, v, rng| {
                v[0].matmul(v[1])?
                    .tanh()?
                    .dropout(0.5, rng)?
                    .matmul(v[2])?
                    .cross_entropy(&[0, 2, 1, 1])
            },
        ),
    ]
}

#[test]
fn recorded_backward_agrees_with_plain_backward_for_every_op() {
    for (name, inputs, f) in cases() {
        let run = |graph: bool| -> Vec<Option<Tensor<f64>>> {
            let tape = Tape::new();
            let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
            let y = f(&tape, &vars, &mut Pcg64::seed_from_u64(7)).unwrap();
            let seed = randn(y.shape().dims(), 99);
            if graph {
                let grads = y.backward_graph(Some(tape.constant(seed))).unwrap();
                vars.iter()
                    .map(|&x| grads.wrt(x).ok().map(|g| (*g.value()).clone()))
                    .collect()
            } else {
                let options = BackwardOptions::new().seed(seed).retain_graph(false);
                let grads = y.backward_with(options).unwrap();
                vars.iter().map(|&x| grads.get(x).cloned()).collect()
            }
        };
        for (k, (plain, graph)) in run(false).into_iter().zip(run(true)).enumerate() {
            let (plain, graph) = (plain.expect(name), graph.expect(name));
            assert_eq!(plain.dims(), graph.dims(), "{name}, input {k}");
            assert_close(graph.data(), plain.data(), 1e-12);
        }
    }
}

#[test]
fn gradgradcheck_passes_for_every_op() {
    for (name, inputs, f) in cases() {
        if let Err(e) = gradgradcheck(f, &inputs, &GradcheckOptions::default()) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn gradgradcheck_catches_a_wrong_second_derivative() {
    use tapegrad::ops::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
    // x³ whose plain backward is right (3x²) but whose recorded backward is 3x²
    // built as 3·x·x0 with x0 a constant copy: its derivative is 3x, not 6x.
    #[derive(Debug)]
    struct Cube;
    impl Backward<f64> for Cube {
        fn backward(&self, cx: &BackwardCx<'_, f64>, g: &Tensor<f64>) -> Result<InputGrads<f64>> {
            Ok([Some(
                g.zip_map(cx.input(0), "cube", |g, x| 3.0 * g * x * x)?,
            )]
            .into_iter()
            .collect())
        }
        fn backward_graph<'t>(
            &self,
            cx: &GraphCx<'t, f64>,
            g: Var<'t, f64>,
        ) -> Result<InputVars<'t, f64>> {
            let x = cx.input(0);
            let frozen = cx.tape().constant((*x.value()).clone());
            Ok([Some(g.mul(x)?.mul(frozen)?.mul_scalar(3.0)?)]
                .into_iter()
                .collect())
        }
    }
    let result = gradgradcheck(
        |tape, v, _| tape.push_op("cube", v[0].value().map(|x| x * x * x)?, &[v[0]], Cube),
        &[Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap()],
        &GradcheckOptions::default(),
    );
    assert!(
        matches!(result, Err(tapegrad::Error::GradcheckFailed(_))),
        "{result:?}"
    );
}

#[test]
fn hvp_of_a_quadratic_form_is_the_symmetrised_matrix_times_v() {
    // f(x) = xᵀAx ⇒ H = A + Aᵀ.
    let a = randn(&[4, 4], 40);
    let x = randn(&[4, 1], 41);
    let v = randn(&[4, 1], 42);
    let r = hvp(
        |tape, xs| {
            xs[0]
                .t()?
                .matmul(tape.constant(a.clone()))?
                .matmul(xs[0])?
                .sum()
        },
        &[x],
        std::slice::from_ref(&v),
    )
    .unwrap();
    let want: Vec<f64> = (0..4)
        .map(|i| {
            (0..4)
                .map(|j| (a.data()[i * 4 + j] + a.data()[j * 4 + i]) * v.data()[j])
                .sum()
        })
        .collect();
    assert_close(r.hvp[0].data(), &want, 1e-12);
}

#[test]
fn hvp_of_log_sum_exp_is_diag_p_minus_p_pt_times_v() {
    // f(x) = log Σ eˣ ⇒ ∇f = p = softmax(x), H = diag(p) − ppᵀ.
    let x = randn(&[1, 6], 43);
    let v = randn(&[1, 6], 44);
    let r = hvp(
        |_, xs| xs[0].log_softmax()?.neg()?.add(xs[0])?.mean(),
        std::slice::from_ref(&x),
        std::slice::from_ref(&v),
    )
    .unwrap();
    let z: f64 = x.data().iter().map(|t| t.exp()).sum();
    let p: Vec<f64> = x.data().iter().map(|t| t.exp() / z).collect();
    let pv: f64 = p.iter().zip(v.data()).map(|(a, b)| a * b).sum();
    let want: Vec<f64> = (0..6).map(|i| p[i] * v.data()[i] - p[i] * pv).collect();
    assert_close(r.grads[0].data(), &p, 1e-12);
    assert_close(r.hvp[0].data(), &want, 1e-12);
}

#[test]
fn relu_has_zero_second_derivative() {
    let x = away_from_zero(&[5], 45, 0.1);
    let r = hvp(|_, xs| xs[0].relu()?.sum(), &[x], &[randn(&[5], 46)]).unwrap();
    assert!(r.hvp[0].data().iter().all(|&h| h == 0.0));
}

/// The lesson's model as a function of its parameters, with the dropout mask fixed by a fixed seed.
fn lesson_loss<'t>(
    tape: &'t Tape<f64>,
    p: &[Var<'t, f64>],
    x: &Tensor<f64>,
    labels: &[usize],
) -> Result<Var<'t, f64>> {
    let mut rng = Pcg64::seed_from_u64(3);
    tape.constant(x.clone())
        .matmul(p[0])?
        .add(p[1])?
        .relu()?
        .dropout(0.5, &mut rng)?
        .matmul(p[2])?
        .add(p[3])?
        .cross_entropy(labels)
}

#[test]
fn hvp_of_the_lesson_loss_matches_finite_differences_of_gradients() {
    // θ = (W1, b1, W2, b2); the dropout mask is held fixed by reseeding.
    let x = randn(&[16, 5], 47);
    let labels = [0usize, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1, 2, 1, 0, 2, 1];
    let theta = vec![
        randn(&[5, 8], 48).map(|w| 0.5 * w).unwrap(),
        randn(&[8], 49).map(|w| 0.1 * w).unwrap(),
        randn(&[8, 3], 50).map(|w| 0.5 * w).unwrap(),
        randn(&[3], 51).map(|w| 0.1 * w).unwrap(),
    ];
    let dirs: Vec<Tensor<f64>> = theta
        .iter()
        .enumerate()
        .map(|(i, t)| randn(t.dims(), 60 + i as u64))
        .collect();
    let r = hvp(|t, p| lesson_loss(t, p, &x, &labels), &theta, &dirs).unwrap();
    let eps = 1e-5;
    let shifted = |sign: f64| -> Vec<Tensor<f64>> {
        let moved: Vec<Tensor<f64>> = theta
            .iter()
            .zip(&dirs)
            .map(|(t, d)| t.zip_map(d, "shift", |a, b| a + sign * eps * b).unwrap())
            .collect();
        hvp(|t, p| lesson_loss(t, p, &x, &labels), &moved, &dirs)
            .unwrap()
            .grads
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    for k in 0..4 {
        let fd: Vec<f64> = plus[k]
            .data()
            .iter()
            .zip(minus[k].data())
            .map(|(p, m)| (p - m) / (2.0 * eps))
            .collect();
        assert_close(r.hvp[k].data(), &fd, 1e-6);
    }
}

#[test]
fn hvp_checks_its_arguments() {
    let x = randn(&[3], 70);
    assert!(matches!(
        hvp(|_, xs| xs[0].sum(), std::slice::from_ref(&x), &[]),
        Err(tapegrad::Error::ArgumentCount { .. })
    ));
    assert!(matches!(
        hvp(|_, xs| xs[0].sum(), &[x], &[randn(&[4], 71)]),
        Err(tapegrad::Error::ShapeMismatch { op: "hvp", .. })
    ));
    assert!(matches!(
        hvp(|_, xs| Ok(xs[0]), &[randn(&[3], 72)], &[randn(&[3], 73)]),
        Err(tapegrad::Error::BadRank { op: "item", .. })
    ));
}
