//! Dropout: during training, zero each element with probability p and scale the survivors by
//! 1/(1 − p), so that the expected value of every element is unchanged: E[y] = (1 − p)·x/(1 − p) = x.
//!
//! Forward: draw a mask m of independent Bernoulli(1 − p) bits, then y = x ⊙ (m · s) with
//! s = 1/(1 − p). The op is linear in x with a fixed (random) diagonal, so
//!
//! ∂L/∂x = m ⊙ g · s
//!
//! — the backward pass must reuse the **same** mask the forward pass drew; drawing a new one would
//! send gradient through units that produced nothing. The mask is the saved state, packed 1 bit per
//! element, with the scale.
//!
//! Edge cases follow PyTorch's `F.dropout`, which computes `input * (mask / (1 − p))`:
//! - the scale is computed in the tensor's own type, `1 / (1 − p)` with `1 − p` rounded to it (for
//!   f32 this can differ by an ulp from rounding the f64 quotient);
//! - a dropped element is *multiplied* by 0, so a dropped NaN or ±∞ gives NaN (0 · ∞) rather than
//!   vanishing, and anomaly mode still sees it; a dropped −3 gives −0;
//! - p = 0 is the identity (no random numbers are drawn, no node recorded); p = 1 multiplies every
//!   element by 0 (zeros for finite inputs) and gives a zero gradient;
//! - p outside [0, 1] or NaN is an error.
//!
//! Eval mode is the identity: a model in eval mode does not call dropout at all, and so draws no
//! random numbers.

use std::sync::Arc;

use rand::Rng;
use smallvec::smallvec;

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::bitmask::BitMask;
use crate::element::Float;
use crate::error::{Error, Result};
use crate::tape::Var;
use crate::tensor::Tensor;

/// The factor survivors are scaled by, in f64: 1/(1 − p), and 0 for p = 1 (PyTorch's
/// `p == 1 ? 0 : 1/(1-p)`), so that p = 1 gives zeros instead of 0·∞ = NaN. Tensors of type `T`
/// use [`dropout_scale_in`], which rounds like PyTorch does for that type.
///
/// ```
/// assert_eq!(tapegrad::dropout_scale(0.5), 2.0);
/// assert_eq!(tapegrad::dropout_scale(1.0), 0.0);
/// ```
pub fn dropout_scale(p: f64) -> f64 {
    dropout_scale_in::<f64>(p)
}

/// The survivors' factor in the tensor's own type, as PyTorch's `F.dropout` computes it:
/// `1 / (1 − p)` with `1 − p` computed in f64 and rounded to `T`, the division done in `T`;
/// 0 for p = 1.
///
/// ```
/// use tapegrad::dropout_scale_in;
/// assert_eq!(dropout_scale_in::<f32>(0.5), 2.0);
/// // 1/(1 − 0.1) rounded once from f64 is 1.1111112; PyTorch's f32 division gives 1.1111111.
/// assert_eq!(dropout_scale_in::<f32>(0.1), 1.0f32 / 0.9f32);
/// ```
pub fn dropout_scale_in<T: Float>(p: f64) -> T {
    if p == 1.0 {
        T::ZERO
    } else {
        T::ONE / T::from_f64(1.0 - p)
    }
}

pub(crate) fn check_probability(op: &'static str, p: f64) -> Result<()> {
    // `contains` is false for NaN, so NaN is rejected here too.
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidProbability { op, p })
    }
}

impl BitMask {
    /// The keep-mask dropout with probability `p` draws for `len` elements: each bit is set with
    /// probability 1 − p. Takes the same random numbers [`Var::dropout`] takes from the same
    /// generator, so a hand-written dropout gets the identical mask. p = 0 and p = 1 draw nothing.
    ///
    /// PyTorch equivalent: `torch.empty(len).bernoulli_(1 - p)` (as booleans).
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapegrad::BitMask;
    /// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
    /// let mask = BitMask::dropout(100_000, 0.5, &mut rng)?;
    /// let kept = mask.count_ones() as f64 / 1e5;
    /// assert!((kept - 0.5).abs() < 0.01);
    /// assert!(BitMask::dropout(10, 1.5, &mut rng).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn dropout<R: Rng + ?Sized>(len: usize, p: f64, rng: &mut R) -> Result<BitMask> {
        check_probability("dropout", p)?;
        if p == 0.0 {
            BitMask::ones(len)
        } else if p == 1.0 {
            BitMask::zeros(len)
        } else {
            BitMask::bernoulli(len, 1.0 - p, rng)
        }
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// Training-mode dropout: zeroes each element with probability `p`, scales the rest by
    /// 1/(1 − p), and saves the mask for backward. ∂/∂x = m ⊙ g / (1 − p).
    ///
    /// PyTorch equivalent: `F.dropout(x, p, training=True)`.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapegrad::{Tape, Tensor};
    /// let mut rng = rand_pcg::Pcg64::seed_from_u64(42);
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::<f32>::ones(&[4, 8])?);
    /// let y = x.dropout(0.5, &mut rng)?;
    /// let (mask, scale) = y.dropout_mask()?;
    /// assert_eq!(scale, 2.0);
    /// for (i, &v) in y.value().data().iter().enumerate() {
    ///     assert_eq!(v, if mask.get(i) { 2.0 } else { 0.0 }); // only 0 or x/(1−p)
    /// }
    /// let g = y.sum()?.backward()?;
    /// assert_eq!(g.wrt(x)?.data(), y.value().data()); // the same mask, the same scale
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn dropout<R: Rng + ?Sized>(self, p: f64, rng: &mut R) -> Result<Var<'t, T>> {
        check_probability("dropout", p)?;
        if p == 0.0 {
            return Ok(self);
        }
        let x = self.value();
        let scale = dropout_scale_in::<T>(p);
        if p == 1.0 {
            // Every element times 0 (NaN stays NaN, as in PyTorch); nothing random is drawn.
            return self.apply_mask("dropout", Arc::new(BitMask::zeros(x.numel())?), scale);
        }
        // Draw and apply in one pass; the same mask `BitMask::dropout` draws.
        let (mask, data) = BitMask::bernoulli_apply(x.data(), 1.0 - p, scale, rng)?;
        let out = Tensor::from_shape_vec(data, x.shape().clone())?;
        Ok(self.record_mask(MaskUse::Dropout, out, Arc::new(mask), scale))
    }

    /// Dropout with a mask the caller chose (bit set = keep), scaling survivors by 1/(1 − p).
    /// Useful to replay a mask, to test, and to gradcheck with the mask held fixed.
    /// ∂/∂x = m ⊙ g / (1 − p).
    ///
    /// PyTorch equivalent: `x * mask / (1 - p)` (0 for p = 1).
    pub fn dropout_with_mask(self, mask: &BitMask, p: f64) -> Result<Var<'t, T>> {
        check_probability("dropout_with_mask", p)?;
        self.apply_mask(
            "dropout_with_mask",
            Arc::new(mask.try_clone()?),
            dropout_scale_in::<T>(p),
        )
    }

    /// `y = x ⊙ (m · scale)` (dropout's semantics), with (mask, scale) saved for backward.
    pub(crate) fn apply_mask(
        self,
        op: &'static str,
        mask: Arc<BitMask>,
        scale: T,
    ) -> Result<Var<'t, T>> {
        let x = self.value();
        if mask.len() != x.numel() {
            return Err(Error::MaskLength {
                op,
                mask_len: mask.len(),
                shape: x.shape().clone(),
            });
        }
        let mut out = Tensor::overwritable(op, x.shape().clone())?;
        mask.apply(x.data(), scale, out.data_mut())?;
        Ok(self.record_mask(MaskUse::Dropout, out, mask, scale))
    }

    /// Records `out` as a masked op with (mask, scale) saved for backward.
    pub(crate) fn record_mask(
        self,
        kind: MaskUse,
        out: Tensor<T>,
        mask: Arc<BitMask>,
        scale: T,
    ) -> Var<'t, T> {
        self.tape
            .record(kind.name(), out, &[self], || MaskBackward {
                mask,
                scale,
                kind,
            })
    }

    /// The mask and scale a dropout (or ReLU) node saved, for teaching, tests and gradcheck.
    ///
    /// Available while the node keeps its backward state: only when its input requires a gradient,
    /// and until a backward pass without `retain_graph` releases it.
    pub fn dropout_mask(self) -> Result<(BitMask, f64)> {
        let nodes = self.tape.nodes.borrow();
        let node = &nodes[self.id.index()];
        node.op
            .as_ref()
            .and_then(|op| op.saved_mask())
            .map(|(mask, scale)| (mask.clone(), scale))
            .ok_or_else(|| Error::NotSaved {
                op: "dropout_mask",
                node: self.id.index(),
                found: node.name,
                what: "mask",
            })
    }
}

/// The two ops that save a bit mask, and how each treats the elements whose bit is clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaskUse {
    /// Dropout: y = x ⊙ (m · s); a clear bit multiplies by 0 (NaN stays NaN).
    Dropout,
    /// ReLU: y = g where x > 0, exactly 0 elsewhere (PyTorch's `threshold_backward`).
    Relu,
}

impl MaskUse {
    fn name(self) -> &'static str {
        match self {
            MaskUse::Dropout => "dropout",
            MaskUse::Relu => "relu",
        }
    }

    /// What a set bit means, for inspection.
    fn set_means(self) -> &'static str {
        match self {
            MaskUse::Dropout => "kept",
            MaskUse::Relu => "x > 0",
        }
    }
}

/// y = x ⊙ m · scale, shared by dropout (scale 1/(1 − p)) and ReLU (scale 1, m = [x > 0]).
/// Saves the mask (1 bit per element, shared, never copied) and the scale.
#[derive(Debug)]
pub(crate) struct MaskBackward<T> {
    pub(crate) mask: Arc<BitMask>,
    pub(crate) scale: T,
    pub(crate) kind: MaskUse,
}

impl<T: Float> MaskBackward<T> {
    /// The mask applied to g, the way this op's backward applies it.
    fn apply(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        let mut out = Tensor::overwritable(self.kind.name(), g.shape().clone())?;
        match self.kind {
            MaskUse::Dropout => self.mask.apply(g.data(), self.scale, out.data_mut())?,
            MaskUse::Relu => self.mask.select(g.data(), self.scale, out.data_mut())?,
        }
        Ok(out)
    }
}

impl<T: Float> Backward<T> for MaskBackward<T> {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(self.apply(g)?)])
    }

    /// The mask applied to g in place: no second tensor of g's size.
    fn backward_owned(&self, _cx: &BackwardCx<'_, T>, mut g: Tensor<T>) -> Result<InputGrads<T>> {
        let exact_zero = self.kind == MaskUse::Relu;
        self.mask
            .apply_in_place(g.data_mut(), self.scale, exact_zero)?;
        Ok(smallvec![Some(g)])
    }

    /// The same mask applied to g: linear in g, constant in x (so ReLU's second derivative is 0).
    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let out = self.apply(&g.value())?;
        Ok(smallvec![Some(g.record_mask(
            self.kind,
            out,
            Arc::clone(&self.mask),
            self.scale
        ))])
    }

    fn saved_bytes(&self) -> usize {
        self.mask.bytes() + std::mem::size_of::<T>()
    }

    fn describe_saved(&self) -> String {
        format!(
            "mask {} bits ({} {}), scale {}",
            self.mask.len(),
            self.mask.count_ones(),
            self.kind.set_means(),
            self.scale
        )
    }

    fn saved_mask(&self) -> Option<(&BitMask, f64)> {
        Some((&self.mask, self.scale.to_f64()))
    }
}
