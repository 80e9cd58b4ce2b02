//! Every op gradchecked in f64 against central finite differences, over several shapes: broadcasting,
//! zero-size batches, and values used more than once.

mod common;

use common::{away_from_zero, randn, uniform};
use tapegrad::{BitMask, GradcheckOptions, Shape, Tensor, gradcheck};

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

macro_rules! check {
    ($inputs:expr, |$tape:pat_param, $v:ident, $rng:pat_param| $body:expr) => {{
        let inputs: Vec<Tensor<f64>> = $inputs;
        if let Err(e) = gradcheck(|$tape, $v, $rng| $body, &inputs, &opts()) {
            panic!("{e}");
        }
    }};
}

const BROADCAST_PAIRS: &[(&[usize], &[usize])] = &[
    (&[3, 4], &[3, 4]),
    (&[3, 4], &[4]),
    (&[3, 4], &[1, 4]),
    (&[3, 1], &[1, 4]),
    (&[2, 3, 4], &[3, 1]),
    (&[], &[2, 3]),
    (&[0, 4], &[4]),
    (&[2, 1, 3, 2], &[4, 1, 2]),
];

#[test]
fn add_sub_mul_div_broadcasting() {
    for (i, &(a, b)) in BROADCAST_PAIRS.iter().enumerate() {
        let seed = i as u64 * 10;
        check!(vec![randn(a, seed), randn(b, seed + 1)], |_, v, _| v[0]
            .add(v[1]));
        check!(vec![randn(a, seed), randn(b, seed + 1)], |_, v, _| v[0]
            .sub(v[1]));
        check!(vec![randn(a, seed), randn(b, seed + 1)], |_, v, _| v[0]
            .mul(v[1]));
        check!(
            vec![randn(a, seed), away_from_zero(b, seed + 1, 0.5)],
            |_, v, _| v[0].div(v[1])
        );
        // Operands swapped: the broadcast one on the left.
        check!(vec![randn(b, seed + 2), randn(a, seed + 3)], |_, v, _| v[0]
            .mul(v[1]));
    }
}

#[test]
fn scalar_ops() {
    for dims in [&[][..], &[5], &[2, 3]] {
        check!(vec![randn(dims, 1)], |_, v, _| v[0].neg());
        check!(vec![randn(dims, 2)], |_, v, _| v[0].add_scalar(2.5));
        check!(vec![randn(dims, 3)], |_, v, _| v[0].mul_scalar(-1.5));
    }
}

#[test]
fn matmul_shapes() {
    for (m, k, n) in [
        (3, 4, 2),
        (1, 5, 1),
        (4, 1, 3),
        (0, 3, 2),
        (3, 0, 2),
        (2, 3, 0),
        (6, 7, 5),
    ] {
        check!(vec![randn(&[m, k], 4), randn(&[k, n], 5)], |_, v, _| v[0]
            .matmul(v[1]));
    }
}

#[test]
fn relu_away_from_the_kink() {
    for dims in [&[7][..], &[3, 4], &[2, 3, 2], &[0, 3]] {
        check!(vec![away_from_zero(dims, 6, 0.1)], |_, v, _| v[0].relu());
    }
}

#[test]
fn dropout_with_the_mask_held_fixed() {
    for p in [0.1, 0.3, 0.5, 0.9, 1.0] {
        for dims in [&[4, 5][..], &[3, 2, 2], &[0, 5], &[]] {
            check!(vec![randn(dims, 7)], |_, v, rng| v[0].dropout(p, rng));
        }
    }
    let mask = BitMask::from_fn(12, |i| i % 3 != 0).unwrap();
    check!(vec![randn(&[3, 4], 8)], |_, v, _| v[0]
        .dropout_with_mask(&mask, 0.25));
    // A stochastic op inside a bigger function: the whole composite is checked with one mask.
    check!(vec![randn(&[4, 3], 9), randn(&[3, 5], 10)], |_, v, rng| {
        v[0].matmul(v[1])?.tanh()?.dropout(0.5, rng)?.sum()
    });
}

#[test]
fn softmax_family() {
    for dims in [&[3, 5][..], &[2, 3, 4], &[1, 1], &[5], &[0, 3]] {
        check!(vec![randn(dims, 11)], |_, v, _| v[0].log_softmax());
        check!(vec![randn(dims, 12)], |_, v, _| v[0].softmax());
    }
}

#[test]
fn nll_and_cross_entropy() {
    let labels = [2usize, 0, 1, 2];
    check!(vec![randn(&[4, 3], 13)], |_, v, _| v[0].nll(&labels));
    check!(vec![randn(&[4, 3], 14)], |_, v, _| v[0]
        .cross_entropy(&labels));
    check!(vec![randn(&[1, 1], 15)], |_, v, _| v[0].cross_entropy(&[0]));
    check!(
        vec![randn(&[4, 3], 16).map(|x| 10.0 * x).unwrap()],
        |_, v, _| v[0].log_softmax()?.nll(&labels)
    );
}

#[test]
fn smooth_unary_ops() {
    for dims in [&[][..], &[6], &[2, 3]] {
        check!(vec![randn(dims, 17)], |_, v, _| v[0].exp());
        check!(vec![uniform(dims, 18, 0.5, 3.0)], |_, v, _| v[0].log());
        check!(vec![randn(dims, 19)], |_, v, _| v[0].tanh());
        check!(
            vec![randn(dims, 20).map(|x| 4.0 * x).unwrap()],
            |_, v, _| v[0].sigmoid()
        );
    }
}

#[test]
fn reductions() {
    for dims in [&[][..], &[5], &[3, 4], &[2, 3, 4], &[0, 3]] {
        check!(vec![randn(dims, 21)], |_, v, _| v[0].sum());
        if dims.iter().product::<usize>() > 0 {
            check!(vec![randn(dims, 22)], |_, v, _| v[0].mean());
        }
    }
    for axis in [0isize, 1, -1] {
        for keepdim in [false, true] {
            check!(vec![randn(&[3, 4], 23)], |_, v, _| v[0]
                .sum_axis(axis, keepdim));
            check!(vec![randn(&[2, 3, 4], 24)], |_, v, _| v[0]
                .mean_axis(axis, keepdim));
        }
    }
    let target = Shape::new(&[3, 1]).unwrap();
    check!(vec![randn(&[2, 3, 4], 25)], |_, v, _| v[0].sum_to(&target));
    let wide = Shape::new(&[2, 3, 4]).unwrap();
    check!(vec![randn(&[3, 1], 26)], |_, v, _| v[0].broadcast_to(&wide));
}

#[test]
fn layout_ops() {
    check!(vec![randn(&[3, 4], 27)], |_, v, _| v[0].t());
    check!(vec![randn(&[2, 3, 4], 28)], |_, v, _| v[0].transpose(0, 2));
    check!(vec![randn(&[2, 3, 4], 29)], |_, v, _| v[0]
        .transpose(-1, -2));
    check!(vec![randn(&[2, 6], 30)], |_, v, _| v[0].reshape(&[3, 2, 2]));
    check!(vec![randn(&[2, 2, 2, 2], 31)], |_, v, _| v[0]
        .reshape(&[16]));
}

#[test]
fn values_used_more_than_once() {
    // x·x + x: the two uses of x must both contribute (d/dx = 2x + 1).
    check!(vec![randn(&[3, 3], 32)], |_, v, _| v[0]
        .mul(v[0])?
        .add(v[0]));
    // A residual block: relu(x·W) + x.
    check!(
        vec![away_from_zero(&[4, 3], 33, 0.1), randn(&[3, 3], 34)],
        |_, v, _| { v[0].matmul(v[1])?.relu()?.add(v[0]) }
    );
    // The same weight in two layers.
    check!(vec![randn(&[2, 3], 35), randn(&[3, 3], 36)], |_, v, _| {
        v[0].matmul(v[1])?.tanh()?.matmul(v[1])?.sum()
    });
}

#[test]
fn the_lesson_model_as_a_whole() {
    let labels = [0usize, 2, 1, 1, 0];
    check!(
        vec![
            randn(&[5, 4], 40),
            randn(&[4, 6], 41),
            randn(&[6], 42),
            randn(&[6, 3], 43),
            randn(&[3], 44),
        ],
        |_, v, rng| {
            v[0].matmul(v[1])?
                .add(v[2])?
                .relu()?
                .dropout(0.5, rng)?
                .matmul(v[3])?
                .add(v[4])?
                .cross_entropy(&labels)
        }
    );
}

#[test]
fn gradcheck_catches_a_wrong_gradient() {
    use tapegrad::ops::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
    use tapegrad::{Error, Var};

    // A deliberately wrong square: forward x², backward claims 3x instead of 2x.
    #[derive(Debug)]
    struct WrongSquare;
    impl Backward<f64> for WrongSquare {
        fn backward(
            &self,
            cx: &BackwardCx<'_, f64>,
            g: &Tensor<f64>,
        ) -> tapegrad::Result<InputGrads<f64>> {
            let x = cx.input(0);
            Ok([Some(g.zip_map(x, "wrong", |g, x| 3.0 * g * x)?)]
                .into_iter()
                .collect())
        }
        fn backward_graph<'t>(
            &self,
            _: &GraphCx<'t, f64>,
            g: Var<'t, f64>,
        ) -> tapegrad::Result<InputVars<'t, f64>> {
            Ok([Some(g)].into_iter().collect())
        }
    }
    let result = gradcheck(
        |tape, v, _| {
            let value = v[0].value().map(|x| x * x)?;
            tape.push_op("wrong_square", value, &[v[0]], WrongSquare)
        },
        &[Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3]).unwrap()],
        &opts(),
    );
    let Err(Error::GradcheckFailed(report)) = result else {
        panic!("a wrong gradient passed gradcheck");
    };
    let worst = report.inputs[0].worst.as_ref().unwrap();
    // The largest error is at x = −2 (|3x − 2x| = 2), on the diagonal of the Jacobian.
    assert_eq!(
        (worst.input_index.as_slice(), worst.output_index),
        (&[1usize][..], 1)
    );
    assert!((worst.analytic - (-6.0)).abs() < 1e-12);
    assert!((worst.numeric - (-4.0)).abs() < 1e-6);
    let text = report.to_string();
    assert!(
        text.contains("FAILED") && text.contains("input element [1]"),
        "{text}"
    );
}
