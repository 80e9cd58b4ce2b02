//! A pre-norm transformer block (GPT-2's).

use rand::Rng;

use super::attention::MultiheadAttention;
use super::layers::{Dropout, Linear};
use super::module::{Context, Forward, Module, Visitor};
use super::norm::LayerNorm;
use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;

/// A pre-norm transformer block on `[N, L, E]`:
///
/// x ← x + Dropout(CausalSelfAttention(LayerNorm(x))),
/// x ← x + Dropout(Linear(GELU(Linear(LayerNorm(x))))) with a hidden width of 4E.
///
/// Every part is initialised as its PyTorch layer. Entries (the names of the PyTorch module
/// below): `ln_1.{weight,bias}`, `attn.in_proj_weight`, `attn.in_proj_bias`,
/// `attn.out_proj.{weight,bias}`, `ln_2.{weight,bias}`, `mlp.0.{weight,bias}` (E → 4E),
/// `mlp.2.{weight,bias}` (4E → E).
///
/// PyTorch equivalent (no single class; this module):
///
/// ```text
/// class Block(nn.Module):
///     def __init__(self, E, heads, dropout):
///         super().__init__()
///         self.ln_1 = nn.LayerNorm(E)
///         self.attn = nn.MultiheadAttention(E, heads, dropout=dropout, batch_first=True)
///         self.ln_2 = nn.LayerNorm(E)
///         self.mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.GELU(), nn.Linear(4 * E, E),
///                                  nn.Dropout(dropout))
///         self.drop = nn.Dropout(dropout)
///     def forward(self, x):
///         L = x.shape[1]
///         causal = torch.triu(torch.full((L, L), float("-inf")), 1)
///         h = self.ln_1(x)
///         x = x + self.drop(self.attn(h, h, h, attn_mask=causal, is_causal=True,
///                                     need_weights=False)[0])
///         return x + self.mlp(self.ln_2(x))
/// ```
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::{Block, Context, Forward, Module};
/// use tapegrad::{Tape, Tensor};
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let block = Block::<f32>::new(16, 4, 0.1, &mut rng)?;
/// assert_eq!(block.num_params(), 12 * 16 * 16 + 13 * 16);
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::normal(&[2, 7, 16], 0.0, 1.0, &mut rng)?);
/// let y = block.forward(&mut Context::train(&mut rng), x)?;
/// assert_eq!(y.value().dims(), &[2, 7, 16]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Block<T: Float> {
    /// The norm before attention.
    pub ln_1: LayerNorm<T>,
    /// Causal self-attention (batch-first).
    pub attn: MultiheadAttention<T>,
    /// The norm before the MLP.
    pub ln_2: LayerNorm<T>,
    /// The MLP's first layer, E → 4E (`mlp.0`).
    pub mlp_fc: Linear<T>,
    /// The MLP's second layer, 4E → E (`mlp.2`).
    pub mlp_proj: Linear<T>,
    dropout: Dropout,
}

impl<T: Float> Block<T> {
    /// A block of width `embed_dim` with `num_heads` heads and dropout `dropout` (on the
    /// attention weights and on both residual branches). Errors as [`MultiheadAttention`]'s and
    /// for a dropout outside [0, 1].
    pub fn new<R: Rng + ?Sized>(
        embed_dim: usize,
        num_heads: usize,
        dropout: f64,
        rng: &mut R,
    ) -> Result<Self> {
        let attn =
            MultiheadAttention::with_options(embed_dim, num_heads, dropout, true, true, rng)?
                .with_causal(true);
        let hidden = 4 * embed_dim;
        Ok(Block {
            ln_1: LayerNorm::new(&[embed_dim])?,
            attn,
            ln_2: LayerNorm::new(&[embed_dim])?,
            mlp_fc: Linear::new(embed_dim, hidden, rng)?,
            mlp_proj: Linear::new(hidden, embed_dim, rng)?,
            dropout: Dropout::new(dropout)?,
        })
    }

    /// The dropout probability.
    pub fn dropout(&self) -> f64 {
        self.dropout.p()
    }
}

impl<T: Float> Module<T> for Block<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.module("ln_1", &self.ln_1);
        v.module("attn", &self.attn);
        v.module("ln_2", &self.ln_2);
        v.module("mlp.0", &self.mlp_fc);
        v.module("mlp.2", &self.mlp_proj);
    }
}

impl<T: Float> Forward<T> for Block<T> {
    /// x `[N, L, E]` → `[N, L, E]`.
    fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let h = self.ln_1.forward(cx, x)?;
        let a = self.attn.forward(cx, h)?;
        let x = x.add(self.dropout.forward(cx, a)?)?;
        let h = self.ln_2.forward(cx, x)?;
        let h = self.mlp_fc.forward(cx, h)?.gelu()?;
        let h = self.mlp_proj.forward(cx, h)?;
        x.add(self.dropout.forward(cx, h)?)
    }
}
