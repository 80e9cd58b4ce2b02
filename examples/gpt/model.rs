//! A small character-level GPT, shared by `examples/gpt/main.rs` and the parity test
//! `tests/models.rs`: token and position embeddings, pre-norm transformer blocks (causal
//! multi-head self-attention and a GELU MLP, each a residual branch with dropout), a final
//! LayerNorm, and a language-model head tied to the token embedding.
//!
//! PyTorch's equivalent, with the same parameter names:
//!
//! ```text
//! class GPT(nn.Module):
//!     def __init__(self, vocab, block, layers, heads, E, dropout):
//!         super().__init__()
//!         self.tok = nn.Embedding(vocab, E); self.pos = nn.Embedding(block, E)
//!         self.drop = nn.Dropout(dropout)
//!         self.blocks = nn.ModuleList([Block(E, heads, dropout) for _ in range(layers)])
//!         self.ln_f = nn.LayerNorm(E)
//!     def forward(self, ids):                      # ids [B, L]
//!         L = ids.shape[1]
//!         x = self.drop(self.tok(ids) + self.pos(torch.arange(L)))
//!         for block in self.blocks: x = block(x)
//!         return self.ln_f(x) @ self.tok.weight.T  # logits [B, L, vocab], tied head
//! ```

// Each user of this file uses part of it.
#![allow(dead_code)]

use rand::Rng;
use tapegrad::nn::{
    Block, Context, Dropout, Embedding, Forward, ForwardIds, LayerNorm, Module, Visitor,
};
use tapegrad::{Error, Float, Indices, Result, Tape, Tensor, Var};

/// The sizes of a model.
#[derive(Clone, Copy, Debug)]
pub struct GptConfig {
    pub vocab: usize,
    /// The longest context (`block_size`).
    pub block: usize,
    pub layers: usize,
    pub heads: usize,
    pub embed: usize,
    pub dropout: f64,
}

pub struct Gpt<T: Float> {
    config: GptConfig,
    tok: Embedding<T>,
    pos: Embedding<T>,
    drop: Dropout,
    blocks: Vec<Block<T>>,
    ln_f: LayerNorm<T>,
}

impl<T: Float> Gpt<T> {
    /// A model initialised as GPT-2 initialises its embeddings, N(0, 0.02²) (PyTorch's
    /// `nn.Embedding` default, N(0, 1), would make the tied head's first logits of size √E and
    /// the first loss several times log(vocab)); every other layer as its PyTorch default.
    pub fn new(config: GptConfig, rng: &mut impl Rng) -> Result<Self> {
        let table = |rows: usize, rng: &mut dyn rand::Rng| {
            Embedding::from_tensor(
                Tensor::normal(
                    &[rows, config.embed],
                    T::from_f64(0.0),
                    T::from_f64(0.02),
                    rng,
                )?,
                None,
            )
        };
        Ok(Gpt {
            config,
            tok: table(config.vocab, rng)?,
            pos: table(config.block, rng)?,
            drop: Dropout::new(config.dropout)?,
            blocks: (0..config.layers)
                .map(|_| Block::new(config.embed, config.heads, config.dropout, rng))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(&[config.embed])?,
        })
    }

    pub fn config(&self) -> GptConfig {
        self.config
    }

    /// Logits `[batch, len, vocab]` for `ids` of shape `[batch, len]`, `len ≤ block`.
    pub fn forward<'t>(
        &self,
        cx: &mut Context<'_>,
        tape: &'t Tape<T>,
        ids: &Indices,
    ) -> Result<Var<'t, T>> {
        let &[batch, len] = ids.dims() else {
            return Err(Error::InvalidArgument {
                op: "Gpt::forward",
                reason: format!("ids must be [batch, len], got {:?}", ids.dims()),
            });
        };
        if len > self.config.block {
            return Err(Error::InvalidArgument {
                op: "Gpt::forward",
                reason: format!(
                    "a context of {len} exceeds the block size {}",
                    self.config.block
                ),
            });
        }
        let positions = Indices::new(&(0..len).collect::<Vec<usize>>(), &[len])?;
        let tokens = self.tok.forward_ids(cx, tape, ids)?; // [B, L, E]
        let x = tokens.add(self.pos.forward_ids(cx, tape, &positions)?)?; // + [L, E]
        let mut x = self.drop.forward(cx, x)?;
        for block in &self.blocks {
            x = block.forward(cx, x)?;
        }
        let x = self.ln_f.forward(cx, x)?;
        // The head shares the token table: logits = x · tokᵀ.
        let table = tape.param(&self.tok.weight);
        x.reshape(&[batch * len, self.config.embed])?
            .matmul_t(table)?
            .reshape(&[batch, len, self.config.vocab])
    }
}

impl<T: Float> Module<T> for Gpt<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.module("tok", &self.tok);
        v.module("pos", &self.pos);
        for (i, block) in self.blocks.iter().enumerate() {
            v.module(&format!("blocks.{i}"), block);
        }
        v.module("ln_f", &self.ln_f);
    }
}
