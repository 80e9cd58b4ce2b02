//! Vector norms along an axis (or of every element): ‖x‖₁, ‖x‖₂, ‖x‖_∞.
//!
//! | ord | y | ∂L/∂xᵢ |
//! |---|---|---|
//! | `L1` | Σ\|xᵢ\| | g · sign(xᵢ), with sign(0) = 0 |
//! | `L2` | √(Σ xᵢ²) | g · xᵢ / y, and 0 when y = 0 |
//! | `Inf` | max \|xᵢ\| | sign(xᵢ) · (g / c) · [\|xᵢ\| = y], c = #{i : \|xᵢ\| = y} |
//!
//! The conventions at the kinks are PyTorch's (`linalg_vector_norm_backward`): the L1 subgradient
//! at 0 is 0; the L2 gradient at the zero vector is 0 (the subgradient of smallest norm); the ∞-norm
//! splits its gradient evenly among the elements of largest magnitude, and a NaN counts as one of
//! them (sign(NaN) = 0, so it receives 0). The sums are the crate's pairwise sums. The L2 norm is
//! √(Σx²) without rescaling, as PyTorch computes it: it overflows to ∞ where Σx² does.
//!
//! The ∞-norm of no elements is undefined: an axis of size 0 (or an empty tensor with `None`) is an
//! error, as in PyTorch; the L1 and L2 norms of no elements are 0.
//!
//! Second derivatives: L1 and ∞ are linear in g with a routing fixed by x (second derivative 0);
//! the L2 rule is recorded from x and the recorded output y, so it differentiates as x / ‖x‖ does.

use smallvec::smallvec;

use super::reduce_axis::{Extreme, Plan, count_along, map_along, map_along2, select_along};
use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::Result;
use crate::kernels::pool;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::{Tensor, reduce_middle};

/// Which vector norm: the `ord` of `torch.linalg.vector_norm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormOrd {
    /// Σ|xᵢ| (`ord=1`).
    L1,
    /// √(Σxᵢ²), the Euclidean norm (`ord=2`).
    L2,
    /// max |xᵢ| (`ord=inf`).
    Inf,
}

impl NormOrd {
    fn name(self) -> &'static str {
        match self {
            NormOrd::L1 => "norm_l1",
            NormOrd::L2 => "norm_l2",
            NormOrd::Inf => "norm_inf",
        }
    }
}

/// sign(x) with sign(0) = sign(NaN) = 0, as PyTorch's `sgn` gives.
#[inline]
fn sign<T: Float>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    }
}

/// Whether x is one of the elements the ∞-norm y chose: |x| = y, or NaN (PyTorch's mask).
#[inline]
fn chosen<T: Float>(x: T, y: T) -> bool {
    x.abs() == y || x.is_nan()
}

impl<'t, T: Float> Var<'t, T> {
    /// The `ord` vector norm along `axis` (`None`: of every element). See the module docs for
    /// each gradient: g·sign(x) (L1), g·x/‖x‖ (L2, 0 at the zero vector), the gradient split evenly
    /// among the elements of largest magnitude (∞).
    ///
    /// PyTorch equivalent: `torch.linalg.vector_norm(x, ord, dim=axis, keepdim=keepdim)`.
    ///
    /// ```
    /// use tapegrad::{NormOrd, Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![3.0f64, -4.0], &[2])?);
    /// let y = x.norm(NormOrd::L2, None, false)?;
    /// assert_eq!(y.value().item()?, 5.0);
    /// let g = y.backward()?;
    /// let dx = g.wrt(x)?.data();                   // x / ‖x‖
    /// assert!((dx[0] - 0.6).abs() < 1e-15 && (dx[1] + 0.8).abs() < 1e-15);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn norm(self, ord: NormOrd, axis: Option<isize>, keepdim: bool) -> Result<Var<'t, T>> {
        let op = ord.name();
        let x = self.value();
        let plan = Plan::new(op, x.shape(), axis, keepdim)?;
        let mut value = Tensor::overwritable(op, plan.out.clone())?;
        match ord {
            NormOrd::L1 | NormOrd::L2 => {
                let terms = match ord {
                    NormOrd::L1 => x.map(|v| v.abs())?,
                    _ => x.map(|v| v * v)?,
                };
                reduce_middle(
                    terms.data(),
                    plan.outer,
                    plan.len,
                    plan.inner,
                    value.data_mut(),
                )?;
                if ord == NormOrd::L2 {
                    for v in value.data_mut() {
                        *v = v.sqrt();
                    }
                }
            }
            NormOrd::Inf => {
                plan.require_elements(op, x.shape(), axis)?;
                let mut positions = pool::try_dirty::<u64>(op, plan.out.numel())?;
                select_along(
                    x.data(),
                    &plan,
                    Extreme::Max,
                    |v| v.abs(),
                    value.data_mut(),
                    &mut positions,
                );
            }
        }
        Ok(self
            .tape
            .record(op, value, &[self], || NormBackward { ord, plan }))
    }
}

/// Saves the order and the plan; x and y are on the tape.
#[derive(Debug)]
struct NormBackward {
    ord: NormOrd,
    plan: Plan,
}

impl NormBackward {
    /// For the ∞-norm: per slice, g / c with c the number of chosen elements.
    fn shares<T: Float>(&self, x: &Tensor<T>, y: &Tensor<T>, g: &Tensor<T>) -> Result<Tensor<T>> {
        let mut counts = Tensor::overwritable(self.ord.name(), g.shape().clone())?;
        count_along(x.data(), y.data(), &self.plan, counts.data_mut(), chosen);
        g.zip_map(&counts, self.ord.name(), |g, c| g / c)
    }

    /// For L2: g / y per slice, 0 where y = 0.
    fn scales<T: Float>(&self, y: &Tensor<T>, g: &Tensor<T>) -> Result<Tensor<T>> {
        g.zip_map(y, self.ord.name(), |g, y| {
            if y == T::ZERO { T::ZERO } else { g / y }
        })
    }
}

impl<T: Float> Backward<T> for NormBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (x, y) = (cx.input(0), cx.output());
        let mut dx = Tensor::overwritable(self.ord.name(), x.shape().clone())?;
        match self.ord {
            NormOrd::L1 => map_along(x.data(), g.data(), &self.plan, dx.data_mut(), |x, g| {
                g * sign(x)
            }),
            NormOrd::L2 => {
                let scales = self.scales(y, g)?;
                map_along(
                    x.data(),
                    scales.data(),
                    &self.plan,
                    dx.data_mut(),
                    |x, s| x * s,
                );
            }
            NormOrd::Inf => {
                let shares = self.shares(x, y, g)?;
                map_along2(
                    x.data(),
                    shares.data(),
                    y.data(),
                    &self.plan,
                    dx.data_mut(),
                    |x, share, y| sign(x) * (share * if chosen(x, y) { T::ONE } else { T::ZERO }),
                );
            }
        }
        Ok(smallvec![Some(dx)])
    }

    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let name = self.ord.name();
        let tape = cx.tape();
        let x = cx.input(0);
        let (xv, yv) = (x.value(), cx.output().value());
        let dims = xv.shape().clone();
        let view = Shape::new(&self.plan.view3())?;
        let reduced = Shape::new(&self.plan.reduced3())?;
        let g3 = g.reshape(reduced.dims())?;
        let dx = match self.ord {
            NormOrd::L1 => {
                let signs = xv.map(sign)?.into_reshaped(view)?;
                g3.mul(tape.constant(signs))?
            }
            NormOrd::L2 => {
                // g / y with y replaced by 1 where it is 0, then zeroed there (as the plain rule),
                // differentiable through the recorded y elsewhere.
                let zero = yv.map(|y| if y == T::ZERO { T::ONE } else { T::ZERO })?;
                let nonzero = yv.map(|y| if y == T::ZERO { T::ZERO } else { T::ONE })?;
                let safe = cx
                    .output()
                    .reshape(reduced.dims())?
                    .add(tape.constant(zero.into_reshaped(reduced.clone())?))?;
                let scale = g3
                    .div(safe)?
                    .mul(tape.constant(nonzero.into_reshaped(reduced)?))?;
                x.reshape(view.dims())?.mul(scale)?
            }
            NormOrd::Inf => {
                let mut counts = Tensor::overwritable(name, reduced.clone())?;
                count_along(xv.data(), yv.data(), &self.plan, counts.data_mut(), chosen);
                let mut routing = Tensor::overwritable(name, view)?;
                map_along(
                    xv.data(),
                    yv.data(),
                    &self.plan,
                    routing.data_mut(),
                    |x, y| {
                        if chosen(x, y) { sign(x) } else { T::ZERO }
                    },
                );
                g3.div(tape.constant(counts))?.mul(tape.constant(routing))?
            }
        };
        Ok(smallvec![Some(dx.reshape(dims.dims())?)])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes() + std::mem::size_of::<NormOrd>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "{:?} over slices of {} (reads its input and output)",
            self.ord, self.plan.len
        )
    }
}
