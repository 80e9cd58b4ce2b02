//! Numerical stability: huge and masked logits, dropout at the edges of [0, 1], and IEEE behaviour of
//! matmul with denormals and very large values.

use rand::SeedableRng;
use tapegrad::{Tape, Tensor};

fn check_log_softmax<T: tapegrad::Float>(logits: Vec<f64>, classes: usize) {
    let rows = logits.len() / classes;
    let tape = Tape::<T>::new();
    let x = tape.leaf(
        Tensor::from_vec(
            logits.iter().map(|&v| T::from_f64(v)).collect(),
            &[rows, classes],
        )
        .unwrap(),
    );
    let y = x.log_softmax().unwrap();
    for row in y.value().data().chunks(classes) {
        assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
        let total: f64 = row.iter().map(|v| v.to_f64().exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "rows of softmax sum to {total}");
    }
    let labels: Vec<usize> = (0..rows).map(|i| i % classes).collect();
    let loss = x.cross_entropy(&labels).unwrap();
    assert!(loss.value().item().unwrap().is_finite());
    let grads = loss.backward().unwrap();
    assert!(grads.wrt(x).unwrap().data().iter().all(|g| g.is_finite()));
}

#[test]
fn huge_logits_and_large_gaps_stay_finite_in_f32_and_f64() {
    let logits = vec![
        1e4,
        -1e4,
        0.0,
        100.0,
        0.0,
        -100.0,
        1e4,
        1e4 - 100.0,
        1e4 - 200.0,
    ];
    check_log_softmax::<f32>(logits.clone(), 3);
    check_log_softmax::<f64>(logits, 3);
}

#[test]
fn masked_logits_give_minus_infinity_and_exactly_zero_gradient() {
    let inf = f64::NEG_INFINITY;
    for dtype_f32 in [false, true] {
        let values = vec![1.0, inf, 2.0, inf, 0.5, -1.0];
        let labels = [0usize, 1];
        if dtype_f32 {
            let tape = Tape::<f32>::new();
            let x = tape.leaf(
                Tensor::from_vec(values.iter().map(|&v| v as f32).collect(), &[2, 3]).unwrap(),
            );
            let y = x.log_softmax().unwrap();
            assert_eq!(y.value().data()[1], f32::NEG_INFINITY);
            assert_eq!(y.value().data()[3], f32::NEG_INFINITY);
            let g = x.cross_entropy(&labels).unwrap().backward().unwrap();
            let g = g.wrt(x).unwrap();
            assert!(g.data()[1] == 0.0 && g.data()[3] == 0.0, "{:?}", g.data());
            assert!(g.data().iter().all(|v| v.is_finite()));
        } else {
            let tape = Tape::<f64>::new();
            let x = tape.leaf(Tensor::from_vec(values.clone(), &[2, 3]).unwrap());
            let y = x.log_softmax().unwrap();
            assert_eq!(y.value().data()[1], f64::NEG_INFINITY);
            let g = x.cross_entropy(&labels).unwrap().backward().unwrap();
            let g = g.wrt(x).unwrap();
            assert!(g.data()[1] == 0.0 && g.data()[3] == 0.0, "{:?}", g.data());
        }
    }
}

#[test]
fn dropout_at_p_one_and_just_below_is_finite() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
    for p in [1.0, 1.0 - 1e-7] {
        for x in [1.0f32, f32::MAX, 1e-38] {
            let tape = Tape::<f32>::new();
            let v = tape.leaf(Tensor::full(&[1000], x).unwrap());
            let y = v.dropout(p, &mut rng).unwrap();
            // 1/(1 − p) for p = 1 − 1e-7 is 1e7: finite for ordinary x (f32::MAX survivors would overflow,
            // as they do in PyTorch; with p = 1e-7 keep probability, none survive 1000 draws here).
            assert!(
                y.value().data().iter().all(|v| v.is_finite()),
                "p = {p}, x = {x}"
            );
            let g = y.sum().unwrap().backward().unwrap();
            assert!(g.wrt(v).unwrap().data().iter().all(|g| g.is_finite()));
        }
    }
}

#[test]
fn matmul_follows_ieee_with_denormals_and_huge_values() {
    let denormal = f64::MIN_POSITIVE / 8.0;
    let cases: [(f64, f64); 4] = [
        (denormal, 1.0),
        (1e154, 1e154),
        (1e155, 1e155),
        (-1e154, 1e154),
    ];
    for (a, b) in cases {
        let x = Tensor::from_vec(vec![a, 0.0, 0.0, a], &[2, 2]).unwrap();
        let y = Tensor::from_vec(vec![b, 0.0, 0.0, b], &[2, 2]).unwrap();
        let z = x.matmul(&y).unwrap();
        // Diagonal: a·b (+ 0·0), exactly as IEEE multiplication gives it (inf past f64::MAX).
        assert_eq!(z.get(&[0, 0]).unwrap(), a * b, "{a} × {b}");
        assert_eq!(z.get(&[0, 1]).unwrap(), 0.0);
        let tape = Tape::new();
        let (vx, vy) = (tape.leaf(x), tape.leaf(y));
        let grads = vx.matmul(vy).unwrap().sum().unwrap().backward().unwrap();
        assert_eq!(grads.wrt(vx).unwrap().get(&[0, 0]).unwrap(), b);
    }
    assert_eq!(
        denormal * 1.0,
        denormal,
        "denormals are not flushed to zero"
    );
}
