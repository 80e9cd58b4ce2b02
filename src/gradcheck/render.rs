//! A gradient-check report as JSON (for CI systems) and as an SVG heat map of |analytic − numeric|.

use plotters::prelude::*;
use serde_json::{Value, json};

use super::{GradcheckReport, InputCheck, JacobianPair};
use crate::error::{Error, Result};

/// Largest number of cells drawn along either axis of a heat map; larger Jacobians are shown by
/// blocks, each the largest error of the entries it covers (so a single bad entry still shows).
const MAX_CELLS: usize = 160;
/// Width and height of the drawing area of one panel, in pixels.
const PANEL: u32 = 360;

impl GradcheckReport {
    /// The report as a JSON value: the options, and per input its verdict, errors, worst entry
    /// (with `ratio`, its error over the allowed error) and kinks; in full mode also both
    /// Jacobians, row-major. Non-finite numbers (a NaN error) are written as `null`, as JSON has
    /// no NaN.
    ///
    /// ```
    /// use tapegrad::{gradcheck, GradcheckOptions, Tensor};
    /// let x = Tensor::from_vec(vec![0.5, -1.0], &[2])?;
    /// let report = gradcheck(|_, v, _| v[0].tanh(), &[x], &GradcheckOptions::default())?;
    /// let json = report.to_json();
    /// assert_eq!(json["passed"], true);
    /// assert_eq!(json["inputs"][0]["dims"][0], 2);
    /// assert_eq!(json["jacobians"][0]["rows"], 2);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn to_json(&self) -> Value {
        let inputs: Vec<Value> = self.inputs.iter().map(|c| self.input_json(c)).collect();
        let jacobians: Vec<Value> = self.jacobians.iter().map(jacobian_json).collect();
        json!({
            "passed": self.passed(),
            "atol": self.atol,
            "rtol": self.rtol,
            "eps": self.eps,
            "scheme": self.scheme.name(),
            "fast": self.fast,
            "inputs": inputs,
            "jacobians": jacobians,
        })
    }

    fn input_json(&self, c: &InputCheck) -> Value {
        let worst = c.worst.as_ref().map(|w| {
            let abs = (w.analytic - w.numeric).abs();
            json!({
                "input_index": w.input_index,
                "output_index": w.output_index,
                "analytic": w.analytic,
                "numeric": w.numeric,
                "abs_err": abs,
                "ratio": abs / (self.atol + self.rtol * w.numeric.abs()),
            })
        });
        let kinks: Vec<Value> = c
            .kinks
            .iter()
            .map(|k| {
                json!({
                    "input_index": k.input_index,
                    "output_index": k.output_index,
                    "analytic": k.analytic,
                    "left": k.left,
                    "right": k.right,
                    "offset": k.offset,
                })
            })
            .collect();
        json!({
            "input": c.input,
            "dims": c.dims,
            "passed": c.passed,
            "max_abs_err": c.max_abs_err,
            "max_rel_err": c.max_rel_err,
            "max_numeric_error": c.max_numeric_error,
            "worst": worst,
            "kinks": kinks,
        })
    }

    /// [`GradcheckReport::to_json`] as pretty-printed text.
    pub fn to_json_string(&self) -> String {
        // Serialising a `Value` cannot fail (its keys are strings); fall back to compact text.
        serde_json::to_string_pretty(&self.to_json()).unwrap_or_else(|_| self.to_json().to_string())
    }

    /// An SVG heat map of |analytic − numeric| over each input's Jacobian (one panel per input:
    /// input elements across, output elements down), on a log colour scale from dark blue (tiny)
    /// through green and yellow to red; entries out of tolerance are framed in black. Jacobians
    /// larger than 160 along an axis are shown in blocks, each the largest error it covers.
    ///
    /// Fails with [`Error::InvalidArgument`] for a fast-mode report (it has no Jacobians).
    ///
    /// ```
    /// use tapegrad::{gradcheck, GradcheckOptions, Tensor};
    /// let x = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3])?;
    /// let report = gradcheck(|_, v, _| v[0].softmax(), &[x], &GradcheckOptions::default())?;
    /// let svg = report.heatmap_svg()?;
    /// assert!(svg.starts_with("<svg") && svg.contains("<rect"));
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn heatmap_svg(&self) -> Result<String> {
        if self.fast || self.jacobians.is_empty() {
            return Err(Error::InvalidArgument {
                op: "heatmap_svg",
                reason: "a heat map needs the Jacobians of a full-mode check (fast: false)".into(),
            });
        }
        let panels = self.jacobians.len() as u32;
        let (width, height) = (PANEL + 220, (PANEL + 70) * panels + 10);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_error)?;
            for (p, jac) in self.jacobians.iter().enumerate() {
                let top = 10 + p as i32 * (PANEL as i32 + 70);
                self.draw_panel(&root, jac, top).map_err(draw_error)?;
            }
            root.present().map_err(draw_error)?;
        }
        Ok(svg)
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
        jac: &JacobianPair,
        top: i32,
    ) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let dims = self
            .inputs
            .get(jac.input)
            .map(|c| format!("{:?}", c.dims))
            .unwrap_or_default();
        let errors: Vec<f64> = jac
            .analytic
            .iter()
            .zip(&jac.numeric)
            .map(|(a, n)| (a - n).abs())
            .collect();
        let failing: Vec<bool> = jac
            .numeric
            .iter()
            .zip(&errors)
            .map(|(n, e)| e.is_nan() || *e > self.atol + self.rtol * n.abs())
            .collect();
        let max = errors.iter().fold(
            0.0f64,
            |m, &e| if e.is_nan() { f64::INFINITY } else { m.max(e) },
        );
        let title = format!(
            "input {} {dims}: |analytic - numeric|, {} x {} (outputs x inputs), max {max:.2e}",
            jac.input, jac.rows, jac.cols
        );
        root.draw(&Text::new(
            title,
            (10, top),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))?;
        // The colour scale: log10 of the error, from 1e-16 (or the smallest error) to the
        // larger of the largest error and the absolute tolerance.
        let lo = -16.0f64;
        let hi = max.max(self.atol).max(1e-15).log10().min(300.0);
        let colour = |e: f64| -> RGBColor {
            if !e.is_finite() {
                return RGBColor(255, 0, 255);
            }
            let t = ((e.max(1e-300).log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
            ramp(t)
        };
        let (rows, cols) = (jac.rows.max(1), jac.cols.max(1));
        let (brows, bcols) = (rows.min(MAX_CELLS), cols.min(MAX_CELLS));
        let cell = (PANEL as f64 / brows.max(bcols) as f64).max(1.0);
        let (x0, y0) = (10.0, top as f64 + 20.0);
        for br in 0..brows {
            let (r0, r1) = (
                br * rows / brows,
                ((br + 1) * rows / brows).max(br * rows / brows + 1),
            );
            for bc in 0..bcols {
                let (c0, c1) = (
                    bc * cols / bcols,
                    ((bc + 1) * cols / bcols).max(bc * cols / bcols + 1),
                );
                let mut worst = 0.0f64;
                let mut bad = false;
                for r in r0..r1.min(jac.rows) {
                    for c in c0..c1.min(jac.cols) {
                        let e = errors[r * jac.cols + c];
                        worst = if e.is_nan() { f64::NAN } else { worst.max(e) };
                        bad |= failing[r * jac.cols + c];
                    }
                }
                let (x, y) = (x0 + bc as f64 * cell, y0 + br as f64 * cell);
                let corners = [(x as i32, y as i32), ((x + cell) as i32, (y + cell) as i32)];
                root.draw(&Rectangle::new(corners, colour(worst).filled()))?;
                if bad {
                    root.draw(&Rectangle::new(corners, BLACK.stroke_width(1)))?;
                }
            }
        }
        // The legend: the colour ramp with its decades.
        let lx = (x0 + PANEL as f64 + 30.0) as i32;
        let steps = 64;
        for s in 0..steps {
            let t = s as f64 / (steps - 1) as f64;
            let y = y0 as i32 + PANEL as i32 - (s + 1) * PANEL as i32 / steps;
            root.draw(&Rectangle::new(
                [(lx, y), (lx + 18, y + PANEL as i32 / steps + 1)],
                ramp(t).filled(),
            ))?;
        }
        for (t, label) in [
            (0.0, format!("1e{lo:.0}")),
            (
                ((self.atol.max(1e-300).log10() - lo) / (hi - lo)).clamp(0.0, 1.0),
                format!("atol {:.0e}", self.atol),
            ),
            (1.0, format!("{:.1e}", 10f64.powf(hi))),
        ] {
            let y = y0 as i32 + PANEL as i32 - (t * PANEL as f64) as i32;
            root.draw(&Text::new(
                label,
                (lx + 24, y - 6),
                ("sans-serif", 12).into_font().color(&BLACK),
            ))?;
        }
        root.draw(&Text::new(
            "framed: out of tolerance",
            (lx - 10, y0 as i32 + PANEL as i32 + 8),
            ("sans-serif", 12).into_font().color(&BLACK),
        ))?;
        Ok(())
    }
}

fn jacobian_json(j: &JacobianPair) -> Value {
    json!({
        "input": j.input,
        "rows": j.rows,
        "cols": j.cols,
        "analytic": j.analytic,
        "numeric": j.numeric,
    })
}

/// Dark blue → teal → green → yellow → red, for t in `[0, 1]`.
fn ramp(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [20.0, 30.0, 90.0]),
        (0.35, [30.0, 130.0, 140.0]),
        (0.6, [90.0, 190.0, 80.0]),
        (0.8, [240.0, 220.0, 40.0]),
        (1.0, [220.0, 30.0, 30.0]),
    ];
    let k = STOPS
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(STOPS.len() - 2);
    let ((t0, c0), (t1, c1)) = (STOPS[k], STOPS[k + 1]);
    let u = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
    let mix = |i: usize| (c0[i] + u * (c1[i] - c0[i])).round() as u8;
    RGBColor(mix(0), mix(1), mix(2))
}

fn draw_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::InvalidArgument {
        op: "heatmap_svg",
        reason: format!("drawing failed: {e}"),
    }
}
