//! `MultiheadAttention`, with PyTorch's packed input projection.

use rand::{Rng, SeedableRng};

use super::init::{fan_in_bound, positive, uniform, xavier_bound};
use super::layers::Linear;
use super::module::{Context, Forward, Module, Visitor};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::AttnMask;
use crate::ops::dropout::check_probability;
use crate::param::Param;
use crate::tape::Var;
use crate::tensor::Tensor;

const OP: &str = "MultiheadAttention";

/// Multi-head attention: the query, key and value are projected by the three blocks of one packed
/// weight, split into `num_heads` heads of `embed_dim / num_heads`, attended with scaled
/// dot-product attention (dropout on the probabilities in training), merged and projected by
/// `out_proj`.
///
/// Inputs are `[L, N, E]` (or `[N, L, E]` with `batch_first`), or unbatched `[L, E]`. As a
/// [`Forward`] it is self-attention (query = key = value = x), causal if built so
/// ([`with_causal`](Self::with_causal)); [`attend`](Self::attend) takes a separate key and value
/// and a mask.
///
/// Initialised like PyTorch: `in_proj_weight` ~ xavier_uniform (U(±√(6/(E + 3E)))), biases zero,
/// `out_proj.weight` ~ U(±1/√E). Parameters: `in_proj_weight` `[3E, E]`, `in_proj_bias` `[3E]`,
/// `out_proj.weight` `[E, E]`, `out_proj.bias` `[E]` (no biases with `bias = false`).
///
/// Not followed from PyTorch: the attention weights are not returned (PyTorch's
/// `need_weights=False`: the fused kernel never forms their head average); no `key_padding_mask`,
/// `add_bias_kv`, `add_zero_attn`, `kdim`/`vdim`; a mask broadcasts to `[N, heads, L, S]` (an
/// `[L, S]` mask works as in PyTorch, an `[N·heads, L, S]` one must be reshaped to
/// `[N, heads, L, S]`).
///
/// PyTorch equivalent: `nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True,
/// batch_first=False)`, called as `mha(x, x, x, need_weights=False, is_causal=…)`.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::{Context, Forward, Module, MultiheadAttention};
/// use tapegrad::{Tape, Tensor};
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let mha = MultiheadAttention::<f32>::with_options(16, 4, 0.1, true, true, &mut rng)?.with_causal(true);
/// let names: Vec<String> = mha.named_params().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]);
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::normal(&[2, 5, 16], 0.0, 1.0, &mut rng)?);
/// let y = mha.forward(&mut Context::train(&mut rng), x)?;
/// assert_eq!(y.value().dims(), &[2, 5, 16]);
/// assert!(MultiheadAttention::<f32>::new(16, 3, &mut rng).is_err()); // 16 is not divisible by 3
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MultiheadAttention<T: Float> {
    /// The query, key and value projections stacked, `[3E, E]`.
    pub in_proj_weight: Param<T>,
    /// Their biases stacked, `[3E]`, if the layer has biases.
    pub in_proj_bias: Option<Param<T>>,
    /// The output projection, `E → E`.
    pub out_proj: Linear<T>,
    embed_dim: usize,
    num_heads: usize,
    dropout: f64,
    batch_first: bool,
    causal: bool,
}

impl<T: Float> MultiheadAttention<T> {
    /// PyTorch's defaults: no dropout, biases, sequence-first inputs, not causal.
    pub fn new<R: Rng + ?Sized>(embed_dim: usize, num_heads: usize, rng: &mut R) -> Result<Self> {
        Self::with_options(embed_dim, num_heads, 0.0, true, false, rng)
    }

    /// Every setting, in PyTorch's order. Errors: zero `embed_dim` or `num_heads`, `embed_dim` not
    /// divisible by `num_heads`, `dropout` outside [0, 1].
    pub fn with_options<R: Rng + ?Sized>(
        embed_dim: usize,
        num_heads: usize,
        dropout: f64,
        bias: bool,
        batch_first: bool,
        rng: &mut R,
    ) -> Result<Self> {
        positive(OP, "embed_dim", embed_dim)?;
        positive(OP, "num_heads", num_heads)?;
        if !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!(
                    "embed_dim = {embed_dim} must be divisible by num_heads = {num_heads}"
                ),
            });
        }
        check_probability(OP, dropout)?;
        let e = embed_dim;
        let in_proj_weight = uniform("in_proj_weight", &[3 * e, e], xavier_bound(e, 3 * e), rng)?;
        let in_proj_bias = bias
            .then(|| Tensor::zeros(&[3 * e]).map(|t| Param::new("in_proj_bias", t)))
            .transpose()?;
        // PyTorch draws out_proj as a Linear, then zeroes its bias.
        let out_weight = Tensor::uniform(
            &[e, e],
            T::from_f64(-fan_in_bound(e)),
            T::from_f64(fan_in_bound(e)),
            rng,
        )?;
        let out_bias = bias.then(|| Tensor::zeros(&[e])).transpose()?;
        Ok(MultiheadAttention {
            in_proj_weight,
            in_proj_bias,
            out_proj: Linear::from_tensors(out_weight, out_bias)?,
            embed_dim,
            num_heads,
            dropout,
            batch_first,
            causal: false,
        })
    }

    /// The same layer, causal (or not) as a [`Forward`]: query i attends to keys j ≤ i.
    pub fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Whether `forward` is causal.
    pub fn is_causal(&self) -> bool {
        self.causal
    }

    /// E.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// Number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Dropout probability on the attention weights (training only).
    pub fn dropout(&self) -> f64 {
        self.dropout
    }

    /// Whether inputs are `[N, L, E]` rather than `[L, N, E]`.
    pub fn batch_first(&self) -> bool {
        self.batch_first
    }

    /// Attention of `query` `[L, N, E]` over `key` and `value` `[S, N, E]` (batch-first or
    /// unbatched likewise), giving `[L, N, E]`. `mask` broadcasts to `[N, heads, L, S]`;
    /// `causal` and a mask exclude each other.
    ///
    /// PyTorch equivalent: `mha(query, key, value, attn_mask=mask, need_weights=False,
    /// is_causal=causal)[0]` (PyTorch also wants the causal mask itself with `is_causal`).
    pub fn attend<'t>(
        &self,
        cx: &mut Context<'_>,
        query: Var<'t, T>,
        key: Var<'t, T>,
        value: Var<'t, T>,
        mask: Option<AttnMask<'t, T>>,
        causal: bool,
    ) -> Result<Var<'t, T>> {
        let rank = query.shape().rank();
        // Self-attention (one Var for all three) takes one product with the packed weight.
        let packed = query.id() == key.id() && key.id() == value.id();
        let q = self.to_batch_first(query, rank)?;
        let (k, v) = if packed {
            (q, q)
        } else {
            (
                self.to_batch_first(key, rank)?,
                self.to_batch_first(value, rank)?,
            )
        };
        let (n, l, e) = dims3(q);
        let (nk, s, ek) = dims3(k);
        let (nv, sv, ev) = dims3(v);
        if e != self.embed_dim || ek != e || ev != e || nk != n || nv != n || sv != s {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!(
                    "expected query [L, N, {e0}] and key, value [S, N, {e0}] (batch-first: [N, L, {e0}]), got {} {} {}",
                    query.shape(),
                    key.shape(),
                    value.shape(),
                    e0 = self.embed_dim
                ),
            });
        }
        let tape = q.tape();
        let w = tape.param(&self.in_proj_weight);
        let b = self.in_proj_bias.as_ref().map(|p| tape.param(p));
        let (h, hd) = (self.num_heads, e / self.num_heads);
        let (qh, kh, vh) = if packed {
            // [N, L, 3E] → [N, L, 3, H, hd] → [3, N, H, L, hd].
            let qkv = linear(q, w, b)?
                .reshape(&[n, l, 3, h, hd])?
                .permute(&[2, 0, 3, 1, 4])?;
            (qkv.select(0, 0)?, qkv.select(0, 1)?, qkv.select(0, 2)?)
        } else {
            let part = |x: Var<'t, T>, i: usize, len: usize| -> Result<Var<'t, T>> {
                let wi = w.narrow(0, i * e, e)?;
                let bi = b.map(|b| b.narrow(0, i * e, e)).transpose()?;
                linear(x, wi, bi)?
                    .reshape(&[n, len, h, hd])?
                    .permute(&[0, 2, 1, 3])
            };
            (part(q, 0, l)?, part(k, 1, s)?, part(v, 2, s)?)
        };
        let p = if cx.is_training() { self.dropout } else { 0.0 };
        let heads = if p > 0.0 {
            qh.scaled_dot_product_attention(kh, vh, mask, causal, p, cx.rng(OP)?)?
        } else {
            // Nothing is drawn without dropout; the op still asks for a generator.
            let mut unused = rand_pcg::Pcg32::seed_from_u64(0);
            qh.scaled_dot_product_attention(kh, vh, mask, causal, 0.0, &mut unused)?
        };
        let merged = heads.permute(&[0, 2, 1, 3])?.reshape(&[n, l, e])?;
        let out = self.out_proj.forward(cx, merged)?;
        match rank {
            2 => out.squeeze(0),
            _ if self.batch_first => Ok(out),
            _ => out.transpose(0, 1),
        }
    }

    /// `[N, L, E]` from the layout the layer takes (`rank` is the query's).
    fn to_batch_first<'t>(&self, x: Var<'t, T>, rank: usize) -> Result<Var<'t, T>> {
        let shape = x.shape();
        if shape.rank() != rank || !(rank == 2 || rank == 3) {
            return Err(Error::BadRank {
                op: OP,
                expected: "query, key and value all [L, E] (unbatched) or all of rank 3",
                shape,
            });
        }
        match rank {
            2 => x.unsqueeze(0),
            _ if self.batch_first => Ok(x),
            _ => x.transpose(0, 1),
        }
    }
}

/// The three dimensions of a rank-3 `Var`.
fn dims3<T: Float>(x: Var<'_, T>) -> (usize, usize, usize) {
    match x.shape().dims() {
        &[a, b, c] => (a, b, c),
        _ => (0, 0, 0),
    }
}

/// x `[N, L, in]`·wᵀ + b → `[N, L, out]`, as one matrix product.
fn linear<'t, T: Float>(x: Var<'t, T>, w: Var<'t, T>, b: Option<Var<'t, T>>) -> Result<Var<'t, T>> {
    let (n, l, _) = dims3(x);
    let out = w.shape().dims()[0];
    let y = x.reshape_infer(&[None, Some(dims3(x).2)])?.matmul_t(w)?;
    let y = match b {
        Some(b) => y.add(b)?,
        None => y,
    };
    y.reshape(&[n, l, out])
}

impl<T: Float> Module<T> for MultiheadAttention<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param("in_proj_weight", &self.in_proj_weight);
        v.param_opt("in_proj_bias", self.in_proj_bias.as_ref());
        v.module("out_proj", &self.out_proj);
    }
}

impl<T: Float> Forward<T> for MultiheadAttention<T> {
    /// Self-attention of x, causal if the layer was built so.
    fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        self.attend(cx, x, x, x, None, self.causal)
    }
}
