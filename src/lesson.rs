//! The lesson's model, by hand and on the tape.
//!
//! A 2-layer MLP, Linear → ReLU → Dropout(p) → Linear, trained with softmax cross-entropy and plain
//! SGD. [`manual_step`] computes every gradient with formulas derived on paper; [`tape_step`]
//! records the same forward pass on a [`Tape`] and lets backward find them. Given the same weights
//! and a generator in the same state, both draw the same dropout mask, so their gradients agree to
//! rounding. The demo `examples/seed_dropout.rs` and the test `tests/manual_vs_tape.rs` run them side
//! by side.
//!
//! Shapes: X `[N, d]`, W1 `[d, H]`, b1 `[H]`, W2 `[H, K]`, b2 `[K]`, labels t ∈ {0, …, K − 1}ᴺ.
//! The symbols are those of the guide's notation table (`docs/README.md`): Z1 = X·W1 + b1,
//! H1 = relu(Z1), D1 = m ⊙ H1 · s, S = D1·W2 + b2, P = softmax(S), and dV (G_V in the guide) is ∂L/∂V.
//!
//! "Agree to rounding" is measured in three ways, explained in `docs/autograd.md` ("Three agreement
//! claims"): this module's two steps are identical bit for bit (they share every kernel), plain loops
//! differ from the tape by about 1e-16 in f64, and the tests' tolerance is 1e-12.
//!
//! ```
//! use rand::SeedableRng;
//! use rand_pcg::Pcg64;
//! use tapegrad::lesson::{LessonConfig, manual_step, tape_step};
//!
//! let config = LessonConfig { n: 16, ..LessonConfig::default() };
//! let (data, weights) = config.generate::<f64>()?;
//! let manual = manual_step(&data, &weights, 0.5, &mut Pcg64::seed_from_u64(7))?;
//! let taped = tape_step(&data, &weights, 0.5, &mut Pcg64::seed_from_u64(7))?;
//! assert!(manual.grads.max_abs_diff(&taped.grads)? < 1e-12);
//! # Ok::<(), tapegrad::Error>(())
//! ```

use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64;

use crate::bitmask::BitMask;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::dropout_scale_in;
use crate::ops::exp_of;
use crate::ops::log_softmax_rows;
use crate::ops::nll_mean;
use crate::tape::Tape;
use crate::tensor::Tensor;

/// The lesson's setting.
#[derive(Clone, Debug)]
pub struct LessonConfig {
    /// Batch size N.
    pub n: usize,
    /// Input features d.
    pub d: usize,
    /// Hidden units H.
    pub h: usize,
    /// Classes K.
    pub k: usize,
    /// Scale of the initial weights (drawn N(0, 1) and multiplied by this).
    pub weight_scale: f64,
    /// Seed of the data and weights.
    pub seed: u64,
}

impl Default for LessonConfig {
    /// N = 128, d = 20, H = 64, K = 5, weights scaled by 0.02, seed 0.
    fn default() -> Self {
        LessonConfig {
            n: 128,
            d: 20,
            h: 64,
            k: 5,
            weight_scale: 0.02,
            seed: 0,
        }
    }
}

/// Inputs and labels.
#[derive(Clone, Debug)]
pub struct LessonData<T: Float> {
    /// Inputs X, [N, d], drawn N(0, 1).
    pub x: Tensor<T>,
    /// Labels t, drawn uniformly from 0..K.
    pub labels: Vec<usize>,
}

/// The four parameters (or their gradients, which have the same shapes).
#[derive(Clone, Debug, PartialEq)]
pub struct MlpWeights<T: Float> {
    /// First layer weight, [d, H].
    pub w1: Tensor<T>,
    /// First layer bias, `[H]`.
    pub b1: Tensor<T>,
    /// Second layer weight, [H, K].
    pub w2: Tensor<T>,
    /// Second layer bias, `[K]`.
    pub b2: Tensor<T>,
}

impl<T: Float> MlpWeights<T> {
    /// The four tensors in order w1, b1, w2, b2.
    pub fn tensors(&self) -> [&Tensor<T>; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// Largest absolute difference between corresponding entries.
    pub fn max_abs_diff(&self, other: &Self) -> Result<T> {
        let mut worst = T::ZERO;
        for (a, b) in self.tensors().into_iter().zip(other.tensors()) {
            let d = a.max_abs_diff(b)?;
            if d > worst || d.is_nan() {
                worst = d;
            }
        }
        Ok(worst)
    }

    /// Plain SGD: θ ← θ − lr·∇θ for each of the four tensors.
    pub fn sgd_step(&mut self, grads: &Self, lr: T) {
        let pairs = [
            (&mut self.w1, &grads.w1),
            (&mut self.b1, &grads.b1),
            (&mut self.w2, &grads.w2),
            (&mut self.b2, &grads.b2),
        ];
        for (param, grad) in pairs {
            for (p, &g) in param.data_mut().iter_mut().zip(grad.data()) {
                *p -= lr * g;
            }
        }
    }
}

impl LessonConfig {
    /// Draws the data and initial weights from `seed`: X ~ N(0, 1), labels uniform, W1 and W2
    /// ~ N(0, 1)·weight_scale, zero biases.
    ///
    /// Fails with [`Error::InvalidHyperparameter`] for a size of 0 or a weight scale that is
    /// negative or not finite.
    pub fn generate<T: Float>(&self) -> Result<(LessonData<T>, MlpWeights<T>)> {
        for (name, value) in [("n", self.n), ("d", self.d), ("h", self.h), ("k", self.k)] {
            if value == 0 {
                return Err(Error::InvalidHyperparameter {
                    op: "LessonConfig",
                    name,
                    value: 0.0,
                    reason: "must be at least 1",
                });
            }
        }
        if !(self.weight_scale.is_finite() && self.weight_scale >= 0.0) {
            return Err(Error::InvalidHyperparameter {
                op: "LessonConfig",
                name: "weight_scale",
                value: self.weight_scale,
                reason: "must be finite and >= 0",
            });
        }
        let mut rng = Pcg64::seed_from_u64(self.seed);
        let x = Tensor::normal(&[self.n, self.d], T::ZERO, T::ONE, &mut rng)?;
        let labels = (0..self.n).map(|_| rng.random_range(0..self.k)).collect();
        let scale = T::from_f64(self.weight_scale);
        let w1 = Tensor::normal(&[self.d, self.h], T::ZERO, scale, &mut rng)?;
        let w2 = Tensor::normal(&[self.h, self.k], T::ZERO, scale, &mut rng)?;
        let weights = MlpWeights {
            w1,
            b1: Tensor::zeros(&[self.h])?,
            w2,
            b2: Tensor::zeros(&[self.k])?,
        };
        Ok((LessonData { x, labels }, weights))
    }
}

/// What one training step reports.
#[derive(Clone, Debug)]
pub struct StepResult<T: Float> {
    /// Mean cross-entropy of the batch.
    pub loss: T,
    /// Fraction of rows whose largest logit is the label, **with dropout active** (the mask of this
    /// step): lower than [`eval_accuracy`] on the same weights, see `docs/dropout.md`.
    pub accuracy: f64,
    /// ∂loss/∂ each parameter.
    pub grads: MlpWeights<T>,
}

/// Fraction of rows of `logits` whose arg-max (the first, on ties) is the label; 0 for no rows.
///
/// Kept for the lesson, which always passes consistent data; new code uses
/// [`crate::metrics::accuracy`], which reports a wrong label count or an out-of-range label as an
/// error instead.
pub fn accuracy<T: Float>(logits: &Tensor<T>, labels: &[usize]) -> f64 {
    crate::metrics::accuracy(logits, labels).unwrap_or(0.0)
}

/// One step with every gradient derived by hand.
///
/// Forward, with s = 1/(1 − p) and m the dropout mask (drawn with [`BitMask::dropout`], which
/// takes the same random numbers as `Var::dropout`):
/// Z1 = X·W1 + b1, H1 = relu(Z1), D1 = m ⊙ H1 · s, S = D1·W2 + b2,
/// P = softmax(S), L = −(1/N) Σᵢ log P`[i, tᵢ]`.
///
/// Backward, with Y the one-hot labels of t and dV = ∂L/∂V:
/// dS = (P − Y)/N, dW2 = D1ᵀ·dS, db2 = Σ_rows dS, dD1 = dS·W2ᵀ, dH1 = m ⊙ dD1 · s,
/// dZ1 = dH1 ⊙ `[Z1 > 0]`, dW1 = Xᵀ·dZ1, db1 = Σ_rows dZ1.
/// `docs/worked-example.md` evaluates every line on a 2-4-3 network.
///
/// PyTorch equivalent: the lesson's manual NumPy step; with autograd, `loss.backward()` on
/// `F.cross_entropy(F.dropout(F.relu(x @ w1 + b1), p) @ w2 + b2, t)`.
pub fn manual_step<T: Float, R: Rng + ?Sized>(
    data: &LessonData<T>,
    weights: &MlpWeights<T>,
    p: f64,
    rng: &mut R,
) -> Result<StepResult<T>> {
    let (n, k) = validate(data, weights)?;
    let inv_n = T::ONE / T::from_f64(n as f64);
    // The scale exactly as the tape's dropout computes it (in T, as PyTorch does).
    let scale = dropout_scale_in::<T>(p);

    // Forward.
    let z1 = data
        .x
        .matmul(&weights.w1)?
        .zip_map(&weights.b1, "add", |a, b| a + b)?;
    let h1 = z1.map(|v| if v < T::ZERO { T::ZERO } else { v })?;
    let mask = BitMask::dropout(h1.numel(), p, rng)?;
    let mut h1d = h1.try_clone()?;
    mask.apply(h1.data(), scale, h1d.data_mut())?;
    let s = h1d
        .matmul(&weights.w2)?
        .zip_map(&weights.b2, "add", |a, b| a + b)?;
    // log P row by row, and the mean NLL: the kernels the tape's ops use, so the sums agree.
    let mut log_p = Tensor::zeros(s.dims())?;
    log_softmax_rows(s.data(), k, log_p.data_mut())?;
    let loss = nll_mean(log_p.data(), k, &data.labels)?;

    // Backward: dS = (P − Y)/N, with P = e^(log P) from the kernel the tape's log_softmax uses.
    let p_rows = exp_of("manual_step", log_p.data())?;
    let mut ds = Tensor::from_vec(p_rows, s.dims())?;
    for v in ds.data_mut() {
        *v *= inv_n;
    }
    for (i, &y) in data.labels.iter().enumerate() {
        ds.data_mut()[i * k + y] -= inv_n;
    }
    let dw2 = h1d.t_matmul(&ds)?;
    let db2 = ds.sum_axis(0, false)?;
    let dh1d = ds.matmul_t(&weights.w2)?;
    // Dropout's backward: the same mask, the same scale. Then ReLU's: pass where Z1 > 0
    // (and where Z1 is NaN, as PyTorch's threshold_backward does).
    let mut dz1 = dh1d.try_clone()?;
    mask.apply(dh1d.data(), scale, dz1.data_mut())?;
    for (g, &z) in dz1.data_mut().iter_mut().zip(z1.data()) {
        *g = g.keep_or_zero(z > T::ZERO || z.is_nan());
    }
    let dw1 = data.x.t_matmul(&dz1)?;
    let db1 = dz1.sum_axis(0, false)?;

    Ok(StepResult {
        loss,
        accuracy: accuracy(&s, &data.labels),
        grads: MlpWeights {
            w1: dw1,
            b1: db1,
            w2: dw2,
            b2: db2,
        },
    })
}

/// Checks that data and weights fit together: X `[N, d]`, W1 `[d, H]`, b1 `[H]`, W2 `[H, K]`,
/// b2 `[K]`, N labels in `0..K`, N ≥ 1. Returns (N, K).
fn validate<T: Float>(data: &LessonData<T>, weights: &MlpWeights<T>) -> Result<(usize, usize)> {
    let op = "lesson";
    let mismatch = |lhs: &Tensor<T>, rhs: &Tensor<T>| Error::ShapeMismatch {
        op,
        lhs: lhs.shape().clone(),
        rhs: rhs.shape().clone(),
    };
    let (&[n, d], &[d1, h], &[h2, k]) = (data.x.dims(), weights.w1.dims(), weights.w2.dims())
    else {
        return Err(Error::BadRank {
            op,
            expected: "X [N, d], W1 [d, H] and W2 [H, K] as matrices",
            shape: data.x.shape().clone(),
        });
    };
    if d != d1 {
        return Err(mismatch(&data.x, &weights.w1));
    }
    if h != h2 || weights.b1.dims() != [h] {
        return Err(mismatch(&weights.w1, &weights.b1));
    }
    if weights.b2.dims() != [k] {
        return Err(mismatch(&weights.w2, &weights.b2));
    }
    if data.labels.len() != n {
        return Err(Error::LabelCount {
            op,
            labels: data.labels.len(),
            batch: n,
        });
    }
    if n == 0 {
        return Err(Error::EmptyBatch {
            op,
            shape: data.x.shape().clone(),
        });
    }
    if let Some((position, &label)) = data.labels.iter().enumerate().find(|(_, l)| **l >= k) {
        return Err(Error::LabelOutOfRange {
            op,
            position,
            label: i64::try_from(label).unwrap_or(i64::MAX),
            classes: k,
        });
    }
    Ok((n, k))
}

/// The same step recorded on a tape; backward finds the gradients.
pub fn tape_step<T: Float, R: Rng + ?Sized>(
    data: &LessonData<T>,
    weights: &MlpWeights<T>,
    p: f64,
    rng: &mut R,
) -> Result<StepResult<T>> {
    validate(data, weights)?;
    let tape = Tape::new();
    let x = tape.constant(data.x.try_clone()?);
    let [w1, b1, w2, b2] = [
        tape.leaf(weights.w1.try_clone()?),
        tape.leaf(weights.b1.try_clone()?),
        tape.leaf(weights.w2.try_clone()?),
        tape.leaf(weights.b2.try_clone()?),
    ];
    let hidden = x.matmul(w1)?.add(b1)?.relu()?.dropout(p, rng)?;
    let logits = hidden.matmul(w2)?.add(b2)?;
    let loss = logits.cross_entropy(&data.labels)?;
    let mut grads = loss.backward()?;
    // Move the gradients out of the result rather than copying them.
    let mut take = |v| {
        grads.take(v).ok_or_else(|| crate::Error::NoGradient {
            node: v.id().index(),
        })
    };
    let grads = MlpWeights {
        w1: take(w1)?,
        b1: take(b1)?,
        w2: take(w2)?,
        b2: take(b2)?,
    };
    Ok(StepResult {
        loss: loss.value().item()?,
        accuracy: accuracy(&logits.value(), &data.labels),
        grads,
    })
}

/// Accuracy with dropout off (eval mode: the identity, no random numbers drawn).
pub fn eval_accuracy<T: Float>(data: &LessonData<T>, weights: &MlpWeights<T>) -> Result<f64> {
    validate(data, weights)?;
    let tape = Tape::no_grad();
    let [w1, b1, w2, b2] = [
        tape.constant(weights.w1.try_clone()?),
        tape.constant(weights.b1.try_clone()?),
        tape.constant(weights.w2.try_clone()?),
        tape.constant(weights.b2.try_clone()?),
    ];
    let logits = tape
        .constant(data.x.try_clone()?)
        .matmul(w1)?
        .add(b1)?
        .relu()?
        .matmul(w2)?
        .add(b2)?;
    Ok(accuracy(&logits.value(), &data.labels))
}

/// The lesson's own comparison, made with the general checker: [`manual_step`]'s hand-derived
/// gradients against the tape's gradients of the same loss and against finite differences, over
/// the seeds and steps of `options` (each seed draws its own dropout masks; both sides see the
/// same one). The names in the report are `w1`, `b1`, `w2`, `b2`.
///
/// ```
/// use tapegrad::gradcheck::ManualCheckOptions;
/// use tapegrad::lesson::{LessonConfig, check_manual_step};
///
/// let (data, weights) = LessonConfig { n: 16, ..LessonConfig::default() }.generate::<f64>()?;
/// let report = check_manual_step(&data, &weights, 0.5, &ManualCheckOptions::default())?;
/// assert!(report.passed(), "{report}");
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn check_manual_step(
    data: &LessonData<f64>,
    weights: &MlpWeights<f64>,
    p: f64,
    options: &crate::gradcheck::ManualCheckOptions,
) -> Result<crate::gradcheck::ManualReport> {
    validate(data, weights)?;
    let params: Vec<Tensor<f64>> = weights
        .tensors()
        .into_iter()
        .map(Tensor::try_clone)
        .collect::<Result<_>>()?;
    let unpack = |p: &[Tensor<f64>]| -> Result<MlpWeights<f64>> {
        Ok(MlpWeights {
            w1: p[0].try_clone()?,
            b1: p[1].try_clone()?,
            w2: p[2].try_clone()?,
            b2: p[3].try_clone()?,
        })
    };
    crate::gradcheck::check_manual_gradients(
        |params, rng| {
            let step = manual_step(data, &unpack(params)?, p, rng)?;
            let g = step.grads;
            Ok((step.loss, vec![g.w1, g.b1, g.w2, g.b2]))
        },
        |tape, v, rng| {
            let x = tape.constant(data.x.try_clone()?);
            let hidden = x.matmul(v[0])?.add(v[1])?.relu()?.dropout(p, rng)?;
            hidden.matmul(v[2])?.add(v[3])?.cross_entropy(&data.labels)
        },
        &["w1", "b1", "w2", "b2"],
        &params,
        options,
    )
}
