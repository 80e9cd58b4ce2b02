//! The digits CNN, shared by `examples/digits_cnn/main.rs` and the parity test `tests/models.rs`:
//!
//! ```text
//! Conv2d(1 → 32, 3×3, padding 1) → ReLU → MaxPool2d(2)      [n, 32, 4, 4]
//! Conv2d(32 → 64, 3×3, padding 1) → ReLU → Flatten          [n, 1024]
//! Dropout(0.25) → Linear(1024 → 10)                         [n, 10]
//! ```
//!
//! PyTorch's `nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
//! nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.25), nn.Linear(1024,
//! 10))`, with the same parameter names (`0.weight`, `0.bias`, `3.weight`, …).

// Each user of this file uses part of it.
#![allow(dead_code)]

use rand::Rng;
use tapegrad::nn::{Context, Dropout, Forward, Linear, Module, Visitor};
use tapegrad::{Conv2dOptions, MaxPool2dOptions, Param, Result, Tape, Tensor, Var};

/// A 3×3 convolution with padding 1, initialised as PyTorch's `nn.Conv2d`: weight and bias
/// uniform in ±1/√fan_in (kaiming_uniform with a = √5 gives that bound).
pub struct Conv3x3 {
    weight: Param<f32>,
    bias: Param<f32>,
}

impl Conv3x3 {
    pub fn new(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Result<Conv3x3> {
        let bound = 1.0 / ((inputs * 9) as f32).sqrt();
        Ok(Conv3x3 {
            weight: Param::new(
                "weight",
                Tensor::uniform(&[outputs, inputs, 3, 3], -bound, bound, rng)?,
            ),
            bias: Param::new("bias", Tensor::uniform(&[outputs], -bound, bound, rng)?),
        })
    }

    pub fn forward<'t>(&self, tape: &'t Tape<f32>, x: Var<'t, f32>) -> Result<Var<'t, f32>> {
        x.conv2d(
            tape.param(&self.weight),
            Some(tape.param(&self.bias)),
            Conv2dOptions::new().padding(1),
        )
    }
}

impl Module<f32> for Conv3x3 {
    fn visit(&self, v: &mut Visitor<'_, f32>) {
        v.param("weight", &self.weight);
        v.param("bias", &self.bias);
    }
}

/// The model; fields named after their index in PyTorch's `nn.Sequential`.
pub struct DigitsCnn {
    conv1: Conv3x3,
    conv2: Conv3x3,
    dropout: Dropout,
    head: Linear<f32>,
}

impl DigitsCnn {
    pub fn new(rng: &mut impl Rng) -> Result<DigitsCnn> {
        Ok(DigitsCnn {
            conv1: Conv3x3::new(1, 32, rng)?,
            conv2: Conv3x3::new(32, 64, rng)?,
            dropout: Dropout::new(0.25)?,
            head: Linear::new(1024, 10, rng)?,
        })
    }

    /// Logits `[n, 10]` for images `[n, 64]` (8×8, row by row).
    pub fn forward<'t>(
        &self,
        tape: &'t Tape<f32>,
        cx: &mut Context<'_>,
        images: Var<'t, f32>,
    ) -> Result<Var<'t, f32>> {
        let n = images.shape().dims()[0];
        let x = images.reshape(&[n, 1, 8, 8])?;
        let x = self
            .conv1
            .forward(tape, x)?
            .relu()?
            .max_pool2d(MaxPool2dOptions::new(2))?;
        let x = self.conv2.forward(tape, x)?.relu()?.flatten(1, -1)?;
        let x = self.dropout.forward(cx, x)?;
        self.head.forward(cx, x)
    }
}

impl Module<f32> for DigitsCnn {
    fn visit(&self, v: &mut Visitor<'_, f32>) {
        v.module("0", &self.conv1);
        v.module("3", &self.conv2);
        v.module("7", &self.head);
    }
}
