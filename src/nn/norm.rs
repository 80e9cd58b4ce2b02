//! Normalisation layers: `LayerNorm`, `BatchNorm1d`, `BatchNorm2d`.

use super::init::{filled, positive};
use super::module::{Context, Forward, Module, Visitor};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::RunningStats;
use crate::param::{Buffer, Param};
use crate::tape::Var;
use crate::tensor::Tensor;

/// Fails unless ε is finite and ≥ 0 (> 0 unless `zero_ok`). PyTorch's layers accept any float
/// and return NaN (or divide by zero on constant rows).
fn check_eps(op: &'static str, eps: f64, zero_ok: bool) -> Result<()> {
    if eps.is_finite() && (eps > 0.0 || (zero_ok && eps == 0.0)) {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            op,
            name: "eps",
            value: eps,
            reason: if zero_ok {
                "must be finite and >= 0"
            } else {
                "must be finite and > 0"
            },
        })
    }
}

/// Layer normalisation over the trailing axes `normalized_shape`: each row is normalised to mean
/// 0 and (biased) variance 1, then scaled by `weight` and shifted by `bias`.
///
/// Initialised like PyTorch: weight ones, bias zeros. Parameters (when present): `weight` and
/// `bias`, each of shape `normalized_shape`.
///
/// PyTorch equivalent: `nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True,
/// bias=True)`.
///
/// ```
/// use tapegrad::nn::{Context, Forward, LayerNorm};
/// use tapegrad::{Tape, Tensor};
/// let ln = LayerNorm::<f64>::new(&[3])?;
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3])?);
/// let y = ln.forward(&mut Context::eval(), x)?;
/// assert!((y.value().data()[0] + 1.5f64.sqrt()).abs() < 1e-4); // (1 − 2)/√(2/3 + ε)
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LayerNorm<T: Float> {
    /// The scale, of shape `normalized_shape` (absent without `elementwise_affine`).
    pub weight: Option<Param<T>>,
    /// The shift, of shape `normalized_shape` (absent without `elementwise_affine` or `bias`).
    pub bias: Option<Param<T>>,
    normalized_shape: Vec<usize>,
    eps: f64,
}

impl<T: Float> LayerNorm<T> {
    /// PyTorch's defaults: ε = 1e-5, with weight and bias.
    pub fn new(normalized_shape: &[usize]) -> Result<Self> {
        Self::with_options(normalized_shape, 1e-5, true, true)
    }

    /// Every setting, in PyTorch's order. `bias` matters only with `elementwise_affine`.
    /// Errors: an empty `normalized_shape` or a zero in it, ε negative or not finite.
    pub fn with_options(
        normalized_shape: &[usize],
        eps: f64,
        elementwise_affine: bool,
        bias: bool,
    ) -> Result<Self> {
        const OP: &str = "LayerNorm";
        if normalized_shape.is_empty() {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: "normalized_shape must have at least one axis".into(),
            });
        }
        for &d in normalized_shape {
            positive(OP, "normalized_shape", d)?;
        }
        check_eps(OP, eps, true)?;
        let weight = elementwise_affine
            .then(|| filled("weight", normalized_shape, 1.0))
            .transpose()?;
        let bias = (elementwise_affine && bias)
            .then(|| filled("bias", normalized_shape, 0.0))
            .transpose()?;
        Ok(LayerNorm {
            weight,
            bias,
            normalized_shape: normalized_shape.to_vec(),
            eps,
        })
    }

    /// The normalised trailing axes.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    /// ε.
    pub fn eps(&self) -> f64 {
        self.eps
    }
}

impl<T: Float> Module<T> for LayerNorm<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param_opt("weight", self.weight.as_ref());
        v.param_opt("bias", self.bias.as_ref());
    }
}

impl<T: Float> Forward<T> for LayerNorm<T> {
    /// x `[…, normalized_shape]` → the same shape.
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let w = self.weight.as_ref().map(|p| tape.param(p));
        let b = self.bias.as_ref().map(|p| tape.param(p));
        x.layer_norm(&self.normalized_shape, w, b, self.eps)
    }
}

/// What the two batch norms share; they differ in the input ranks they accept.
#[derive(Debug, Clone)]
struct BatchNorm<T: Float> {
    weight: Option<Param<T>>,
    bias: Option<Param<T>>,
    running_mean: Option<Buffer<T>>,
    running_var: Option<Buffer<T>>,
    num_batches_tracked: Option<Buffer<T>>,
    num_features: usize,
    eps: f64,
    momentum: Option<f64>,
}

impl<T: Float> BatchNorm<T> {
    fn new(
        op: &'static str,
        num_features: usize,
        eps: f64,
        momentum: Option<f64>,
        affine: bool,
        track_running_stats: bool,
    ) -> Result<Self> {
        positive(op, "num_features", num_features)?;
        check_eps(op, eps, false)?;
        if let Some(m) = momentum
            && !(0.0..=1.0).contains(&m)
        {
            return Err(Error::InvalidHyperparameter {
                op,
                name: "momentum",
                value: m,
                reason: "must lie in [0, 1] (or be None for a cumulative average)",
            });
        }
        let c = [num_features];
        let buffer = |name: &str, value: f64| -> Result<Buffer<T>> {
            Ok(Buffer::new(name, Tensor::full(&c, T::from_f64(value))?))
        };
        let (running_mean, running_var, num_batches_tracked) = if track_running_stats {
            (
                Some(buffer("running_mean", 0.0)?),
                Some(buffer("running_var", 1.0)?),
                Some(Buffer::new("num_batches_tracked", Tensor::scalar(T::ZERO))),
            )
        } else {
            (None, None, None)
        };
        Ok(BatchNorm {
            weight: affine.then(|| filled("weight", &c, 1.0)).transpose()?,
            bias: affine.then(|| filled("bias", &c, 0.0)).transpose()?,
            running_mean,
            running_var,
            num_batches_tracked,
            num_features,
            eps,
            momentum,
        })
    }

    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param_opt("weight", self.weight.as_ref());
        v.param_opt("bias", self.bias.as_ref());
        if let Some(b) = &self.running_mean {
            v.buffer("running_mean", b);
        }
        if let Some(b) = &self.running_var {
            v.buffer("running_var", b);
        }
        if let Some(b) = &self.num_batches_tracked {
            v.buffer("num_batches_tracked", b);
        }
    }

    /// PyTorch's `_BatchNorm.forward`: in training with running statistics, count the batch and
    /// update them with `momentum` (or 1/count for a cumulative average); normalise with the
    /// batch's statistics in training or without running statistics, with the running ones in
    /// eval.
    fn forward<'t>(&self, op: &'static str, cx: &Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let shape = x.shape();
        if shape.dims()[1] != self.num_features {
            return Err(Error::InvalidArgument {
                op,
                reason: format!(
                    "expected {} channels (axis 1), got input of shape {shape}",
                    self.num_features
                ),
            });
        }
        let tape = x.tape();
        let w = self.weight.as_ref().map(|p| tape.param(p));
        let b = self.bias.as_ref().map(|p| tape.param(p));
        let (Some(mean), Some(var), Some(count)) = (
            &self.running_mean,
            &self.running_var,
            &self.num_batches_tracked,
        ) else {
            // No running statistics: the batch's, in either mode (as PyTorch).
            return x.batch_norm(w, b, None, true, 0.0, self.eps);
        };
        if cx.is_training() {
            let batches = count.value().data().first().map_or(0.0, |c| c.to_f64()) + 1.0;
            let momentum = self.momentum.unwrap_or(1.0 / batches);
            let y = mean.update(|mean| {
                var.update(|var| {
                    x.batch_norm(
                        w,
                        b,
                        Some(RunningStats { mean, var }),
                        true,
                        momentum,
                        self.eps,
                    )
                })
            })?;
            // Counted only once the batch went through (a failed call changes nothing).
            count.update(|c| c.data_mut().iter_mut().for_each(|c| *c += T::ONE));
            Ok(y)
        } else {
            let mut mean = mean.value().try_clone()?;
            let mut var = var.value().try_clone()?;
            let running = RunningStats {
                mean: &mut mean,
                var: &mut var,
            };
            x.batch_norm(w, b, Some(running), false, 0.0, self.eps)
        }
    }
}

macro_rules! batch_norm_layer {
    (
        $(#[$doc:meta])*
        $name:ident, $op:literal, $ranks:expr, $expected:literal
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<T: Float> {
            inner: BatchNorm<T>,
        }

        impl<T: Float> $name<T> {
            /// PyTorch's defaults: ε = 1e-5, momentum 0.1, affine, tracking running statistics.
            pub fn new(num_features: usize) -> Result<Self> {
                Self::with_options(num_features, 1e-5, Some(0.1), true, true)
            }

            /// Every setting, in PyTorch's order. `momentum: None` makes the running statistics a
            /// cumulative average (factor 1/`num_batches_tracked`). Errors: zero `num_features`,
            /// ε not finite and > 0, momentum outside [0, 1].
            pub fn with_options(
                num_features: usize,
                eps: f64,
                momentum: Option<f64>,
                affine: bool,
                track_running_stats: bool,
            ) -> Result<Self> {
                Ok($name {
                    inner: BatchNorm::new(
                        $op,
                        num_features,
                        eps,
                        momentum,
                        affine,
                        track_running_stats,
                    )?,
                })
            }

            /// The scale, `[num_features]` (absent without `affine`).
            pub fn weight(&self) -> Option<&Param<T>> {
                self.inner.weight.as_ref()
            }

            /// The shift, `[num_features]` (absent without `affine`).
            pub fn bias(&self) -> Option<&Param<T>> {
                self.inner.bias.as_ref()
            }

            /// The running mean, `[num_features]` (absent without `track_running_stats`).
            pub fn running_mean(&self) -> Option<&Buffer<T>> {
                self.inner.running_mean.as_ref()
            }

            /// The running (unbiased) variance, `[num_features]`.
            pub fn running_var(&self) -> Option<&Buffer<T>> {
                self.inner.running_var.as_ref()
            }

            /// The number of training batches seen, a scalar (an `int64` in PyTorch, a float
            /// here: buffers share the model's element type; exact up to 2²⁴ batches in f32).
            pub fn num_batches_tracked(&self) -> Option<&Buffer<T>> {
                self.inner.num_batches_tracked.as_ref()
            }

            /// Number of channels.
            pub fn num_features(&self) -> usize {
                self.inner.num_features
            }

            /// The momentum (`None`: cumulative average).
            pub fn momentum(&self) -> Option<f64> {
                self.inner.momentum
            }

            /// ε.
            pub fn eps(&self) -> f64 {
                self.inner.eps
            }
        }

        impl<T: Float> Module<T> for $name<T> {
            fn visit(&self, v: &mut Visitor<'_, T>) {
                self.inner.visit(v)
            }
        }

        impl<T: Float> Forward<T> for $name<T> {
            fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
                let shape = x.shape();
                if !$ranks.contains(&shape.rank()) {
                    return Err(Error::BadRank {
                        op: $op,
                        expected: $expected,
                        shape,
                    });
                }
                self.inner.forward($op, cx, x)
            }
        }
    };
}

batch_norm_layer!(
    /// Batch normalisation of `[N, C]` or `[N, C, L]`: each channel normalised with the batch's
    /// mean and biased variance over N (and L) in training, with the running statistics in eval.
    /// Training updates `running ← (1 − momentum)·running + momentum·batch` (unbiased variance
    /// for `running_var`) and counts the batch in `num_batches_tracked`.
    ///
    /// Initialised like PyTorch: weight ones, bias zeros, running mean zeros, running variance
    /// ones, count 0. Parameters `weight`, `bias`; buffers `running_mean`, `running_var`,
    /// `num_batches_tracked`.
    ///
    /// PyTorch equivalent: `nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    /// track_running_stats=True)`.
    ///
    /// ```
    /// use tapegrad::nn::{BatchNorm1d, Context, Forward, Module};
    /// use tapegrad::{Tape, Tensor};
    /// let bn = BatchNorm1d::<f64>::new(2)?;
    /// let names: Vec<String> = bn.named_buffers().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["running_mean", "running_var", "num_batches_tracked"]);
    /// let tape = Tape::new();
    /// let x = tape.constant(Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?);
    /// bn.forward(&mut Context::train_deterministic(), x)?;
    /// let mean = bn.running_mean().expect("tracked").value();
    /// assert_eq!(mean.data(), &[0.2, 2.0]); // 0.9·0 + 0.1·[2, 20]
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    BatchNorm1d, "BatchNorm1d", [2usize, 3], "an input of shape [N, C] or [N, C, L]"
);

batch_norm_layer!(
    /// Batch normalisation of `[N, C, H, W]`: each channel normalised with the batch's mean and
    /// biased variance over N, H and W in training, with the running statistics in eval; the
    /// same updates, buffers and initialisation as [`BatchNorm1d`].
    ///
    /// PyTorch equivalent: `nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
    /// track_running_stats=True)`.
    BatchNorm2d, "BatchNorm2d", [4usize], "an input of shape [N, C, H, W]"
);
