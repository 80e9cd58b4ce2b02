//! Negative log-likelihood, and cross-entropy = NLL ∘ log-softmax, with PyTorch's options.
//!
//! For log-probabilities Z of shape [N, C] (or [N, C, d₁, …], classes on axis 1) and labels t,
//! with PyTorch's default mean reduction:
//!
//! L = −(1/N) Σᵢ Z[i, tᵢ]
//!
//! Each element contributes through one entry only, so ∂L/∂Z[i, k] = −[k = tᵢ] / N, times the
//! incoming scalar g. The saved state is the positions picked. Chained after log-softmax, the two
//! backward rules compose to the familiar softmax cross-entropy gradient: with Y the one-hot
//! labels, dZ = −Y/N, and log-softmax's rule gives dX = dZ − softmax(X) ⊙ Σ_row dZ =
//! (softmax(X) − Y)/N, since each row of dZ sums to −1/N.
//!
//! **Options** (as `F.nll_loss` / `F.cross_entropy`): class weights w make each element count
//! w[tᵢ] times, and the mean divides by Σ w[tᵢ] rather than N; an element whose label equals
//! `ignore_index` (−100 by default) contributes nothing and is not counted; the reduction is the
//! weighted mean, the sum, or none (one loss per element). Label smoothing ε mixes in the loss
//! against the uniform distribution: (1 − ε)·NLL + (ε/C)·(−Σ_c w_c Z[i, c]), reduced the same way.

use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Index as Label;
use crate::kernels::pool;
use crate::kernels::sum::sum;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The (weighted) mean: PyTorch's default.
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: one loss per element, of the labels' shape.
    None,
}

/// Options of [`Var::nll_with`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug)]
pub struct NllOptions<'a, T: Float> {
    /// A weight per class, `[C]` (PyTorch `weight`); `None`: all 1.
    pub weight: Option<&'a Tensor<T>>,
    /// Elements with this label are skipped (PyTorch `ignore_index`, −100 by default).
    pub ignore_index: Option<i64>,
    /// How the per-element losses are combined.
    pub reduction: Reduction,
}

impl<T: Float> Default for NllOptions<'_, T> {
    fn default() -> Self {
        NllOptions {
            weight: None,
            ignore_index: Some(-100),
            reduction: Reduction::Mean,
        }
    }
}

/// Options of [`Var::cross_entropy_with`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyOptions<'a, T: Float> {
    /// A weight per class, `[C]`; `None`: all 1.
    pub weight: Option<&'a Tensor<T>>,
    /// Elements with this label are skipped (−100 by default).
    pub ignore_index: Option<i64>,
    /// How the per-element losses are combined.
    pub reduction: Reduction,
    /// Label smoothing ε in [0, 1] (PyTorch `label_smoothing`, 0 by default).
    pub label_smoothing: f64,
}

impl<T: Float> Default for CrossEntropyOptions<'_, T> {
    fn default() -> Self {
        CrossEntropyOptions {
            weight: None,
            ignore_index: Some(-100),
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
        }
    }
}

/// What the labels pick out of a `[N, C, d…]` input (or `[C]`, one element).
struct Picks<T> {
    /// Flat position in the input of each element's label, `None` where ignored.
    positions: Vec<Option<usize>>,
    /// Each element's weight w[tᵢ] (0 where ignored), if there are class weights.
    weights: Option<Vec<T>>,
    /// The shape of the per-element losses: the input without its class axis.
    element_shape: Shape,
    /// The class axis (0 for a 1-D input, 1 otherwise).
    class_axis: usize,
}

/// Checks the labels (and weights) against `x` and finds the positions they pick.
fn pick<T: Float, L: Label>(
    op: &'static str,
    x: &Tensor<T>,
    labels: &[L],
    weight: Option<&Tensor<T>>,
    ignore_index: Option<i64>,
    reduction: Reduction,
) -> Result<Picks<T>> {
    let dims = x.dims();
    let class_axis = match dims.len() {
        0 => {
            return Err(Error::BadRank {
                op,
                expected: "log-probabilities of shape [N, C] or [N, C, d…] (or [C])",
                shape: x.shape().clone(),
            });
        }
        1 => 0,
        _ => 1,
    };
    let (outer, classes, inner) = x.shape().around(class_axis);
    let mut element_dims = dims.to_vec();
    element_dims.remove(class_axis);
    let element_shape = Shape::new(&element_dims)?;
    let count = element_shape.numel();
    if labels.len() != count {
        return Err(Error::LabelCount {
            op,
            labels: labels.len(),
            batch: count,
        });
    }
    if count == 0 && reduction == Reduction::Mean {
        return Err(Error::EmptyBatch {
            op,
            shape: x.shape().clone(),
        });
    }
    if let Some(w) = weight
        && w.dims() != [classes]
    {
        return Err(Error::ShapeMismatch {
            op,
            lhs: x.shape().clone(),
            rhs: w.shape().clone(),
        });
    }
    let mut positions = Vec::new();
    positions
        .try_reserve_exact(count)
        .map_err(|_| Error::OutOfMemory {
            op,
            bytes: count as u128 * 16,
        })?;
    let mut weights = match weight {
        Some(_) => Some(pool::try_empty::<T>(op, count)?),
        None => None,
    };
    for (position, &label) in labels.iter().enumerate() {
        let label = label.as_i64();
        let picked = if Some(label) == ignore_index {
            None
        } else {
            let class = usize::try_from(label)
                .ok()
                .filter(|&c| c < classes)
                .ok_or_else(|| Error::LabelOutOfRange {
                    op,
                    position,
                    label,
                    classes,
                })?;
            let (o, i) = (position / inner.max(1), position % inner.max(1));
            Some((o * classes + class) * inner + i)
        };
        if let (Some(ws), Some(w)) = (weights.as_mut(), weight) {
            ws.push(match picked {
                Some(p) => w.data()[(p / inner.max(1)) % classes],
                None => T::ZERO,
            });
        }
        positions.push(picked);
    }
    debug_assert!(outer * inner == count || classes == 0);
    Ok(Picks {
        positions,
        weights,
        element_shape,
        class_axis,
    })
}

/// −(1/N) Σᵢ Z[i, tᵢ], the picked entries summed pairwise (the kernel of [`Tensor::sum_all`]).
/// The lesson's hand-written step calls this too, so both agree to the bit.
pub(crate) fn nll_mean<T: Float>(z: &[T], classes: usize, labels: &[usize]) -> Result<T> {
    let picked = pool::try_collect(
        "nll",
        labels.len(),
        labels.iter().enumerate().map(|(i, &t)| z[i * classes + t]),
    )?;
    Ok(-sum(&picked) / T::from_f64(labels.len() as f64))
}

impl<'t, T: Float> Var<'t, T> {
    /// Mean negative log-likelihood of `labels` under log-probabilities `self` ([N, C], or
    /// [N, C, d…] with the labels of [N, d…] flattened row-major). ∂/∂Z[i, k] = −g·[k = tᵢ]/N.
    ///
    /// Errors: no axes, a label count other than the element count, N = 0, a label negative
    /// (other than −100, which is ignored as in PyTorch) or ≥ C.
    ///
    /// PyTorch equivalent: `F.nll_loss(z, t)`.
    pub fn nll<L: Label>(self, labels: &[L]) -> Result<Var<'t, T>> {
        self.nll_with(labels, &NllOptions::default())
    }

    /// Negative log-likelihood with class weights, an ignored label and a reduction.
    /// `∂/∂Z[i, tᵢ] = −g·w[tᵢ]/Σw` (mean), `−g·w[tᵢ]` (sum), `−gᵢ·w[tᵢ]` (none); 0 elsewhere.
    ///
    /// PyTorch equivalent: `F.nll_loss(z, t, weight, ignore_index=…, reduction=…)`.
    pub fn nll_with<L: Label>(
        self,
        labels: &[L],
        options: &NllOptions<'_, T>,
    ) -> Result<Var<'t, T>> {
        let z = self.value();
        let picks = pick(
            "nll",
            &z,
            labels,
            options.weight,
            options.ignore_index,
            options.reduction,
        )?;
        let count = picks.positions.len();
        let picked = |i: usize| picks.positions[i].map_or(T::ZERO, |p| z.data()[p]);
        let weight_of = |i: usize| match &picks.weights {
            Some(w) => w[i],
            None if picks.positions[i].is_some() => T::ONE,
            None => T::ZERO,
        };
        let plain = picks.weights.is_none() && picks.positions.iter().all(Option::is_some);
        let (value, denominator) = match options.reduction {
            Reduction::Mean if plain => {
                // Exactly the arithmetic of the hand-written lesson (`nll_mean`): −Σ z / N.
                let total = sum(&pool::try_collect("nll", count, (0..count).map(picked))?);
                let n = T::from_f64(count as f64);
                (Tensor::scalar(-total / n), n)
            }
            Reduction::Mean | Reduction::Sum => {
                let weighted =
                    pool::try_collect("nll", count, (0..count).map(|i| picked(i) * weight_of(i)))?;
                let total = sum(&weighted);
                let denominator = if options.reduction == Reduction::Mean {
                    sum(&pool::try_collect("nll", count, (0..count).map(weight_of))?)
                } else {
                    T::ONE
                };
                (Tensor::scalar(-total / denominator), denominator)
            }
            Reduction::None => {
                let losses = pool::try_collect(
                    "nll",
                    count,
                    (0..count).map(|i| -(picked(i) * weight_of(i))),
                )?;
                (
                    Tensor::from_shape_vec(losses, picks.element_shape.clone())?,
                    T::ONE,
                )
            }
        };
        let coefficients = pool::try_collect("nll", count, (0..count).map(weight_of))?;
        Ok(self.tape.record("nll", value, &[self], || NllBackward {
            positions: picks.positions,
            coefficients,
            denominator,
            reduction: options.reduction,
            class_axis: picks.class_axis,
        }))
    }

    /// Softmax cross-entropy of logits `self` ([N, C], or [N, C, d…] with classes on axis 1) and
    /// class `labels`, recorded as `log_softmax` followed by `nll`.
    /// ∂/∂X = g·(softmax(X) − onehot(t))/N.
    ///
    /// PyTorch equivalent: `F.cross_entropy(x, t)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::<f64>::zeros(&[2, 4])?);
    /// let loss = x.cross_entropy(&[0, 3])?;
    /// assert!((loss.value().item()? - 4f64.ln()).abs() < 1e-12); // uniform over 4 classes
    /// let g = loss.backward()?;
    /// assert_eq!(g.wrt(x)?.data()[..4], [-0.375, 0.125, 0.125, 0.125]); // (1/4 − 1)/2, (1/4)/2
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn cross_entropy<L: Label>(self, labels: &[L]) -> Result<Var<'t, T>> {
        self.cross_entropy_with(labels, &CrossEntropyOptions::default())
    }

    /// Cross-entropy with class weights, an ignored label, a reduction and label smoothing.
    ///
    /// PyTorch equivalent: `F.cross_entropy(x, t, weight, ignore_index=…, reduction=…,
    /// label_smoothing=…)`.
    pub fn cross_entropy_with<L: Label>(
        self,
        labels: &[L],
        options: &CrossEntropyOptions<'_, T>,
    ) -> Result<Var<'t, T>> {
        let epsilon = options.label_smoothing;
        if !(0.0..=1.0).contains(&epsilon) {
            return Err(Error::InvalidHyperparameter {
                op: "cross_entropy",
                name: "label_smoothing",
                value: epsilon,
                reason: "must lie in [0, 1]",
            });
        }
        // Validate against the logits first, so the error names the loss the caller called.
        let picks = pick(
            "cross_entropy",
            &self.value(),
            labels,
            options.weight,
            options.ignore_index,
            options.reduction,
        )?;
        let nll_options = NllOptions {
            weight: options.weight,
            ignore_index: options.ignore_index,
            reduction: options.reduction,
        };
        let log_p = self.log_softmax_along(picks.class_axis as isize)?;
        let nll = log_p.nll_with(labels, &nll_options)?;
        if epsilon == 0.0 {
            return Ok(nll);
        }
        // The loss against the uniform distribution, −Σ_c w_c log p_c per element, as PyTorch's
        // cross_entropy_loss_label_smoothing computes it.
        let tape = self.tape;
        let classes = self.shape().dims()[picks.class_axis];
        let weighted = match options.weight {
            Some(w) => {
                let mut dims = vec![1; self.shape().rank()];
                dims[picks.class_axis] = classes;
                log_p.mul(tape.constant(w.reshape(&dims)?))?
            }
            None => log_p,
        };
        let keep = pool::try_collect(
            "cross_entropy",
            picks.positions.len(),
            picks
                .positions
                .iter()
                .map(|p| if p.is_some() { T::ONE } else { T::ZERO }),
        )?;
        let keep = tape.constant(Tensor::from_shape_vec(keep, picks.element_shape.clone())?);
        let smooth = weighted
            .sum_axis(picks.class_axis as isize, false)?
            .neg()?
            .mul(keep)?;
        let smooth = match options.reduction {
            Reduction::None => smooth,
            Reduction::Sum => smooth.sum()?,
            Reduction::Mean => {
                let denominator = match &picks.weights {
                    Some(w) => sum(w),
                    None => keep.value().sum_all(),
                };
                smooth.sum()?.div_scalar(denominator)?
            }
        };
        let scale = T::from_f64(epsilon) / T::from_f64(classes as f64);
        nll.mul_scalar(T::ONE - T::from_f64(epsilon))?
            .add(smooth.mul_scalar(scale)?)
    }
}

/// Saves the picked positions, each element's weight, the mean's denominator and the reduction.
#[derive(Debug)]
struct NllBackward<T> {
    positions: Vec<Option<usize>>,
    coefficients: Vec<T>,
    denominator: T,
    reduction: Reduction,
    class_axis: usize,
}

impl<T: Float> NllBackward<T> {
    /// ∂loss/∂Z for the incoming gradient `g` (a scalar, or one per element for no reduction).
    fn grad_for(&self, shape: &Shape, g: &Tensor<T>) -> Result<Tensor<T>> {
        let mut grad = Tensor::full_shape(shape.clone(), T::ZERO)?;
        for (i, (p, &w)) in self.positions.iter().zip(&self.coefficients).enumerate() {
            let Some(p) = *p else { continue };
            grad.data_mut()[p] = match self.reduction {
                Reduction::Mean => -(g.data()[0] * w) / self.denominator,
                Reduction::Sum => -(g.data()[0] * w),
                Reduction::None => -(g.data()[i] * w),
            };
        }
        Ok(grad)
    }
}

impl<T: Float> Backward<T> for NllBackward<T> {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(self.grad_for(cx.input(0).shape(), g)?)])
    }

    /// Linear in g, and Z does not appear: g (broadcast along the class axis) times the gradient
    /// for a unit g.
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let shape = cx.input(0).shape();
        let ones = Tensor::full_shape(g.shape(), T::ONE)?;
        let unit = cx.tape().constant(self.grad_for(&shape, &ones)?);
        let g = match self.reduction {
            Reduction::None if shape.rank() > 1 => g.unsqueeze(self.class_axis as isize)?,
            _ => g,
        };
        Ok(smallvec![Some(g.mul(unit)?)])
    }

    fn saved_bytes(&self) -> usize {
        self.positions.len() * (std::mem::size_of::<Option<usize>>() + std::mem::size_of::<T>())
    }

    fn describe_saved(&self) -> String {
        format!("{} picked positions", self.positions.len())
    }
}
