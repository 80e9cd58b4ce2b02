//! Operators on `Var`: `a + b`, `&a * &b`, `x * 2.0`, `1.0 - x`, `-x`, …, each returning a
//! `Result<Var>` (a shape can mismatch, and the tape can run out of memory), so they compose with
//! `?`: `((a + b)? * 2.0)?`. Also `sub_scalar` and `item`.
//!
//! Every operator records the same node as the named method it stands for, so its value and
//! gradients are that method's:
//!
//! | expression | records |
//! |---|---|
//! | `a + b`, `a - b`, `a * b`, `a / b` (`Var` or `&Var` on either side) | `add`, `sub`, `mul`, `div` (broadcasting) |
//! | `x + c`, `x - c`, `x * c`, `x / c` (c a number) | `add_scalar(c)`, `sub_scalar(c)`, `mul_scalar(c)`, `div_scalar(c)` |
//! | `c + x`, `c * x` | `add_scalar(c)`, `mul_scalar(c)` |
//! | `c - x` | `neg`, then `add_scalar(c)` (c − x exactly, as IEEE defines subtraction) |
//! | `c / x` | `reciprocal`, then `mul_scalar(c)`: PyTorch's `__rtruediv__` computes `x.reciprocal() * c` |
//! | `-x` | `neg` |
//!
//! The number is of the tensor's element type: `Var<f32>` takes `f32`, `Var<f64>` takes `f64`.
//!
//! ```
//! use tapegrad::{Tape, Tensor};
//! let tape = Tape::new();
//! let a = tape.leaf(Tensor::from_vec(vec![1.0f64, 2.0], &[2])?);
//! let b = tape.leaf(Tensor::from_vec(vec![3.0f64, 5.0], &[2])?);
//! let y = ((&a * &b)? - 1.0)?;          // a·b − 1
//! let y = ((2.0 * y)? / b)?;            // 2(a·b − 1)/b
//! let loss = (-y)?.sum()?;
//! assert_eq!(loss.item()?, -(2.0 * 2.0 / 3.0 + 2.0 * 9.0 / 5.0));
//! let g = loss.backward()?;
//! assert_eq!(g.wrt(a)?.data(), &[-2.0, -2.0]);  // ∂/∂a of −2a + 2/b
//! # Ok::<(), tapegrad::Error>(())
//! ```

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::element::Float;
use crate::error::Result;
use crate::tape::Var;

impl<'t, T: Float> Var<'t, T> {
    /// `self − c` for a number `c`, recorded as `add_scalar(−c)` (the same value: IEEE defines
    /// x − c as x + (−c)). ∂L/∂x = g.
    ///
    /// PyTorch equivalent: `x - c`.
    pub fn sub_scalar(self, c: T) -> Result<Var<'t, T>> {
        self.add_scalar(-c)
    }

    /// The single value of a one-element `Var` (a scalar loss, a `[1]` or `[1, 1]` tensor); an
    /// [`Error::BadRank`](crate::Error::BadRank) for any other size.
    ///
    /// PyTorch equivalent: `x.item()`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.5f32, 2.5], &[2])?);
    /// assert_eq!(x.sum()?.item()?, 4.0);
    /// assert!(x.item().is_err());
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn item(self) -> Result<T> {
        self.value().item()
    }
}

/// `Var ⊕ Var` in the four combinations of owned and borrowed operands, and `Var ⊕ number`.
macro_rules! var_operator {
    ($Trait:ident, $method:ident, $var_op:ident, $scalar_op:ident) => {
        impl<'t, T: Float> $Trait<Var<'t, T>> for Var<'t, T> {
            type Output = Result<Var<'t, T>>;
            #[doc = concat!("`Var::", stringify!($var_op), "`, broadcasting.")]
            fn $method(self, rhs: Var<'t, T>) -> Self::Output {
                Var::$var_op(self, rhs)
            }
        }

        impl<'t, T: Float> $Trait<&Var<'t, T>> for &Var<'t, T> {
            type Output = Result<Var<'t, T>>;
            #[doc = concat!("`Var::", stringify!($var_op), "`, broadcasting.")]
            fn $method(self, rhs: &Var<'t, T>) -> Self::Output {
                Var::$var_op(*self, *rhs)
            }
        }

        impl<'t, T: Float> $Trait<&Var<'t, T>> for Var<'t, T> {
            type Output = Result<Var<'t, T>>;
            #[doc = concat!("`Var::", stringify!($var_op), "`, broadcasting.")]
            fn $method(self, rhs: &Var<'t, T>) -> Self::Output {
                Var::$var_op(self, *rhs)
            }
        }

        impl<'t, T: Float> $Trait<Var<'t, T>> for &Var<'t, T> {
            type Output = Result<Var<'t, T>>;
            #[doc = concat!("`Var::", stringify!($var_op), "`, broadcasting.")]
            fn $method(self, rhs: Var<'t, T>) -> Self::Output {
                Var::$var_op(*self, rhs)
            }
        }

        impl<'t, T: Float> $Trait<T> for Var<'t, T> {
            type Output = Result<Var<'t, T>>;
            #[doc = concat!("`Var::", stringify!($scalar_op), "`.")]
            fn $method(self, rhs: T) -> Self::Output {
                Var::$scalar_op(self, rhs)
            }
        }

        impl<'t, T: Float> $Trait<T> for &Var<'t, T> {
            type Output = Result<Var<'t, T>>;
            #[doc = concat!("`Var::", stringify!($scalar_op), "`.")]
            fn $method(self, rhs: T) -> Self::Output {
                Var::$scalar_op(*self, rhs)
            }
        }
    };
}

var_operator!(Add, add, add, add_scalar);
var_operator!(Sub, sub, sub, sub_scalar);
var_operator!(Mul, mul, mul, mul_scalar);
var_operator!(Div, div, div, div_scalar);

impl<'t, T: Float> Neg for Var<'t, T> {
    type Output = Result<Var<'t, T>>;
    /// `Var::neg`.
    fn neg(self) -> Self::Output {
        Var::neg(self)
    }
}

impl<'t, T: Float> Neg for &Var<'t, T> {
    type Output = Result<Var<'t, T>>;
    /// `Var::neg`.
    fn neg(self) -> Self::Output {
        Var::neg(*self)
    }
}

/// `number ⊕ Var` for the two element types (a blanket impl over `T` is not allowed for a foreign
/// left-hand type).
macro_rules! number_operator {
    ($t:ty) => {
        impl<'t> Add<Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.add_scalar(c)`.
            fn add(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.add_scalar(self)
            }
        }

        impl<'t> Add<&Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.add_scalar(c)`.
            fn add(self, rhs: &Var<'t, $t>) -> Self::Output {
                rhs.add_scalar(self)
            }
        }

        impl<'t> Sub<Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.neg()?.add_scalar(c)`: c − x.
            fn sub(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.neg()?.add_scalar(self)
            }
        }

        impl<'t> Sub<&Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.neg()?.add_scalar(c)`: c − x.
            fn sub(self, rhs: &Var<'t, $t>) -> Self::Output {
                rhs.neg()?.add_scalar(self)
            }
        }

        impl<'t> Mul<Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.mul_scalar(c)`.
            fn mul(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.mul_scalar(self)
            }
        }

        impl<'t> Mul<&Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.mul_scalar(c)`.
            fn mul(self, rhs: &Var<'t, $t>) -> Self::Output {
                rhs.mul_scalar(self)
            }
        }

        impl<'t> Div<Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.reciprocal()?.mul_scalar(c)`, as PyTorch's `c / x`.
            fn div(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.reciprocal()?.mul_scalar(self)
            }
        }

        impl<'t> Div<&Var<'t, $t>> for $t {
            type Output = Result<Var<'t, $t>>;
            /// `x.reciprocal()?.mul_scalar(c)`, as PyTorch's `c / x`.
            fn div(self, rhs: &Var<'t, $t>) -> Self::Output {
                rhs.reciprocal()?.mul_scalar(self)
            }
        }
    };
}

number_operator!(f32);
number_operator!(f64);
