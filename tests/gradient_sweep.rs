//! Every op gradchecked in f64 over generated shapes: ranks 0 to 4, zero-size dimensions, and every
//! broadcast pattern of the binary ops; inputs kept away from kinks (ReLU at 0) and poles (log and
//! division near 0). Also the nn losses, and the random-projection (fast) mode on a whole model.

mod common;

use common::{away_from_zero, randn, uniform};
use tapegrad::nn::{CrossEntropyLoss, MSELoss, NLLLoss};
use tapegrad::{GradcheckOptions, Shape, Tensor, gradcheck};

/// Shapes of rank 0 to 4 with sizes in {0, 1, 2, 3}, at most 24 elements (to keep the Jacobians small).
fn shapes() -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for rank in 1..=4 {
        let mut frontier: Vec<Vec<usize>> = vec![vec![]];
        for _ in 0..rank {
            frontier = frontier
                .into_iter()
                .flat_map(|s| (0..=3).map(move |d| [s.clone(), vec![d]].concat()))
                .collect();
        }
        out.extend(
            frontier
                .into_iter()
                .filter(|s| s.iter().product::<usize>() <= 24),
        );
    }
    // Thin the rank-3 and rank-4 families to a deterministic sample, keeping every zero-size one.
    out.into_iter()
        .enumerate()
        .filter(|(i, s)| s.len() < 3 || s.contains(&0) || i % 5 == 0)
        .map(|(_, s)| s)
        .collect()
}

/// Every shape that broadcasts against `full`: each axis kept or set to 1, leading axes dropped.
fn broadcast_patterns(full: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for drop in 0..=full.len() {
        let tail = &full[drop..];
        for ones in 0..(1u32 << tail.len()) {
            out.push(
                tail.iter()
                    .enumerate()
                    .map(|(i, &d)| if ones >> i & 1 == 1 { 1 } else { d })
                    .collect(),
            );
        }
    }
    out
}

fn check(
    inputs: Vec<Tensor<f64>>,
    f: impl for<'t> Fn(
        &[tapegrad::Var<'t, f64>],
        &mut rand_pcg::Pcg64,
    ) -> tapegrad::Result<tapegrad::Var<'t, f64>>,
    what: &str,
) {
    if let Err(e) = gradcheck(|_, v, rng| f(v, rng), &inputs, &GradcheckOptions::default()) {
        panic!("{what}: {e}");
    }
}

#[test]
fn unary_ops_over_every_generated_shape() {
    let shapes = shapes();
    assert!(shapes.len() > 40, "{}", shapes.len());
    for (i, dims) in shapes.iter().enumerate() {
        let seed = i as u64;
        let name = format!("{dims:?}");
        check(
            vec![randn(dims, seed)],
            |v, _| v[0].neg(),
            &format!("neg {name}"),
        );
        check(
            vec![randn(dims, seed)],
            |v, _| v[0].exp(),
            &format!("exp {name}"),
        );
        check(
            vec![uniform(dims, seed, 0.5, 2.0)],
            |v, _| v[0].log(),
            &format!("log {name}"),
        );
        check(
            vec![randn(dims, seed)],
            |v, _| v[0].tanh(),
            &format!("tanh {name}"),
        );
        check(
            vec![randn(dims, seed)],
            |v, _| v[0].sigmoid(),
            &format!("sigmoid {name}"),
        );
        check(
            vec![away_from_zero(dims, seed, 0.1)],
            |v, _| v[0].relu(),
            &format!("relu {name}"),
        );
        check(
            vec![randn(dims, seed)],
            |v, rng| v[0].dropout(0.5, rng),
            &format!("dropout {name}"),
        );
        check(
            vec![randn(dims, seed)],
            |v, _| v[0].add_scalar(1.5)?.mul_scalar(-2.0),
            &format!("scalar {name}"),
        );
        check(
            vec![randn(dims, seed)],
            |v, _| v[0].sum(),
            &format!("sum {name}"),
        );
        let numel: usize = dims.iter().product();
        check(
            vec![randn(dims, seed)],
            move |v, _| v[0].reshape(&[numel]),
            &format!("reshape {name}"),
        );
        if numel > 0 {
            check(
                vec![randn(dims, seed)],
                |v, _| v[0].mean(),
                &format!("mean {name}"),
            );
        }
        if !dims.is_empty() {
            check(
                vec![randn(dims, seed)],
                |v, _| v[0].log_softmax(),
                &format!("log_softmax {name}"),
            );
            check(
                vec![randn(dims, seed)],
                |v, _| v[0].softmax(),
                &format!("softmax {name}"),
            );
            check(
                vec![randn(dims, seed)],
                |v, _| v[0].sum_axis(-1, false),
                &format!("sum_axis {name}"),
            );
            check(
                vec![randn(dims, seed)],
                |v, _| v[0].mean_axis(0, true),
                &format!("mean_axis {name}"),
            );
        }
        if dims.len() >= 2 {
            check(
                vec![randn(dims, seed)],
                |v, _| v[0].transpose(0, -1),
                &format!("transpose {name}"),
            );
        }
    }
}

#[test]
fn binary_ops_over_every_broadcast_pattern() {
    let bases: [&[usize]; 5] = [&[2, 3], &[2, 1, 3], &[3, 2, 2], &[0, 3], &[1, 2, 1, 2]];
    let mut checked = 0;
    for (b, full) in bases.iter().enumerate() {
        for (p, small) in broadcast_patterns(full).into_iter().enumerate() {
            let seed = (b * 100 + p) as u64;
            for (lhs, rhs) in [
                (full.to_vec(), small.clone()),
                (small.clone(), full.to_vec()),
            ] {
                let what = format!("{lhs:?} with {rhs:?}");
                check(
                    vec![randn(&lhs, seed), randn(&rhs, seed + 1)],
                    |v, _| v[0].add(v[1]),
                    &format!("add {what}"),
                );
                check(
                    vec![randn(&lhs, seed), randn(&rhs, seed + 1)],
                    |v, _| v[0].sub(v[1]),
                    &format!("sub {what}"),
                );
                check(
                    vec![randn(&lhs, seed), randn(&rhs, seed + 1)],
                    |v, _| v[0].mul(v[1]),
                    &format!("mul {what}"),
                );
                check(
                    vec![randn(&lhs, seed), away_from_zero(&rhs, seed + 1, 0.5)],
                    |v, _| v[0].div(v[1]),
                    &format!("div {what}"),
                );
                checked += 4;
            }
            let target = Shape::new(full).unwrap();
            let back = Shape::new(&small).unwrap();
            check(
                vec![randn(&small, seed)],
                |v, _| v[0].broadcast_to(&target),
                "broadcast_to",
            );
            check(vec![randn(full, seed)], |v, _| v[0].sum_to(&back), "sum_to");
        }
    }
    assert!(checked > 150, "{checked}");
}

#[test]
fn matmul_and_losses_over_sizes() {
    for (m, k, n) in [
        (0, 2, 3),
        (2, 0, 3),
        (2, 3, 0),
        (1, 1, 1),
        (3, 4, 2),
        (4, 2, 5),
    ] {
        check(
            vec![randn(&[m, k], 1), randn(&[k, n], 2)],
            |v, _| v[0].matmul(v[1]),
            "matmul",
        );
        check(
            vec![randn(&[m, k], 3), randn(&[n, k], 4)],
            |v, _| v[0].matmul_t(v[1]),
            "matmul_t",
        );
        check(
            vec![randn(&[m, k], 7), randn(&[n, k], 8), randn(&[n], 9)],
            |v, _| v[0].linear(v[1], Some(v[2])),
            "linear",
        );
    }
    for (n, c) in [(1, 1), (1, 4), (3, 2), (5, 4)] {
        let labels: Vec<usize> = (0..n).map(|i| (i * 3 + 1) % c).collect();
        let l = labels.clone();
        check(vec![randn(&[n, c], 5)], move |v, _| v[0].nll(&l), "nll");
        let l = labels.clone();
        check(
            vec![randn(&[n, c], 6)],
            move |v, _| CrossEntropyLoss::default().forward(v[0], &l),
            "CrossEntropyLoss",
        );
        let l = labels.clone();
        check(
            vec![randn(&[n, c], 7)],
            move |v, _| NLLLoss::default().forward(v[0].log_softmax()?, &l),
            "NLLLoss",
        );
        check(
            vec![randn(&[n, c], 8), randn(&[n, c], 9)],
            |v, _| MSELoss::default().forward(v[0], v[1]),
            "MSELoss",
        );
    }
}

#[test]
fn fast_mode_checks_a_whole_model_and_still_catches_errors() {
    // The lesson's model at N = 32 (2,069 parameters would need 4,138 evaluations entry by entry).
    let labels: Vec<usize> = (0..32).map(|i| i % 5).collect();
    let inputs = vec![
        randn(&[32, 20], 10),
        randn(&[20, 64], 11).map(|w| 0.3 * w).unwrap(),
        randn(&[64], 12).map(|w| 0.1 * w + 0.05).unwrap(),
        randn(&[64, 5], 13).map(|w| 0.3 * w).unwrap(),
        randn(&[5], 14),
    ];
    let fast = GradcheckOptions {
        fast: true,
        ..GradcheckOptions::default()
    };
    let report = gradcheck(
        |_, v, rng| {
            let hidden = v[0].matmul(v[1])?.add(v[2])?.tanh()?.dropout(0.5, rng)?;
            hidden.matmul(v[3])?.add(v[4])?.cross_entropy(&labels)
        },
        &inputs,
        &fast,
    )
    .unwrap();
    assert_eq!(report.inputs.len(), 5);

    // A wrong rule (3x instead of 2x for x²) is caught in fast mode too.
    use tapegrad::ops::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
    #[derive(Debug)]
    struct WrongSquare;
    impl Backward<f64> for WrongSquare {
        fn backward(
            &self,
            cx: &BackwardCx<'_, f64>,
            g: &Tensor<f64>,
        ) -> tapegrad::Result<InputGrads<f64>> {
            Ok([Some(g.zip_map(cx.input(0), "wrong", |g, x| 3.0 * g * x)?)]
                .into_iter()
                .collect())
        }
        fn backward_graph<'t>(
            &self,
            _: &GraphCx<'t, f64>,
            g: tapegrad::Var<'t, f64>,
        ) -> tapegrad::Result<InputVars<'t, f64>> {
            Ok([Some(g)].into_iter().collect())
        }
    }
    let result = gradcheck(
        |tape, v, _| {
            tape.push_op(
                "wrong_square",
                v[0].value().map(|x| x * x)?,
                &[v[0]],
                WrongSquare,
            )
        },
        &[randn(&[6], 15)],
        &fast,
    );
    assert!(matches!(result, Err(tapegrad::Error::GradcheckFailed(_))));
}
