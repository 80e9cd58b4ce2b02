//! Property tests: arbitrary shapes and values (NaN and ±∞ included) never panic — every call returns
//! a value or a typed error — and the laws the ops must obey hold on random inputs.

use proptest::prelude::*;
use rand::SeedableRng;
use tapegrad::{BackwardOptions, Tape, Tensor};

/// Dimensions of rank 0 to 4 with sizes 0 to 4.
fn dims() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..5, 0..5)
}

/// Any f64, including NaN, ±∞, zero and denormals, with finite values most of the time.
fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1e3f64..1e3,
        1 => prop::num::f64::ANY,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
    ]
}

fn tensor(dims: Vec<usize>) -> impl Strategy<Value = Tensor<f64>> {
    let n: usize = dims.iter().product();
    prop::collection::vec(any_value(), n)
        .prop_map(move |data| Tensor::from_vec(data, &dims).unwrap())
}

/// Finite rows of logits, [rows, cols] with rows, cols ≥ 1.
fn logits() -> impl Strategy<Value = Tensor<f64>> {
    (1usize..5, 1usize..6).prop_flat_map(|(r, c)| {
        prop::collection::vec(-50.0f64..50.0, r * c)
            .prop_map(move |d| Tensor::from_vec(d, &[r, c]).unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_op_on_any_input_returns_ok_or_a_typed_error(
        a in dims().prop_flat_map(tensor),
        b in dims().prop_flat_map(tensor),
        op in 0usize..22,
        p in prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0, -1.0f64..2.0, Just(f64::NAN)],
        labels in prop::collection::vec(-2i64..6, 0..5),
        axis in -5isize..5,
    ) {
        let tape = Tape::new();
        let (x, y) = (tape.leaf(a), tape.leaf(b));
        let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
        let result = match op {
            0 => x.add(y), 1 => x.sub(y), 2 => x.mul(y), 3 => x.div(y), 4 => x.matmul(y),
            5 => x.matmul_t(y), 6 => x.relu(), 7 => x.dropout(p, &mut rng), 8 => x.log_softmax(),
            9 => x.softmax(), 10 => x.nll(&labels), 11 => x.cross_entropy(&labels), 12 => x.exp(),
            13 => x.log(), 14 => x.tanh(), 15 => x.sigmoid(), 16 => x.sum_axis(axis, axis > 0),
            17 => x.transpose(axis, 0), 18 => x.reshape(y.shape().dims()), 19 => x.t(),
            20 => x.sum_to(&y.shape()), _ => x.broadcast_to(&y.shape()),
        };
        if let Ok(out) = result {
            // Backward with a seed of ones of the output's shape, and from its sum.
            let ones = Tensor::ones(out.shape().dims()).unwrap();
            let _ = out.backward_with(BackwardOptions::new().seed(ones).retain_graph(true));
            let _ = out.sum().and_then(|s| s.backward());
        }
    }

    #[test]
    fn log_softmax_is_invariant_to_adding_a_constant(x in logits(), c in -50.0f64..50.0) {
        let tape = Tape::new();
        let v = tape.constant(x.clone());
        let shifted = v.add_scalar(c).unwrap().log_softmax().unwrap();
        let plain = v.log_softmax().unwrap();
        for (a, b) in shifted.value().data().iter().zip(plain.value().data()) {
            prop_assert!((a - b).abs() < 1e-10, "{} vs {}", a, b);
        }
    }

    #[test]
    fn nll_of_log_probabilities_is_non_negative(x in logits(), seed in 0u64..1000) {
        let rows = x.dims()[0];
        let classes = x.dims()[1];
        let labels: Vec<usize> = (0..rows).map(|i| (seed as usize + i) % classes).collect();
        let tape = Tape::new();
        let loss = tape.constant(x).cross_entropy(&labels).unwrap().value().item().unwrap();
        prop_assert!(loss >= 0.0);
    }

    #[test]
    fn dropout_with_p_zero_is_the_identity(x in dims().prop_flat_map(tensor)) {
        let tape = Tape::new();
        let v = tape.leaf(x);
        let y = v.dropout(0.0, &mut rand_pcg::Pcg64::seed_from_u64(1)).unwrap();
        prop_assert_eq!(y.id(), v.id());
    }

    #[test]
    fn relu_is_x_times_the_indicator_of_x_positive(x in dims().prop_flat_map(tensor)) {
        let tape = Tape::new();
        let y = tape.constant(x.clone()).relu().unwrap();
        for (&out, &inp) in y.value().data().iter().zip(x.data()) {
            if inp.is_nan() {
                prop_assert!(out.is_nan());
            } else {
                prop_assert_eq!(out, if inp > 0.0 { inp } else { 0.0 });
            }
        }
    }

    #[test]
    fn gradients_are_linear_in_the_seed(x in logits(), a in -3.0f64..3.0, b in -3.0f64..3.0, s in 0u64..100) {
        let dims = x.dims().to_vec();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(s);
        let s1 = Tensor::normal(&dims, 0.0, 1.0, &mut rng).unwrap();
        let s2 = Tensor::normal(&dims, 0.0, 1.0, &mut rng).unwrap();
        let combined = s1.zip_map(&s2, "seed", |p, q| a * p + b * q).unwrap();
        let grad = |seed: Tensor<f64>| {
            let tape = Tape::new();
            let v = tape.leaf(x.clone());
            let y = v.tanh().unwrap().mul(v).unwrap().log_softmax().unwrap();
            y.backward_with(BackwardOptions::new().seed(seed)).unwrap().wrt(v).unwrap().clone()
        };
        let (g1, g2, g) = (grad(s1), grad(s2), grad(combined));
        for ((&u, &w), &c) in g1.data().iter().zip(g2.data()).zip(g.data()) {
            prop_assert!((a * u + b * w - c).abs() < 1e-9 * (1.0 + c.abs()), "{} vs {}", a * u + b * w, c);
        }
    }

    #[test]
    fn a_zero_seed_gives_exactly_zero_gradients(x in logits()) {
        let tape = Tape::new();
        let v = tape.leaf(x.clone());
        let y = v.exp().unwrap().matmul_t(v).unwrap();
        let zeros = Tensor::zeros(y.shape().dims()).unwrap();
        let g = y.backward_with(BackwardOptions::new().seed(zeros)).unwrap();
        prop_assert!(g.wrt(v).unwrap().data().iter().all(|&d| d == 0.0));
    }
}
