//! Every reduction sums with one accurate kernel: pairwise summation, error O(log n · ε), the same
//! bits at any thread count. The reference for each f32 result is the same sum in f64 (whose own
//! error is ~1e9 times smaller), and the bounds are what a pairwise sum achieves — a running f32
//! total misses every one of them by orders of magnitude.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::nn::MSELoss;
use tapegrad::{Shape, Tape, Tensor};

fn relative(ours: f64, exact: f64) -> f64 {
    ((ours - exact) / exact).abs()
}

/// Uniform draws in [0, 1) as f32, and the same values in f64.
fn draws(n: usize, seed: u64) -> (Tensor<f32>, Tensor<f64>) {
    let x = Tensor::<f32>::uniform(&[n], 0.0, 1.0, &mut Pcg64::seed_from_u64(seed)).unwrap();
    let wide = x.cast::<f64>().unwrap();
    (x, wide)
}

#[test]
fn sums_of_ones_beyond_two_to_the_24_are_exact() {
    // A running f32 total stops at 2²⁴ = 16777216.
    let ones = Tensor::<f32>::ones(&[1 << 25]).unwrap();
    assert_eq!(ones.sum_all(), 33_554_432.0);
    let tape = Tape::new();
    let mean = tape.constant(ones).mean().unwrap();
    assert_eq!(mean.value().item().unwrap(), 1.0);
}

#[test]
fn ten_million_tenths() {
    // 0.1f32 = 0.100000001490116…; the exact sum of 10⁷ of them is 1000000.0149…
    // (PyTorch gives 999999.4; a running total gives 1087937).
    let x = Tensor::<f32>::full(&[10_000_000], 0.1).unwrap();
    let exact = 10_000_000.0 * f64::from(0.1f32);
    let ours = f64::from(x.sum_all());
    assert!(relative(ours, exact) < 1e-6, "{ours} vs {exact}");
}

#[test]
fn relative_error_stays_near_epsilon_as_n_grows() {
    for (n, seed) in [(1_000_000, 1), (10_000_000, 2)] {
        let (x, wide) = draws(n, seed);
        let err = relative(f64::from(x.sum_all()), wide.sum_all());
        // f32 ε = 6e-8; log₂(10⁷) ≈ 23.
        assert!(err < 1e-6, "n = {n}: relative error {err:e}");
    }
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let (x, _) = draws(3_000_001, 3);
    let rows =
        Tensor::<f32>::uniform(&[1 << 16, 40], -1.0, 1.0, &mut Pcg64::seed_from_u64(4)).unwrap();
    let mut results = vec![];
    for threads in [1, 2, 7] {
        tapegrad::set_num_threads(threads);
        results.push((
            x.sum_all().to_bits(),
            rows.sum_axis(0, false).unwrap(),
            rows.sum_to(&Shape::new(&[40]).unwrap()).unwrap(),
        ));
    }
    tapegrad::set_num_threads(0);
    for r in &results[1..] {
        assert_eq!(r.0, results[0].0);
        assert_eq!(r.1, results[0].1);
        assert_eq!(r.2, results[0].2);
    }
}

#[test]
fn bias_gradients_over_millions_of_rows() {
    // sum_axis(0) and sum_to([H]) over 2²² rows (a running total is 4% off here).
    let rows = 1 << 22;
    let x = Tensor::<f32>::uniform(&[rows, 3], 0.0, 1.0, &mut Pcg64::seed_from_u64(5)).unwrap();
    let wide = x.cast::<f64>().unwrap();
    let exact = wide.sum_axis(0, false).unwrap();
    let by_axis = x.sum_axis(0, false).unwrap();
    let by_sum_to = x.sum_to(&Shape::new(&[3]).unwrap()).unwrap();
    let kept = x.sum_to(&Shape::new(&[1, 3]).unwrap()).unwrap();
    for j in 0..3 {
        let e = exact.data()[j];
        assert!(relative(f64::from(by_axis.data()[j]), e) < 1e-6);
        assert!(relative(f64::from(by_sum_to.data()[j]), e) < 1e-6);
        assert_eq!(kept.data()[j], by_sum_to.data()[j]);
    }
    // The same through the tape: the gradient of a bias broadcast over every row.
    let tape = Tape::new();
    let b = tape.leaf(Tensor::<f32>::zeros(&[3]).unwrap());
    let y = tape.constant(x).add(b).unwrap();
    let seed = y.value().map(|_| 0.1).unwrap();
    let grads = y
        .backward_with(tapegrad::BackwardOptions::new().seed(seed))
        .unwrap();
    let want = rows as f64 * f64::from(0.1f32);
    for &g in grads.wrt(b).unwrap().data() {
        assert!(relative(f64::from(g), want) < 1e-6, "{g} vs {want}");
    }
}

#[test]
fn sums_over_middle_and_several_axes() {
    let x =
        Tensor::<f64>::uniform(&[3, 50, 4, 5], -1.0, 1.0, &mut Pcg64::seed_from_u64(6)).unwrap();
    let target = Shape::new(&[3, 1, 4, 1]).unwrap();
    let got = x.sum_to(&target).unwrap();
    for a in 0..3 {
        for c in 0..4 {
            let mut want = 0.0;
            for b in 0..50 {
                for d in 0..5 {
                    want += x.get(&[a, b, c, d]).unwrap();
                }
            }
            assert!((got.get(&[a, 0, c, 0]).unwrap() - want).abs() < 1e-12);
        }
    }
    let middle = x.sum_axis(1, true).unwrap();
    assert_eq!(middle.dims(), &[3, 1, 4, 5]);
    let want: f64 = (0..50).map(|b| x.get(&[2, b, 3, 4]).unwrap()).sum();
    assert!((middle.get(&[2, 0, 3, 4]).unwrap() - want).abs() < 1e-12);
}

#[test]
fn mean_cross_entropy_over_four_million_rows() {
    let rows = 1 << 22;
    let mut rng = Pcg64::seed_from_u64(7);
    let logits = Tensor::<f32>::normal(&[rows, 3], 0.0, 1.0, &mut rng).unwrap();
    let labels: Vec<usize> = (0..rows).map(|i| i % 3).collect();
    let tape = Tape::new();
    let ours = tape
        .constant(logits.clone())
        .cross_entropy(&labels)
        .unwrap()
        .value()
        .item()
        .unwrap();
    let wide = Tape::new();
    let exact = wide
        .constant(logits.cast::<f64>().unwrap())
        .cross_entropy(&labels)
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert!(relative(f64::from(ours), exact) < 1e-5, "{ours} vs {exact}");
}

#[test]
fn mse_over_ten_million_elements() {
    let n = 10_000_000;
    let mut rng = Pcg64::seed_from_u64(8);
    let p = Tensor::<f32>::normal(&[n], 0.0, 1.0, &mut rng).unwrap();
    let t = Tensor::<f32>::normal(&[n], 0.0, 1.0, &mut rng).unwrap();
    let tape = Tape::new();
    let ours = MSELoss::default()
        .forward(tape.constant(p.clone()), tape.constant(t.clone()))
        .unwrap()
        .value()
        .item()
        .unwrap();
    let wide = Tape::new();
    let exact = MSELoss::default()
        .forward(
            wide.constant(p.cast().unwrap()),
            wide.constant(t.cast().unwrap()),
        )
        .unwrap()
        .value()
        .item()
        .unwrap();
    assert!(relative(f64::from(ours), exact) < 1e-5, "{ours} vs {exact}");
}

#[test]
fn log_softmax_of_a_million_logits() {
    let n = 1_000_000;
    let x = Tensor::<f32>::normal(&[1, n], 0.0, 3.0, &mut Pcg64::seed_from_u64(9)).unwrap();
    let tape = Tape::new();
    let ours = tape.constant(x.clone()).log_softmax().unwrap().value();
    let wide = Tape::new();
    let exact = wide
        .constant(x.cast::<f64>().unwrap())
        .log_softmax()
        .unwrap()
        .value();
    // Each output is (x − m) − log Σ: two roundings of f32 values and an accurate Σ.
    let worst = ours
        .data()
        .iter()
        .zip(exact.data())
        .map(|(&a, &b)| relative(f64::from(a), b))
        .fold(0.0, f64::max);
    assert!(worst < 1e-6, "worst relative error {worst:e}");
}

#[test]
fn large_logits_keep_their_precision() {
    // The row [1000, 1001, 1002]: x − (m + log Σ) would round at the scale of 1000.
    let l = (1.0 + (-1.0f64).exp() + (-2.0f64).exp()).ln();
    let want = [-2.0 - l, -1.0 - l, -l];
    // PyTorch 2.15: `torch.log_softmax(torch.tensor([[1000., 1001., 1002.]]), -1)`.
    let torch = [
        -2.407_605_886_459_350_6,
        -1.407_605_886_459_350_6,
        -0.407_605_946_063_995_36,
    ];
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![1000.0f32, 1001.0, 1002.0], &[1, 3]).unwrap());
    let y = x.log_softmax().unwrap();
    for ((&a, &b), &t) in y.value().data().iter().zip(&want).zip(&torch) {
        assert!(relative(f64::from(a), b) < 1e-6, "{a} vs {b}");
        assert!(relative(f64::from(a), t) < 1e-6, "{a} vs PyTorch's {t}");
    }
    // The gradient of Σ y·w: w − softmax(x)·Σw.
    let w = [0.3f32, -0.5, 1.25];
    let seed = Tensor::from_vec(w.to_vec(), &[1, 3]).unwrap();
    let grads = y
        .backward_with(tapegrad::BackwardOptions::new().seed(seed))
        .unwrap();
    let total: f64 = w.iter().map(|&v| f64::from(v)).sum();
    for (k, &g) in grads.wrt(x).unwrap().data().iter().enumerate() {
        let want = f64::from(w[k]) - want[k].exp() * total;
        assert!(
            (f64::from(g) - want).abs() < 1e-6 * want.abs().max(1.0),
            "{g} vs {want}"
        );
    }
    // f64 within 1e-13.
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_vec(vec![1000.0f64, 1001.0, 1002.0], &[1, 3]).unwrap());
    for (&a, &b) in x.log_softmax().unwrap().value().data().iter().zip(&want) {
        assert!(relative(a, b) < 1e-13, "{a} vs {b}");
    }
    // softmax too.
    let p = x.softmax().unwrap().value();
    for (&a, &b) in p.data().iter().zip(&want) {
        assert!(relative(a, b.exp()) < 1e-13, "{a} vs {}", b.exp());
    }
}

#[test]
fn cross_entropy_on_well_separated_logits() {
    // loss = log(1 + e⁻⁵ + e⁻¹⁰) ≈ 0.00676 for logits [100, 95, 90] and label 0. In f32 the sum
    // 1.0067834 is itself rounded (to 1.2e-7, i.e. 2e-5 of the loss), so the reference is what
    // PyTorch 2.15 gives, `F.cross_entropy(torch.tensor([[100., 95., 90.]]), torch.tensor([0]))`.
    let torch = 0.006_760_462_652_891_874;
    let want = ((-5.0f64).exp() + (-10.0f64).exp()).ln_1p();
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_vec(vec![100.0f32, 95.0, 90.0], &[1, 3]).unwrap());
    let loss = f64::from(x.cross_entropy(&[0]).unwrap().value().item().unwrap());
    assert!(relative(loss, torch) < 1e-6, "{loss} vs PyTorch's {torch}");
    assert!(relative(loss, want) < 5e-6, "{loss} vs {want}");
    let tape = Tape::new();
    let x = tape.constant(Tensor::from_vec(vec![100.0f64, 95.0, 90.0], &[1, 3]).unwrap());
    let loss = x.cross_entropy(&[0]).unwrap().value().item().unwrap();
    assert!(relative(loss, want) < 1e-13, "{loss} vs {want}");
}
