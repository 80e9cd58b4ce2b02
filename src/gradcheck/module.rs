//! Checking a whole model: an `nn` module (in f32 or f64) is copied to f64, its loss is
//! differentiated with respect to every parameter by backward and by finite differences, with any
//! dropout mask held fixed.

use std::fmt;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::numeric::{self, Difference};
use super::{GradcheckOptions, WorstEntry, classify_kink, unravel};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::sum::dot;
use crate::nn::{Context, Forward, Module};
use crate::param::Param;
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// A model that can be re-instantiated in f64 for a gradient check: a deep copy with every
/// parameter (and buffer) converted to f64, visited under the same names in the same order, and
/// computing the same function.
///
/// Implemented for [`Linear`](crate::nn::Linear), [`ReLU`](crate::nn::ReLU),
/// [`Dropout`](crate::nn::Dropout) and [`Sequential`](crate::nn::Sequential) (whose layers must
/// be of those kinds, nested `Sequential`s included). A model of your own implements it by
/// converting its fields, which is usually one line per field:
///
/// ```
/// use tapegrad::gradcheck::ToF64;
/// use tapegrad::nn::{Context, Forward, Linear, Module, Visitor};
/// use tapegrad::{Float, Result, Var};
///
/// struct Residual<T: Float> { inner: Linear<T> }
/// impl<T: Float> Module<T> for Residual<T> {
///     fn visit(&self, v: &mut Visitor<'_, T>) { v.module("inner", &self.inner) }
/// }
/// impl<T: Float> Forward<T> for Residual<T> {
///     fn forward<'t>(&self, cx: &mut Context<'_>, x: Var<'t, T>) -> Result<Var<'t, T>> {
///         self.inner.forward(cx, x)?.add(x)
///     }
/// }
/// impl<T: Float> ToF64 for Residual<T> {
///     type F64 = Residual<f64>;
///     fn to_f64(&self) -> Result<Residual<f64>> { Ok(Residual { inner: self.inner.to_f64()? }) }
/// }
/// ```
///
/// Why a trait rather than making every model generic over its float type: a model written for
/// f32 (`Linear<f32>` fields) can then be checked without a rewrite, and the conversion is explicit
/// about what it copies. PyTorch's equivalent is `model.double()`, which converts in place; here
/// the original model is left untouched.
pub trait ToF64 {
    /// The same model with f64 parameters.
    type F64: Forward<f64>;
    /// The converted deep copy.
    fn to_f64(&self) -> Result<Self::F64>;
}

/// Settings of [`gradcheck_module`].
#[derive(Clone, Debug)]
pub struct ModuleCheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric value).
    pub rtol: f64,
    /// Seed of the generator every forward pass draws from (the dropout mask, held fixed).
    pub seed: u64,
    /// The numeric scheme.
    pub scheme: Difference,
    /// Parameters with at most this many elements are checked element by element; larger ones by
    /// a random projection (fast mode: one directional derivative, which a wrong gradient almost
    /// surely changes, but which cannot point at an element).
    pub full_up_to: usize,
    /// Check every parameter element by element, whatever its size.
    pub full: bool,
    /// Training mode (dropout active, its mask held fixed); eval mode when false.
    pub train: bool,
    /// Whether failing elements are examined for a kink (see [`GradcheckOptions::diagnose_kinks`]).
    pub diagnose_kinks: bool,
}

impl Default for ModuleCheckOptions {
    /// PyTorch's ε and tolerances, parameters of up to 4096 elements in full, training mode.
    fn default() -> Self {
        ModuleCheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            seed: 0,
            scheme: Difference::Central,
            full_up_to: 4096,
            full: false,
            train: true,
            diagnose_kinks: true,
        }
    }
}

/// How one parameter fared.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCheck {
    /// Its full name (`0.weight`).
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<usize>,
    /// Whether it was checked element by element (false: by a random projection).
    pub full: bool,
    /// The element whose error is largest relative to its tolerance (in fast mode: the projection,
    /// with an empty index).
    pub worst: Option<WorstEntry>,
    /// The worst error divided by the error allowed there (`atol + rtol·|numeric|`): above 1 fails.
    pub ratio: f64,
    /// Elements diagnosed as lying within ε of a kink (excluded from the verdict).
    pub kinks: usize,
    /// Whether every element was within tolerance.
    pub passed: bool,
}

/// The result of [`gradcheck_module`]: one [`ParamCheck`] per parameter, in visiting order.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleReport {
    /// Per-parameter results.
    pub params: Vec<ParamCheck>,
    /// The loss at the parameters (in f64).
    pub loss: f64,
    /// The float type of the model that was checked (`float32` or `float64`).
    pub dtype: &'static str,
    /// The options used.
    pub atol: f64,
    /// The options used.
    pub rtol: f64,
    /// The options used.
    pub eps: f64,
    /// The options used.
    pub scheme: Difference,
}

impl ModuleReport {
    /// Whether every parameter passed.
    pub fn passed(&self) -> bool {
        self.params.iter().all(|p| p.passed)
    }

    /// The check of the parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&ParamCheck> {
        self.params.iter().find(|p| p.name == name)
    }
}

impl fmt::Display for ModuleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gradcheck_module {} ({} model checked in float64; loss {:.6e}; atol {:e}, rtol {:e}, eps {:e}, {})",
            if self.passed() { "passed" } else { "FAILED" },
            self.dtype,
            self.loss,
            self.atol,
            self.rtol,
            self.eps,
            self.scheme.name()
        )?;
        let width = self
            .params
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(4)
            .max(9);
        writeln!(
            f,
            "  {:width$}  {:12}  {:4}  {:14}  {:>13}  {:>13}  {:>9}",
            "parameter", "shape", "mode", "worst element", "analytic", "numeric", "err/tol"
        )?;
        for p in &self.params {
            let (index, analytic, numeric) = match &p.worst {
                Some(w) if p.full => (format!("{:?}", w.input_index), w.analytic, w.numeric),
                Some(w) => ("(projection)".to_string(), w.analytic, w.numeric),
                None => ("-".to_string(), f64::NAN, f64::NAN),
            };
            write!(
                f,
                "  {:width$}  {:12}  {:4}  {:14}  {:>13.6e}  {:>13.6e}  {:>9.2e}  {}",
                p.name,
                format!("{:?}", p.dims),
                if p.full { "full" } else { "fast" },
                index,
                analytic,
                numeric,
                p.ratio,
                if p.passed { "ok" } else { "MISMATCH" }
            )?;
            if p.kinks > 0 {
                write!(f, "  ({} element(s) within eps of a kink)", p.kinks)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Checks the gradient of `loss(model(input))` with respect to every parameter of `model`
/// against finite differences, in f64.
///
/// The model (f32 or f64) is copied to f64 with [`ToF64`]; the original is not touched. Every
/// forward pass draws from a fresh generator seeded with `options.seed`, so a dropout inside draws
/// the same mask each time and the check is of the function with that mask fixed (what backward
/// differentiates). Parameters of up to `options.full_up_to` elements are checked element by
/// element, larger ones by a random projection (all in full with `options.full`). `loss` maps the
/// model's output to a scalar (e.g. `|logits| logits.cross_entropy(&labels)`).
///
/// Returns the report; it fails (`passed()` false) rather than returning an error, so that every
/// parameter is listed. Errors are for bad options, a model that cannot be converted, or a loss
/// that is not a scalar.
///
/// PyTorch has no single call for this; the nearest is `gradcheck` over
/// `torch.func.functional_call(model.double(), params, x)`.
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::gradcheck::{gradcheck_module, ModuleCheckOptions};
/// use tapegrad::nn::{Dropout, Linear, ReLU, Sequential};
/// use tapegrad::Tensor;
///
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let model = Sequential::new()
///     .push(Linear::<f32>::new(4, 8, &mut rng)?)
///     .push(ReLU)
///     .push(Dropout::new(0.5)?)
///     .push(Linear::new(8, 3, &mut rng)?);
/// let x = Tensor::<f32>::normal(&[5, 4], 0.0, 1.0, &mut rng)?;
/// let labels = [0usize, 1, 2, 1, 0];
/// let report = gradcheck_module(&model, &x, |y| y.cross_entropy(&labels), &ModuleCheckOptions::default())?;
/// assert!(report.passed(), "{report}");
/// assert_eq!(report.params.len(), 4);
/// # Ok::<(), tapegrad::Error>(())
/// ```
pub fn gradcheck_module<T, M, L>(
    model: &M,
    input: &Tensor<T>,
    loss: L,
    options: &ModuleCheckOptions,
) -> Result<ModuleReport>
where
    T: Float,
    M: ToF64 + ?Sized,
    L: for<'t> Fn(Var<'t, f64>) -> Result<Var<'t, f64>>,
{
    GradcheckOptions {
        eps: options.eps,
        atol: options.atol,
        rtol: options.rtol,
        ..GradcheckOptions::default()
    }
    .validate()?;
    let model = model.to_f64()?;
    let x = input.cast::<f64>()?;
    let params = model.named_params();

    // Analytic: one backward pass.
    let (loss_value, analytic) = {
        let tape = Tape::new();
        let l = forward_loss(&model, &x, &loss, &tape, options)?;
        let value = l.value().item()?;
        let mut grads = if l.requires_grad() {
            Some(l.backward()?)
        } else {
            None
        };
        let analytic = params
            .iter()
            .map(
                |(_, p)| match grads.as_mut().and_then(|g| g.take_param(p)) {
                    Some(g) => Ok(g),
                    // A parameter the loss does not reach has a zero gradient.
                    None => Tensor::full_shape(p.shape(), 0.0),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        (value, analytic)
    };

    let value_at = || -> Result<f64> {
        let tape = Tape::no_grad();
        forward_loss(&model, &x, &loss, &tape, options)?
            .value()
            .item()
    };
    let mut directions = Pcg64::seed_from_u64(options.seed ^ 0xD1B5_4A32_D192_ED03);
    let mut report = ModuleReport {
        params: Vec::with_capacity(params.len()),
        loss: loss_value,
        dtype: T::DTYPE,
        atol: options.atol,
        rtol: options.rtol,
        eps: options.eps,
        scheme: options.scheme,
    };
    for ((name, param), grad) in params.iter().zip(&analytic) {
        let numel = grad.numel();
        let full = options.full || numel <= options.full_up_to;
        let check = if full {
            check_param_full(param, grad, &value_at, options)?
        } else {
            check_param_projected(param, grad, &value_at, options, &mut directions)?
        };
        report.params.push(ParamCheck {
            name: name.clone(),
            dims: grad.dims().to_vec(),
            full,
            ..check
        });
    }
    Ok(report)
}

/// `loss(model(x))` on `tape`, with a fresh generator from the seed (the same mask every time).
fn forward_loss<'t, M, L>(
    model: &M,
    x: &Tensor<f64>,
    loss: &L,
    tape: &'t Tape<f64>,
    options: &ModuleCheckOptions,
) -> Result<Var<'t, f64>>
where
    M: Forward<f64>,
    L: for<'s> Fn(Var<'s, f64>) -> Result<Var<'s, f64>>,
{
    let mut rng = Pcg64::seed_from_u64(options.seed);
    let x = tape.constant(x.try_clone()?);
    let y = if options.train {
        model.forward(&mut Context::train(&mut rng), x)?
    } else {
        model.forward(&mut Context::eval(), x)?
    };
    let l = loss(y)?;
    if l.value().numel() != 1 {
        return Err(Error::NonScalarLoss {
            shape: l.value().shape().clone(),
        });
    }
    Ok(l)
}

fn ratio_of(analytic: f64, numeric: f64, options: &ModuleCheckOptions) -> f64 {
    let abs = (analytic - numeric).abs();
    if abs.is_nan() {
        f64::INFINITY
    } else {
        abs / (options.atol + options.rtol * numeric.abs())
    }
}

fn check_param_full(
    param: &Param<f64>,
    grad: &Tensor<f64>,
    value_at: &dyn Fn() -> Result<f64>,
    options: &ModuleCheckOptions,
) -> Result<ParamCheck> {
    let strides = grad.shape().strides();
    let mut check = ParamCheck {
        name: String::new(),
        dims: Vec::new(),
        full: true,
        worst: None,
        ratio: 0.0,
        kinks: 0,
        passed: true,
    };
    for i in 0..grad.numel() {
        let x = param.value().data()[i];
        let mut eval = |xi: f64| -> Result<Vec<f64>> {
            param.update(|t| t.data_mut()[i] = xi);
            Ok(vec![value_at()?])
        };
        let column = numeric::column(&mut eval, x, options.eps, options.scheme);
        let outcome = column.and_then(|column| {
            let (ana, num) = (grad.data()[i], column.values[0]);
            let ratio = ratio_of(ana, num, options);
            if ratio > 1.0 && ratio.is_finite() && options.diagnose_kinks {
                let sides = numeric::sides(&mut eval, x, column.step)?;
                if classify_kink(ana, &sides, 0, column.step, options.atol, options.rtol).is_some()
                {
                    return Ok(None);
                }
            }
            Ok(Some((ana, num, ratio)))
        });
        // Restore the element whatever happened.
        param.update(|t| t.data_mut()[i] = x);
        match outcome? {
            None => check.kinks += 1,
            Some((analytic, numeric, ratio)) => {
                check.passed &= ratio <= 1.0;
                if check.worst.is_none() || ratio > check.ratio {
                    check.ratio = ratio;
                    check.worst = Some(WorstEntry {
                        input_index: unravel(i, &strides),
                        output_index: 0,
                        analytic,
                        numeric,
                    });
                }
            }
        }
    }
    Ok(check)
}

fn check_param_projected(
    param: &Param<f64>,
    grad: &Tensor<f64>,
    value_at: &dyn Fn() -> Result<f64>,
    options: &ModuleCheckOptions,
    directions: &mut Pcg64,
) -> Result<ParamCheck> {
    let u = Tensor::normal(grad.dims(), 0.0, 1.0, directions)?;
    let norm = dot(u.data(), u.data()).sqrt();
    let u = if norm > 0.0 { u.map(|x| x / norm)? } else { u };
    let base = param.value();
    let mut eval = |t: f64| -> Result<Vec<f64>> {
        param.set(base.zip_map(&u, "gradcheck_module", |x, d| x + t * d)?);
        Ok(vec![value_at()?])
    };
    let column = numeric::column(&mut eval, 0.0, options.eps, options.scheme);
    param.set_shared(base);
    let numeric = column?.values[0];
    let analytic = dot(grad.data(), u.data());
    let ratio = ratio_of(analytic, numeric, options);
    Ok(ParamCheck {
        name: String::new(),
        dims: Vec::new(),
        full: false,
        worst: Some(WorstEntry {
            input_index: Vec::new(),
            output_index: 0,
            analytic,
            numeric,
        }),
        ratio,
        kinks: 0,
        passed: ratio <= 1.0,
    })
}
