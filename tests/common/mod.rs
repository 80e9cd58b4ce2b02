//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{Result, Tape, Tensor, Var};

/// Deterministic N(0, 1) draws of the given shape.
pub fn randn(dims: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::normal(dims, 0.0, 1.0, &mut Pcg64::seed_from_u64(seed)).unwrap()
}

/// Draws kept at least `margin` away from 0 (for ReLU's kink, division, log).
pub fn away_from_zero(dims: &[usize], seed: u64, margin: f64) -> Tensor<f64> {
    randn(dims, seed)
        .map(|x| x.signum() * (margin + x.abs()))
        .unwrap()
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

/// A safetensors file of golden values written by a script in `tests/golden/` (PyTorch).
pub struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    /// Opens `tests/golden/{name}`.
    pub fn open(name: &str) -> Golden {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        Golden {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        }
    }

    /// Whether the file holds a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap()
            .tensor(name)
            .is_ok()
    }

    /// The names of every tensor in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
        names.sort();
        names
    }

    /// A tensor's dimensions and raw little-endian bytes.
    pub fn raw(&self, name: &str) -> (Vec<usize>, safetensors::Dtype, Vec<u8>) {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let view = file
            .tensor(name)
            .unwrap_or_else(|_| panic!("no tensor {name}"));
        (view.shape().to_vec(), view.dtype(), view.data().to_vec())
    }

    /// An f32 tensor.
    pub fn f32(&self, name: &str) -> Tensor<f32> {
        let (dims, dtype, data) = self.raw(name);
        assert_eq!(dtype, safetensors::Dtype::F32, "{name}");
        let data = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_vec(data, &dims).unwrap()
    }

    /// An f64 tensor.
    pub fn f64(&self, name: &str) -> Tensor<f64> {
        let (dims, dtype, data) = self.raw(name);
        assert_eq!(dtype, safetensors::Dtype::F64, "{name}");
        let data = data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_vec(data, &dims).unwrap()
    }

    /// An i64 tensor, flattened.
    pub fn i64(&self, name: &str) -> Vec<i64> {
        let (_, dtype, data) = self.raw(name);
        assert_eq!(dtype, safetensors::Dtype::I64, "{name}");
        data.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

/// A seeded generator.
pub fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

/// Gives a closure the higher-ranked signature gradcheck wants (a `let` alone would not).
pub fn checked_fn<F>(f: F) -> F
where
    F: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>], &mut Pcg64) -> Result<Var<'t, f64>> + Copy,
{
    f
}
