//! Dropout's statistics and semantics: kept fraction, output values, the saved mask reused by
//! backward, reproducibility, and the edge cases p = 0 and p = 1.

mod common;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::{BitMask, Error, NodeKind, Tape, Tensor};

const N: usize = 100_000;

#[test]
fn kept_fraction_is_within_five_sigma_of_one_minus_p() {
    for (seed, p) in [(1u64, 0.1), (2, 0.5), (3, 0.9), (4, 0.25), (5, 0.3)] {
        let tape = Tape::<f32>::new();
        let x = tape.leaf(Tensor::ones(&[N]).unwrap());
        let y = x.dropout(p, &mut Pcg64::seed_from_u64(seed)).unwrap();
        let kept = y.value().data().iter().filter(|&&v| v != 0.0).count() as f64;
        // The number kept is Binomial(N, 1 − p): mean N(1 − p), variance N p (1 − p).
        let mean = N as f64 * (1.0 - p);
        let sigma = (N as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (kept - mean).abs() < 5.0 * sigma,
            "p = {p}: kept {kept}, expected {mean} ± {sigma}"
        );
        assert_eq!(y.dropout_mask().unwrap().0.count_ones() as f64, kept);
    }
}

#[test]
fn mask_bits_look_independent() {
    // Neighbouring bits (within a word, across words and across 16 Ki-element chunks) should agree
    // half the time for p = 0.5: a stuck or copied stream would agree far more.
    let mask = BitMask::dropout(1 << 18, 0.5, &mut Pcg64::seed_from_u64(4)).unwrap();
    for lag in [1usize, 32, 64, 1 << 14] {
        let pairs = mask.len() - lag;
        let agree = (0..pairs)
            .filter(|&i| mask.get(i) == mask.get(i + lag))
            .count() as f64;
        let sigma = (pairs as f64 * 0.25).sqrt();
        assert!(
            (agree - pairs as f64 / 2.0).abs() < 5.0 * sigma,
            "lag {lag}: {agree} of {pairs}"
        );
    }
}

#[test]
fn outputs_are_zero_or_x_over_one_minus_p() {
    let x = Tensor::<f64>::normal(&[64, 32], 0.0, 1.0, &mut Pcg64::seed_from_u64(5)).unwrap();
    for p in [0.2, 0.5, 0.75] {
        let tape = Tape::new();
        let vx = tape.leaf(x.clone());
        let y = vx.dropout(p, &mut Pcg64::seed_from_u64(6)).unwrap();
        let (mask, scale) = y.dropout_mask().unwrap();
        assert_eq!(scale, 1.0 / (1.0 - p));
        for (i, (&out, &inp)) in y.value().data().iter().zip(x.data()).enumerate() {
            if mask.get(i) {
                assert_eq!(out, inp * (1.0 / (1.0 - p)));
            } else {
                assert_eq!(out, 0.0);
            }
        }
    }
}

#[test]
fn backward_reuses_the_saved_mask() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::normal(&[40, 50], 0.0, 1.0, &mut Pcg64::seed_from_u64(7)).unwrap());
    let mut rng = Pcg64::seed_from_u64(8);
    let y = x.dropout(0.3, &mut rng).unwrap();
    let (mask, _) = y.dropout_mask().unwrap();
    let g = Tensor::normal(&[40, 50], 0.0, 1.0, &mut Pcg64::seed_from_u64(9)).unwrap();
    // Draw more numbers from the same generator before backward: backward must not draw a new mask.
    let _ = rng.next_u64();
    let grads = y
        .backward_with(
            tapegrad::BackwardOptions::new()
                .seed(g.clone())
                .retain_graph(false),
        )
        .unwrap();
    for (i, (&dx, &gi)) in grads
        .wrt(x)
        .unwrap()
        .data()
        .iter()
        .zip(g.data())
        .enumerate()
    {
        let want = if mask.get(i) { gi / 0.7 } else { 0.0 };
        assert!((dx - want).abs() < 1e-15, "element {i}: {dx} vs {want}");
    }
}

#[test]
fn same_seed_same_mask_different_seed_different_mask() {
    let draw = |seed| BitMask::dropout(10_000, 0.5, &mut Pcg64::seed_from_u64(seed)).unwrap();
    assert_eq!(draw(11), draw(11));
    assert_ne!(draw(11), draw(12));
    // The tape and a hand-written dropout take the same numbers from the same generator.
    let tape = Tape::<f32>::new();
    let y = tape
        .leaf(Tensor::ones(&[100, 100]).unwrap())
        .dropout(0.5, &mut Pcg64::seed_from_u64(11))
        .unwrap();
    assert_eq!(y.dropout_mask().unwrap().0, draw(11));
}

#[test]
fn p_zero_is_the_identity_and_draws_nothing() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::ones(&[3, 3]).unwrap());
    let mut rng = Pcg64::seed_from_u64(13);
    let untouched = rng.clone();
    let y = x.dropout(0.0, &mut rng).unwrap();
    assert_eq!(y.id(), x.id(), "no node recorded");
    assert_eq!(y.kind(), NodeKind::Leaf);
    assert_eq!(rng, untouched, "no random number drawn");
}

#[test]
fn p_one_gives_zeros_and_a_zero_gradient_never_nan() {
    for p in [1.0, 1.0 - 1e-7] {
        let tape = Tape::<f32>::new();
        let x = tape.leaf(Tensor::full(&[50, 20], 3.0).unwrap());
        let y = x.dropout(p, &mut Pcg64::seed_from_u64(14)).unwrap();
        assert!(y.value().data().iter().all(|v| v.is_finite()));
        let grads = y.sum().unwrap().backward().unwrap();
        assert!(grads.wrt(x).unwrap().data().iter().all(|v| v.is_finite()));
        if p == 1.0 {
            assert!(y.value().data().iter().all(|&v| v == 0.0));
            assert!(grads.wrt(x).unwrap().data().iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn bad_probabilities_are_errors() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::ones(&[4]).unwrap());
    let mut rng = Pcg64::seed_from_u64(15);
    for p in [-0.1, 1.0001, f64::NAN, f64::INFINITY, -0.0 - 1e-300] {
        match x.dropout(p, &mut rng) {
            Err(Error::InvalidProbability {
                op: "dropout",
                p: got,
            }) => {
                assert!(got.is_nan() == p.is_nan() && (p.is_nan() || got == p))
            }
            other => panic!("p = {p}: expected InvalidProbability, got {other:?}"),
        }
    }
    assert!(matches!(
        BitMask::dropout(4, 2.0, &mut rng),
        Err(Error::InvalidProbability { .. })
    ));
}

#[test]
fn a_caller_mask_is_applied_and_checked() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap());
    let mask = BitMask::from_bools(&[true, false, false, true]).unwrap();
    let y = x.dropout_with_mask(&mask, 0.5).unwrap();
    assert_eq!(y.value().data(), &[2.0, 0.0, 0.0, 8.0]);
    assert_eq!(y.dropout_mask().unwrap(), (mask, 2.0));
    let short = BitMask::ones(3).unwrap();
    assert!(matches!(
        x.dropout_with_mask(&short, 0.5),
        Err(Error::MaskLength { mask_len: 3, .. })
    ));
}

#[test]
fn the_mask_costs_one_bit_per_element() {
    let tape = Tape::<f32>::new();
    let y = tape
        .leaf(Tensor::ones(&[128, 64]).unwrap())
        .dropout(0.5, &mut Pcg64::seed_from_u64(16))
        .unwrap();
    assert_eq!(y.dropout_mask().unwrap().0.bytes(), 128 * 64 / 8);
}

#[test]
fn asking_a_non_dropout_node_for_a_mask_is_an_error() {
    let tape = Tape::<f32>::new();
    let y = tape.leaf(Tensor::ones(&[2]).unwrap()).exp().unwrap();
    assert!(matches!(
        y.dropout_mask(),
        Err(Error::NotSaved { found: "exp", .. })
    ));
}

#[test]
fn dropped_nan_and_infinity_stay_visible_as_in_pytorch() {
    // PyTorch computes x * (mask / (1 − p)): a dropped NaN or ±∞ gives NaN, a dropped −3 gives −0.
    let mask = BitMask::from_bools(&[true, false, false, false, false, true]).unwrap();
    let tape = Tape::<f32>::new();
    let x = tape.leaf(
        Tensor::from_vec(
            vec![
                1.0,
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -3.0,
                f32::NAN,
            ],
            &[6],
        )
        .unwrap(),
    );
    let y = x.dropout_with_mask(&mask, 0.5).unwrap();
    let v = y.value();
    assert_eq!(v.data()[0], 2.0);
    assert!(v.data()[1].is_nan() && v.data()[2].is_nan() && v.data()[3].is_nan());
    assert_eq!(v.data()[4].to_bits(), (-0.0f32).to_bits());
    assert!(v.data()[5].is_nan());
    // Anomaly mode sees the NaN that dropout did not hide.
    let tape = Tape::<f32>::new();
    tape.detect_anomalies(true);
    let x = tape.leaf(Tensor::from_vec(vec![f32::NAN, 1.0], &[2]).unwrap());
    let drop_nan = BitMask::from_bools(&[false, true]).unwrap();
    let loss = x.dropout_with_mask(&drop_nan, 0.5).unwrap().sum().unwrap();
    assert!(matches!(
        loss.backward(),
        Err(Error::Anomaly {
            phase: "forward",
            ..
        })
    ));
}

#[test]
fn a_nan_gradient_at_a_dropped_element_stays_nan() {
    let mask = BitMask::from_bools(&[true, false]).unwrap();
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    let y = x.dropout_with_mask(&mask, 0.5).unwrap();
    let seed = Tensor::from_vec(vec![1.0, f64::NAN], &[2]).unwrap();
    let grads = y
        .backward_with(tapegrad::BackwardOptions::new().seed(seed))
        .unwrap();
    let g = grads.wrt(x).unwrap().data();
    assert_eq!(g[0], 2.0);
    assert!(
        g[1].is_nan(),
        "g · 0 · scale is NaN for g = NaN, as in PyTorch"
    );
    // ReLU's backward, on the other hand, is PyTorch's threshold_backward: exactly 0.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![1.0, -2.0, f64::NAN], &[3]).unwrap());
    let y = x.relu().unwrap();
    let seed = Tensor::from_vec(vec![1.0, f64::NAN, 5.0], &[3]).unwrap();
    let grads = y
        .backward_with(tapegrad::BackwardOptions::new().seed(seed))
        .unwrap();
    let g = grads.wrt(x).unwrap().data();
    assert_eq!(g[..2], [1.0, 0.0]);
    assert_eq!(
        g[2], 5.0,
        "relu(NaN) = NaN passes its gradient, as in PyTorch"
    );
}

#[test]
fn the_f32_scale_is_pytorchs_for_every_p() {
    // tests/golden/make_dropout_golden.py: the value F.dropout gives a kept 1.0, for p = k/1000.
    let golden = common::Golden::open("dropout_scale_f32.safetensors");
    let (ps, kept) = (golden.f64("p"), golden.f32("kept"));
    assert_eq!(ps.numel(), 999);
    for (&p, &want) in ps.data().iter().zip(kept.data()) {
        let tape = Tape::<f32>::new();
        let x = tape.constant(Tensor::ones(&[256]).unwrap());
        let y = x.dropout(p, &mut Pcg64::seed_from_u64(1)).unwrap().value();
        let got = y.data().iter().copied().find(|&v| v != 0.0);
        if let Some(got) = got {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "p = {p}: {got} vs PyTorch's {want}"
            );
        }
        assert_eq!(
            tapegrad::dropout_scale_in::<f32>(p).to_bits(),
            want.to_bits()
        );
    }
}
