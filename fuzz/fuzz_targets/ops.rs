//! Drives tensor construction, every op and backward with arbitrary shapes (ranks 0–5, sizes from 0
//! past the kernels' block edges up to sizes no memory holds), values (NaN and ±∞ included), labels,
//! probabilities and axes. Any panic, abort or hang is a bug: every call must return a value or a
//! typed error.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run ops` (cargo-fuzz needs nightly features; the bootstrap
//! flag enables them on the stable toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use tapegrad::{BackwardOptions, BitMask, Shape, Tape, Tensor, Var};

/// Reads the input front to back; past the end it yields zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn value(&mut self) -> f32 {
        match self.byte() % 8 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::from_bits(u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])),
            _ => (self.byte() as f32 - 128.0) / 16.0,
        }
    }
    /// Mostly small sizes, often sizes past the kernels' block and chunk edges (16, 64, 257, …),
    /// sometimes sizes no memory holds (2⁴⁰, usize::MAX).
    fn dim(&mut self) -> usize {
        match self.byte() % 16 {
            0..=9 => (self.byte() % 6) as usize,
            10..=13 => [7, 15, 16, 17, 31, 63, 64, 65, 127, 129, 257, 300][self.byte() as usize % 12],
            14 => 1 + self.byte() as usize * 4,
            _ => [1 << 40, 1 << 62, usize::MAX / 2, usize::MAX][self.byte() as usize % 4],
        }
    }
    fn dims(&mut self) -> Vec<usize> {
        let rank = self.byte() % 6;
        (0..rank).map(|_| self.dim()).collect()
    }
    /// A tensor with values from the input when it is small, or, for a shape no memory holds, an
    /// attempt through the fallible constructor (which must refuse with an error). Shapes in
    /// between (allocatable, but slow to fuzz and able to exhaust the fuzzer's memory limit through
    /// broadcasting) are skipped.
    fn tensor(&mut self) -> Option<Tensor<f32>> {
        let dims = self.dims();
        match size_class(&dims) {
            Size::Small(n) => {
                let data = (0..n).map(|_| self.value()).collect();
                Some(Tensor::from_vec(data, &dims).expect("the length matches the dims"))
            }
            Size::Impossible => {
                assert!(Tensor::<f32>::full(&dims, 1.0).is_err(), "{dims:?} was allocated");
                None
            }
            Size::Between => None,
        }
    }
}

enum Size {
    Small(usize),
    Between,
    Impossible,
}

/// Small: at most 2¹² elements (two of them broadcast to at most 2²⁴). Impossible: at least 2⁴⁰
/// elements (4 TiB of f32), or an element count that overflows.
fn size_class(dims: &[usize]) -> Size {
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        _ if dims.contains(&0) => Size::Small(0),
        Some(n) if n <= 1 << 12 => Size::Small(n),
        Some(n) if n < 1 << 40 => Size::Between,
        _ => Size::Impossible,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let tape = Tape::<f32>::new();
    if input.byte() % 4 == 0 {
        tape.detect_anomalies(true);
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(u64::from(input.byte()));
    let first = input.tensor().unwrap_or_else(|| Tensor::scalar(1.0));
    let second = input.tensor().unwrap_or_else(|| Tensor::scalar(2.0));
    let mut vars: Vec<Var<'_, f32>> = vec![tape.leaf(first), tape.constant(second)];
    for _ in 0..(input.byte() % 12) {
        let a = vars[input.byte() as usize % vars.len()];
        let b = vars[input.byte() as usize % vars.len()];
        let p = [0.0, 0.5, 1.0, -0.5, 1.5, f64::NAN, 0.25][input.byte() as usize % 7];
        let labels: Vec<i64> = (0..input.byte() % 6).map(|_| i64::from(input.byte() as i8)).collect();
        let axis = isize::from(input.byte() as i8 % 6);
        let target_dims = input.dims();
        let Ok(target) = Shape::new(&target_dims) else {
            continue;
        };
        if matches!(size_class(&target_dims), Size::Between) {
            continue;
        }
        let result = match input.byte() % 26 {
            0 => a.add(b),
            1 => a.sub(b),
            2 => a.mul(b),
            3 => a.div(b),
            4 => a.matmul(b),
            5 => a.matmul_t(b),
            6 => a.relu(),
            7 => a.dropout(p, &mut rng),
            8 => BitMask::ones(input.byte() as usize).and_then(|m| a.dropout_with_mask(&m, p)),
            9 => a.log_softmax(),
            10 => a.softmax(),
            11 => a.nll(&labels),
            12 => a.cross_entropy(&labels),
            13 => a.exp(),
            14 => a.log(),
            15 => a.tanh(),
            16 => a.sigmoid(),
            17 => a.sum(),
            18 => a.mean(),
            19 => a.sum_axis(axis, axis > 0),
            20 => a.mean_axis(axis, axis < 0),
            21 => a.transpose(axis, axis / 2),
            22 => a.reshape(target.dims()),
            23 => a.sum_to(&target),
            24 => a.broadcast_to(&target),
            _ => a.neg().and_then(|n| n.add_scalar(1.0)).and_then(|n| n.mul_scalar(-2.0)),
        };
        if let Ok(v) = result {
            vars.push(v);
        }
    }
    let last = *vars.last().expect("two leaves at least");
    let _ = last.dropout_mask();
    let _ = tape.to_string();
    let _ = tape.to_dot();
    if input.byte() % 2 == 0 {
        let _ = last.sum().and_then(|s| s.backward());
    } else if let Ok(seed) = Tensor::ones(last.shape().dims()) {
        let options = BackwardOptions::new().seed(seed).trace(true).retain_graph(true);
        let _ = last.backward_with(options);
        let _ = last.backward_graph(None).map(|g| g.wrt(vars[0]).map(|d| d.sum().map(|s| s.backward())));
    }
});
