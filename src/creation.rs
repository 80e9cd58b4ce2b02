//! Making tensors from a recipe: `arange`, `linspace`, `eye`, `rand`, `randn`.

use rand::Rng;

use crate::element::Float;
use crate::error::{Error, Result};
use crate::kernels::pool;
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// `start, start + step, …` up to (not including) `end`: ⌈(end − start)/step⌉ values.
    ///
    /// PyTorch equivalent: `torch.arange(start, end, step)`.
    ///
    /// ```
    /// use tapegrad::Tensor;
    /// assert_eq!(Tensor::<f64>::arange(0.0, 5.0, 2.0)?.data(), &[0.0, 2.0, 4.0]);
    /// assert!(Tensor::<f64>::arange(0.0, 1.0, 0.0).is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn arange(start: T, end: T, step: T) -> Result<Self> {
        let (s, e, d) = (start.to_f64(), end.to_f64(), step.to_f64());
        let count = ((e - s) / d).ceil();
        if !(d != 0.0 && count.is_finite() && s.is_finite() && e.is_finite()) || count < 0.0 {
            return Err(Error::InvalidArgument {
                op: "arange",
                reason: format!("start {start}, end {end}, step {step} do not make a finite range"),
            });
        }
        let n = count as usize;
        let data = pool::try_collect("arange", n, (0..n).map(|i| T::from_f64(s + i as f64 * d)))?;
        Tensor::from_vec(data, &[n])
    }

    /// `steps` values evenly spaced from `start` to `end` (both included), computed as PyTorch
    /// does: from the start for the first half, from the end for the second, so both ends are
    /// exact.
    ///
    /// PyTorch equivalent: `torch.linspace(start, end, steps)`.
    ///
    /// ```
    /// use tapegrad::Tensor;
    /// assert_eq!(Tensor::<f64>::linspace(0.0, 1.0, 5)?.data(), &[0.0, 0.25, 0.5, 0.75, 1.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn linspace(start: T, end: T, steps: usize) -> Result<Self> {
        if steps == 1 {
            return Tensor::from_vec(vec![start], &[1]);
        }
        let step = if steps > 1 {
            (end - start) / T::from_f64((steps - 1) as f64)
        } else {
            T::ZERO
        };
        let half = steps / 2;
        let data = pool::try_collect(
            "linspace",
            steps,
            (0..steps).map(|i| {
                if i < half {
                    start + step * T::from_f64(i as f64)
                } else {
                    end - step * T::from_f64((steps - 1 - i) as f64)
                }
            }),
        )?;
        Tensor::from_vec(data, &[steps])
    }

    /// The `n × m` matrix with ones on the diagonal and zeros elsewhere.
    ///
    /// PyTorch equivalent: `torch.eye(n, m)`.
    pub fn eye(n: usize, m: usize) -> Result<Self> {
        let mut t = Tensor::zeros(&[n, m])?;
        for i in 0..n.min(m) {
            t.data_mut()[i * m + i] = T::ONE;
        }
        Ok(t)
    }

    /// Independent draws from N(0, 1).
    ///
    /// PyTorch equivalent: `torch.randn(dims)` (with the caller's generator).
    pub fn randn<R: Rng + ?Sized>(dims: &[usize], rng: &mut R) -> Result<Self> {
        Self::normal(dims, T::ZERO, T::ONE, rng)
    }

    /// Independent draws from U[0, 1).
    ///
    /// PyTorch equivalent: `torch.rand(dims)` (with the caller's generator).
    pub fn rand<R: Rng + ?Sized>(dims: &[usize], rng: &mut R) -> Result<Self> {
        Self::uniform(dims, T::ZERO, T::ONE, rng)
    }
}
