//! Pooling and reshaping layers: `MaxPool2d`, `AvgPool2d`, `Flatten`.

use super::init::positive;
use super::module::{Context, Forward, Module, Visitor};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::{AvgPool2dOptions, IntoPair, MaxPool2dOptions};
use crate::tape::Var;

/// Checks a window: sizes, strides and dilations ≥ 1, padding at most half the window.
fn check_window(
    op: &'static str,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> Result<()> {
    for (name, (a, b)) in [
        ("kernel_size", kernel),
        ("stride", stride),
        ("dilation", dilation),
    ] {
        positive(op, name, a)?;
        positive(op, name, b)?;
    }
    if padding.0 > kernel.0 / 2 || padding.1 > kernel.1 / 2 {
        return Err(Error::InvalidArgument {
            op,
            reason: format!("padding {padding:?} must be at most half the kernel size {kernel:?}"),
        });
    }
    Ok(())
}

/// 2-D max pooling over the last two axes of `[N, C, H, W]` (or `[C, H, W]`). No parameters.
///
/// PyTorch equivalent: `nn.MaxPool2d(kernel_size, stride=kernel_size, padding=0, dilation=1,
/// ceil_mode=False)` (`return_indices` is not offered).
///
/// ```
/// use tapegrad::nn::{Context, Forward, MaxPool2d};
/// use tapegrad::{Tape, Tensor};
/// let pool = MaxPool2d::new(2)?;
/// let tape = Tape::<f32>::new();
/// let x = tape.constant(Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4])?);
/// assert_eq!(pool.forward(&mut Context::eval(), x)?.value().data(), &[5.0, 7.0, 13.0, 15.0]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    options: MaxPool2dOptions,
}

impl MaxPool2d {
    /// A `kernel_size` window moved by its own size. Errors on a zero size.
    pub fn new(kernel_size: impl IntoPair) -> Result<Self> {
        Self::with_options(MaxPool2dOptions::new(kernel_size))
    }

    /// Every setting. Errors: a zero kernel size, stride or dilation; padding above half the
    /// kernel.
    pub fn with_options(options: MaxPool2dOptions) -> Result<Self> {
        check_window(
            "MaxPool2d",
            options.kernel_size,
            options.stride,
            options.padding,
            options.dilation,
        )?;
        Ok(MaxPool2d { options })
    }

    /// The settings.
    pub fn options(&self) -> MaxPool2dOptions {
        self.options
    }
}

impl<T: Float> Module<T> for MaxPool2d {
    fn visit(&self, _: &mut Visitor<'_, T>) {}
}

impl<T: Float> Forward<T> for MaxPool2d {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.max_pool2d(self.options)
    }
}

/// 2-D average pooling over the last two axes of `[N, C, H, W]` (or `[C, H, W]`). No
/// parameters.
///
/// PyTorch equivalent: `nn.AvgPool2d(kernel_size, stride=kernel_size, padding=0,
/// ceil_mode=False, count_include_pad=True, divisor_override=None)`.
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    options: AvgPool2dOptions,
}

impl AvgPool2d {
    /// A `kernel_size` window moved by its own size. Errors on a zero size.
    pub fn new(kernel_size: impl IntoPair) -> Result<Self> {
        Self::with_options(AvgPool2dOptions::new(kernel_size))
    }

    /// Every setting. Errors: a zero kernel size or stride, padding above half the kernel, a
    /// zero `divisor_override`.
    pub fn with_options(options: AvgPool2dOptions) -> Result<Self> {
        const OP: &str = "AvgPool2d";
        check_window(
            OP,
            options.kernel_size,
            options.stride,
            options.padding,
            (1, 1),
        )?;
        if options.divisor_override == Some(0) {
            positive(OP, "divisor_override", 0)?;
        }
        Ok(AvgPool2d { options })
    }

    /// The settings.
    pub fn options(&self) -> AvgPool2dOptions {
        self.options
    }
}

impl<T: Float> Module<T> for AvgPool2d {
    fn visit(&self, _: &mut Visitor<'_, T>) {}
}

impl<T: Float> Forward<T> for AvgPool2d {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.avg_pool2d(self.options)
    }
}

/// Flattens axes `start_dim..=end_dim` into one (negative axes count from the end); by default
/// every axis but the batch axis. No parameters.
///
/// PyTorch equivalent: `nn.Flatten(start_dim=1, end_dim=-1)`.
///
/// ```
/// use tapegrad::nn::{Context, Flatten, Forward};
/// use tapegrad::{Tape, Tensor};
/// let tape = Tape::<f32>::new();
/// let x = tape.constant(Tensor::zeros(&[2, 3, 4, 5])?);
/// assert_eq!(Flatten::new().forward(&mut Context::eval(), x)?.value().dims(), &[2, 60]);
/// assert_eq!(Flatten::with_dims(0, 1).forward(&mut Context::eval(), x)?.value().dims(), &[6, 4, 5]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Flatten {
    /// First axis flattened.
    pub start_dim: isize,
    /// Last axis flattened (inclusive).
    pub end_dim: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl Flatten {
    /// Flattens every axis after the first (`start_dim = 1`, `end_dim = -1`).
    pub fn new() -> Self {
        Flatten::with_dims(1, -1)
    }

    /// Flattens axes `start_dim..=end_dim`; checked against the input's rank in `forward`.
    pub fn with_dims(start_dim: isize, end_dim: isize) -> Self {
        Flatten { start_dim, end_dim }
    }
}

impl<T: Float> Module<T> for Flatten {
    fn visit(&self, _: &mut Visitor<'_, T>) {}
}

impl<T: Float> Forward<T> for Flatten {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        x.flatten(self.start_dim, self.end_dim)
    }
}
