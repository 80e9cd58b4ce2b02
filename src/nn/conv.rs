//! Convolution layers: `Conv1d`, `Conv2d`.

use rand::Rng;

use super::init::{fan_in_bound, positive, uniform};
use super::module::{Context, Forward, Module, Visitor};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::ops::{Conv1dOptions, Conv2dOptions, IntoPair};
use crate::param::Param;
use crate::tape::Var;

/// Checks the channel counts and groups shared by both convolutions, and each per-axis setting.
fn check_conv(
    op: &'static str,
    in_channels: usize,
    out_channels: usize,
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Result<()> {
    positive(op, "in_channels", in_channels)?;
    positive(op, "out_channels", out_channels)?;
    positive(op, "groups", groups)?;
    for &k in kernel {
        positive(op, "kernel_size", k)?;
    }
    for &s in stride {
        positive(op, "stride", s)?;
    }
    for &d in dilation {
        positive(op, "dilation", d)?;
    }
    for (name, channels) in [("in_channels", in_channels), ("out_channels", out_channels)] {
        if !channels.is_multiple_of(groups) {
            return Err(Error::InvalidArgument {
                op,
                reason: format!("{name} = {channels} is not divisible by groups = {groups}"),
            });
        }
    }
    Ok(())
}

/// The weight `[out, in/groups, kernel…]` and bias `[out]`, drawn as PyTorch does:
/// U(±1/√fan_in) for both, fan_in = in/groups·Πkernel.
fn conv_params<T: Float, R: Rng + ?Sized>(
    in_channels: usize,
    out_channels: usize,
    kernel: &[usize],
    groups: usize,
    bias: bool,
    rng: &mut R,
) -> Result<(Param<T>, Option<Param<T>>)> {
    let per_group = in_channels / groups;
    let mut dims = vec![out_channels, per_group];
    dims.extend_from_slice(kernel);
    let fan_in = per_group * kernel.iter().product::<usize>();
    let bound = fan_in_bound(fan_in);
    let weight = uniform("weight", &dims, bound, rng)?;
    let bias = bias
        .then(|| uniform("bias", &[out_channels], bound, rng))
        .transpose()?;
    Ok((weight, bias))
}

/// 2-D convolution (cross-correlation) of `[N, C_in, H, W]` (or `[C_in, H, W]`) into
/// `[N, C_out, H_out, W_out]`, with stride, zero padding, dilation and groups.
///
/// Initialised like PyTorch: weight and bias ~ U(−1/√fan_in, 1/√fan_in) with
/// fan_in = C_in/groups·kH·kW (PyTorch's `kaiming_uniform_(a=√5)`). Parameters: `weight`
/// `[C_out, C_in/groups, kH, kW]`, `bias` `[C_out]`.
///
/// Not followed from PyTorch: `padding='same'`/`'valid'` strings and `padding_mode` other than
/// zeros.
///
/// PyTorch equivalent: `nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0,
/// dilation=1, groups=1, bias=True)`.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::nn::{Context, Conv2d, Forward};
/// use tapegrad::{Conv2dOptions, Tape, Tensor};
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let conv = Conv2d::<f32>::with_options(3, 8, 3, Conv2dOptions::new().padding(1).stride(2), true, &mut rng)?;
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::ones(&[2, 3, 8, 8])?);
/// assert_eq!(conv.forward(&mut Context::eval(), x)?.value().dims(), &[2, 8, 4, 4]);
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv2d<T: Float> {
    /// The kernels, `[C_out, C_in/groups, kH, kW]`.
    pub weight: Param<T>,
    /// The bias, `[C_out]`, if the layer has one.
    pub bias: Option<Param<T>>,
    options: Conv2dOptions,
}

impl<T: Float> Conv2d<T> {
    /// A convolution with stride 1, no padding, a bias.
    pub fn new<R: Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        kernel_size: impl IntoPair,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_options(
            in_channels,
            out_channels,
            kernel_size,
            Conv2dOptions::default(),
            true,
            rng,
        )
    }

    /// Every setting. Errors: a zero channel count, kernel size, stride, dilation or groups;
    /// channel counts not divisible by `groups`.
    pub fn with_options<R: Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        kernel_size: impl IntoPair,
        options: Conv2dOptions,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        let (kh, kw) = kernel_size.into_pair();
        check_conv(
            "Conv2d",
            in_channels,
            out_channels,
            &[kh, kw],
            &[options.stride.0, options.stride.1],
            &[options.dilation.0, options.dilation.1],
            options.groups,
        )?;
        let (weight, bias) = conv_params(
            in_channels,
            out_channels,
            &[kh, kw],
            options.groups,
            bias,
            rng,
        )?;
        Ok(Conv2d {
            weight,
            bias,
            options,
        })
    }

    /// The stride, padding, dilation and groups.
    pub fn options(&self) -> Conv2dOptions {
        self.options
    }
}

impl<T: Float> Module<T> for Conv2d<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param("weight", &self.weight);
        v.param_opt("bias", self.bias.as_ref());
    }
}

impl<T: Float> Forward<T> for Conv2d<T> {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let b = self.bias.as_ref().map(|p| tape.param(p));
        x.conv2d(tape.param(&self.weight), b, self.options)
    }
}

/// 1-D convolution of `[N, C_in, L]` (or `[C_in, L]`) into `[N, C_out, L_out]`, with stride,
/// zero padding, dilation and groups.
///
/// Initialised like PyTorch: weight and bias ~ U(±1/√fan_in), fan_in = C_in/groups·k.
/// Parameters: `weight` `[C_out, C_in/groups, k]`, `bias` `[C_out]`.
///
/// PyTorch equivalent: `nn.Conv1d(in_channels, out_channels, kernel_size, stride=1, padding=0,
/// dilation=1, groups=1, bias=True)`.
#[derive(Debug, Clone)]
pub struct Conv1d<T: Float> {
    /// The kernels, `[C_out, C_in/groups, k]`.
    pub weight: Param<T>,
    /// The bias, `[C_out]`, if the layer has one.
    pub bias: Option<Param<T>>,
    options: Conv1dOptions,
}

impl<T: Float> Conv1d<T> {
    /// A convolution with stride 1, no padding, a bias.
    pub fn new<R: Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        rng: &mut R,
    ) -> Result<Self> {
        Self::with_options(
            in_channels,
            out_channels,
            kernel_size,
            Conv1dOptions::default(),
            true,
            rng,
        )
    }

    /// Every setting; the same errors as [`Conv2d::with_options`].
    pub fn with_options<R: Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv1dOptions,
        bias: bool,
        rng: &mut R,
    ) -> Result<Self> {
        check_conv(
            "Conv1d",
            in_channels,
            out_channels,
            &[kernel_size],
            &[options.stride],
            &[options.dilation],
            options.groups,
        )?;
        let (weight, bias) = conv_params(
            in_channels,
            out_channels,
            &[kernel_size],
            options.groups,
            bias,
            rng,
        )?;
        Ok(Conv1d {
            weight,
            bias,
            options,
        })
    }

    /// The stride, padding, dilation and groups.
    pub fn options(&self) -> Conv1dOptions {
        self.options
    }
}

impl<T: Float> Module<T> for Conv1d<T> {
    fn visit(&self, v: &mut Visitor<'_, T>) {
        v.param("weight", &self.weight);
        v.param_opt("bias", self.bias.as_ref());
    }
}

impl<T: Float> Forward<T> for Conv1d<T> {
    fn forward<'t>(&self, _cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let tape = x.tape();
        let b = self.bias.as_ref().map(|p| tape.param(p));
        x.conv1d(tape.param(&self.weight), b, self.options)
    }
}
