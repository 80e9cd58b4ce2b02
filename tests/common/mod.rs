//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::Tensor;

/// Deterministic N(0, 1) draws of the given shape.
pub fn randn(dims: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::normal(dims, 0.0, 1.0, &mut Pcg64::seed_from_u64(seed)).unwrap()
}

/// Draws kept at least `margin` away from 0 (for ReLU's kink, division, log).
pub fn away_from_zero(dims: &[usize], seed: u64, margin: f64) -> Tensor<f64> {
    randn(dims, seed).map(|x| x.signum() * (margin + x.abs()))
}

/// Draws in [low, high).
pub fn uniform(dims: &[usize], seed: u64, low: f64, high: f64) -> Tensor<f64> {
    Tensor::uniform(dims, low, high, &mut Pcg64::seed_from_u64(seed)).unwrap()
}

/// Naive matrix product, independent of the crate's kernel.
pub fn naive_matmul(a: &Tensor<f64>, b: &Tensor<f64>) -> Vec<f64> {
    let (m, k) = (a.dims()[0], a.dims()[1]);
    let n = b.dims()[1];
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|p| a.data()[i * k + p] * b.data()[p * n + j])
                .sum();
        }
    }
    out
}

/// Asserts two slices agree to `tol` element-wise, naming the first disagreement.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}
