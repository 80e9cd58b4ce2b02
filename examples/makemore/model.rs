//! The makemore model and its data, shared by `examples/makemore/main.rs` and the parity test
//! `tests/models.rs`.

// Each user of this file uses part of it.
#![allow(dead_code)]

use rand::{Rng, RngExt};
use tapegrad::nn::{Context, Forward, Linear, Module, Visitor};
use tapegrad::{Error, Indices, Param, Result, Tape, Tensor, Var};

/// Characters of context.
pub const CONTEXT: usize = 3;
/// The end-of-name marker `.` and the letters `a`–`z`.
pub const VOCAB: usize = 27;
pub const EMBED: usize = 10;
pub const HIDDEN: usize = 200;
pub const BATCH: usize = 32;

/// The token of a character: `.` is 0, `a`–`z` are 1–26.
pub fn token(c: u8) -> Option<usize> {
    match c {
        b'.' => Some(0),
        b'a'..=b'z' => Some(usize::from(c - b'a') + 1),
        _ => None,
    }
}

pub fn character(token: usize) -> char {
    if token == 0 {
        '.'
    } else {
        char::from(b'a' + (token - 1) as u8)
    }
}

/// Every (context, next character) pair of some names: `CONTEXT` ids per example (padded with `.`
/// at the start of a name) and the id that follows, `.` after the last letter.
pub struct Examples {
    /// `CONTEXT` ids per example.
    pub contexts: Vec<usize>,
    /// The id that follows each context.
    pub targets: Vec<usize>,
}

impl Examples {
    pub fn of(names: &[&str]) -> Result<Examples> {
        let mut contexts = Vec::new();
        let mut targets = Vec::new();
        for name in names {
            let mut window = [0usize; CONTEXT];
            for c in name.bytes().chain(std::iter::once(b'.')) {
                let next = token(c).ok_or_else(|| Error::InvalidArgument {
                    op: "makemore",
                    reason: format!("the name {name:?} has a character outside a-z"),
                })?;
                contexts.extend_from_slice(&window);
                targets.push(next);
                window.rotate_left(1);
                window[CONTEXT - 1] = next;
            }
        }
        Ok(Examples { contexts, targets })
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }
}

/// Embedding table → Linear → tanh → Linear.
pub struct Makemore {
    table: Param<f32>,
    hidden: Linear<f32>,
    out: Linear<f32>,
}

impl Makemore {
    pub fn new(rng: &mut impl Rng) -> Result<Makemore> {
        Ok(Makemore {
            // PyTorch's nn.Embedding initialises its table from N(0, 1).
            table: Param::new("table", Tensor::randn(&[VOCAB, EMBED], rng)?),
            hidden: Linear::new(CONTEXT * EMBED, HIDDEN, rng)?,
            out: Linear::new(HIDDEN, VOCAB, rng)?,
        })
    }

    /// The logits `[n, VOCAB]` for `n` contexts of `CONTEXT` ids each.
    pub fn forward<'t>(&self, tape: &'t Tape<f32>, contexts: &[usize]) -> Result<Var<'t, f32>> {
        let n = contexts.len() / CONTEXT;
        let ids = Indices::new(contexts, &[n, CONTEXT])?;
        // No dropout here, so the mode does not matter.
        let mut cx = Context::eval();
        let embedded = tape.param(&self.table).embedding(&ids, None)?; // [n, 3, 10]
        let h = self
            .hidden
            .forward(&mut cx, embedded.reshape(&[n, CONTEXT * EMBED])?)?
            .tanh()?;
        self.out.forward(&mut cx, h)
    }

    /// Mean cross-entropy over a whole split, without recording gradients.
    pub fn loss(&self, split: &Examples) -> Result<f32> {
        let tape = Tape::no_grad();
        self.forward(&tape, &split.contexts)?
            .cross_entropy(&split.targets)?
            .item()
    }

    /// A name drawn one character at a time from the model's distribution.
    pub fn sample(&self, rng: &mut impl Rng) -> Result<String> {
        let mut window = [0usize; CONTEXT];
        let mut name = String::new();
        loop {
            let tape = Tape::no_grad();
            let probs = self.forward(&tape, &window)?.softmax()?.value();
            let next = draw(probs.data(), rng.random::<f32>());
            if next == 0 || name.len() >= 30 {
                return Ok(name);
            }
            name.push(character(next));
            window.rotate_left(1);
            window[CONTEXT - 1] = next;
        }
    }
}

impl Module<f32> for Makemore {
    fn visit(&self, v: &mut Visitor<'_, f32>) {
        v.param("table", &self.table);
        v.module("hidden", &self.hidden);
        v.module("out", &self.out);
    }
}

/// The index where the running total of `probs` first exceeds `u` (inverse-CDF sampling).
pub fn draw(probs: &[f32], u: f32) -> usize {
    let mut total = 0.0;
    for (i, &p) in probs.iter().enumerate() {
        total += p;
        if u < total {
            return i;
        }
    }
    probs.len() - 1
}
