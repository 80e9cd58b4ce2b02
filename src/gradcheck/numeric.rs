//! Numeric derivatives of one coordinate: the difference schemes, the automatic step choice and
//! the diagnosis of kinks. Everything here sees the function only through `eval(x′)`, the outputs
//! (flattened end to end) with the one coordinate set to x′, so the plain checker, the model checker
//! and the hand-written-gradient checker share it.

use crate::error::Result;

/// How [`gradcheck`](crate::gradcheck()) estimates a derivative numerically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Difference {
    /// `(f(x+ε) − f(x−ε)) / 2ε`: error O(ε²), two evaluations per element. PyTorch's scheme (the
    /// default).
    #[default]
    Central,
    /// `(−f(x+2ε) + 8f(x+ε) − 8f(x−ε) + f(x−2ε)) / 12ε`: error O(ε⁴), four evaluations per element.
    /// It is one Richardson extrapolation of the central difference, `(4·D(ε) − D(2ε)) / 3`, which
    /// cancels the ε² term of its error.
    Central4,
    /// Per element, the 4th-order scheme over a sweep of steps `h = ε·s·10ᵏ`, k = 4, 3, 2, 1, 0,
    /// with `s = max(1, |x|)` so that a large input gets a proportionally large step; the estimate
    /// kept is the one of the adjacent pair of steps that agree best (the plateau between
    /// truncation error at large steps and rounding error at small ones), and their difference is
    /// reported as the estimate's error. Twenty evaluations per element.
    Auto,
}

impl Difference {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Difference::Central => "central (2nd order)",
            Difference::Central4 => "central (4th order)",
            Difference::Auto => "auto step (4th order, step sweep)",
        }
    }
}

/// One numeric column of a Jacobian: the derivative of every output with respect to one input
/// element, the step it was taken with, and an estimate of its own error (0 unless the scheme can
/// estimate it).
#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub values: Vec<f64>,
    pub step: f64,
    pub error_estimate: f64,
}

/// The derivative of every output with respect to the coordinate at `x`, by `scheme` with base
/// step `eps`. `eval(x′)` returns the outputs with the coordinate set to x′.
pub(crate) fn column(
    eval: &mut dyn FnMut(f64) -> Result<Vec<f64>>,
    x: f64,
    eps: f64,
    scheme: Difference,
) -> Result<Column> {
    match scheme {
        Difference::Central => Ok(Column {
            values: central(eval, x, eps)?,
            step: eps,
            error_estimate: 0.0,
        }),
        Difference::Central4 => Ok(Column {
            values: central4(eval, x, eps)?,
            step: eps,
            error_estimate: 0.0,
        }),
        Difference::Auto => {
            let scale = x.abs().max(1.0);
            let steps: Vec<f64> = [1e4, 1e3, 1e2, 1e1, 1.0]
                .iter()
                .map(|k| eps * scale * k)
                .collect();
            let estimates = steps
                .iter()
                .map(|&h| central4(eval, x, h))
                .collect::<Result<Vec<_>>>()?;
            // The adjacent pair that agrees best: the plateau of the error-versus-step curve.
            let mut best = (f64::INFINITY, estimates.len() - 1);
            for k in 0..estimates.len() - 1 {
                let gap = estimates[k]
                    .iter()
                    .zip(&estimates[k + 1])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                if gap < best.0 {
                    best = (gap, k + 1);
                }
            }
            let (gap, k) = best;
            Ok(Column {
                values: estimates[k].clone(),
                step: steps[k],
                error_estimate: if gap.is_finite() { gap } else { 0.0 },
            })
        }
    }
}

fn central(eval: &mut dyn FnMut(f64) -> Result<Vec<f64>>, x: f64, h: f64) -> Result<Vec<f64>> {
    let plus = eval(x + h)?;
    let minus = eval(x - h)?;
    Ok(plus
        .iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * h))
        .collect())
}

fn central4(eval: &mut dyn FnMut(f64) -> Result<Vec<f64>>, x: f64, h: f64) -> Result<Vec<f64>> {
    let p1 = eval(x + h)?;
    let m1 = eval(x - h)?;
    let p2 = eval(x + 2.0 * h)?;
    let m2 = eval(x - 2.0 * h)?;
    Ok((0..p1.len())
        .map(|j| (-p2[j] + 8.0 * p1[j] - 8.0 * m1[j] + m2[j]) / (12.0 * h))
        .collect())
}

/// The one-sided slopes just outside `[x − h, x + h]`: over `[x − 2h, x − h]` (left) and
/// `[x + h, x + 2h]` (right), and the central difference across it. If a kink lies within h of x,
/// neither one-sided interval contains it, so they measure the two pure slopes.
pub(crate) struct Sides {
    pub left: Vec<f64>,
    pub right: Vec<f64>,
    pub across: Vec<f64>,
}

pub(crate) fn sides(
    eval: &mut dyn FnMut(f64) -> Result<Vec<f64>>,
    x: f64,
    h: f64,
) -> Result<Sides> {
    let m2 = eval(x - 2.0 * h)?;
    let m1 = eval(x - h)?;
    let p1 = eval(x + h)?;
    let p2 = eval(x + 2.0 * h)?;
    let slope = |a: &[f64], b: &[f64], width: f64| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| (b - a) / width).collect()
    };
    Ok(Sides {
        left: slope(&m2, &m1, h),
        right: slope(&p1, &p2, h),
        across: slope(&m1, &p1, 2.0 * h),
    })
}

/// Where the kink lies relative to x, for a function with slope `left` before it and `right` after
/// it whose central difference over `[x − h, x + h]` is `across`: with the kink at x + c,
/// `2h·across = left·(h + c) + right·(h − c)`, so `c = (2h·across − h·(left + right)) / (left − right)`.
pub(crate) fn kink_offset(left: f64, right: f64, across: f64, h: f64) -> f64 {
    (2.0 * h * across - h * (left + right)) / (left - right)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_of(f: impl Fn(f64) -> f64) -> impl FnMut(f64) -> Result<Vec<f64>> {
        move |x| Ok(vec![f(x)])
    }

    #[test]
    fn the_fourth_order_scheme_is_exact_on_a_quartic_where_the_second_order_is_not() {
        // f = x⁴: central difference error is ε²·f‴/6 = 4xε², the 4th-order one is exact up to
        // rounding (its error term involves f⁽⁵⁾ = 0).
        let f = |x: f64| x.powi(4);
        let (x, h) = (1.5, 1e-2);
        let exact = 4.0 * x * x * x;
        let c2 = column(&mut eval_of(f), x, h, Difference::Central).unwrap();
        let c4 = column(&mut eval_of(f), x, h, Difference::Central4).unwrap();
        assert!((c2.values[0] - exact).abs() > 1e-4);
        assert!((c4.values[0] - exact).abs() < 1e-9, "{}", c4.values[0]);
    }

    #[test]
    fn the_step_sweep_handles_a_badly_scaled_input() {
        // f = sin(x/1e4) at x = 3e4: a fixed step of 1e-6 is fine here, but the sweep must find a
        // step whose estimate agrees with cos(3)/1e4 to many digits, and estimate its error.
        let f = |x: f64| (x / 1e4).sin();
        let c = column(&mut eval_of(f), 3e4, 1e-6, Difference::Auto).unwrap();
        let exact = (3.0f64).cos() / 1e4;
        assert!((c.values[0] - exact).abs() < 1e-12, "{}", c.values[0]);
        assert!(c.error_estimate < 1e-10);
    }

    #[test]
    fn a_kink_is_located() {
        // |x − 0.3| at x = 0.3 + 2e-7, h = 1e-6: slopes −1 and 1, the kink 2e-7 to the left.
        let f = |x: f64| (x - 0.3).abs();
        let x = 0.3 + 2e-7;
        let s = sides(&mut eval_of(f), x, 1e-6).unwrap();
        assert!((s.left[0] + 1.0).abs() < 1e-6 && (s.right[0] - 1.0).abs() < 1e-6);
        let c = kink_offset(s.left[0], s.right[0], s.across[0], 1e-6);
        assert!((c + 2e-7).abs() < 1e-9, "{c}");
    }
}
