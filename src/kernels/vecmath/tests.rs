//! Accuracy of the vector math kernels, measured in ulps against references of higher precision,
//! on every instruction set this machine has (the baseline path without FMA always included).
//!
//! - f32: the f64 function (std, the `libm` crate, or an f64 formula that is exact enough) is the
//!   reference. Every 97th bit pattern of f32 (all of them, 2³², with `cargo test --release --lib
//!   vecmath -- --ignored`), plus ±2000 ulps around each breakpoint of the algorithms.
//! - f64: the values of `tests/golden/vecmath_f64.safetensors`, computed with mpmath in 160-bit
//!   arithmetic by `tests/golden/vecmath.py`; plus random values against std/libm.
//!
//! Two error measures: `ulps` is the distance, in representable values, from the result to the
//! reference rounded to the type (0 = correctly rounded; the bound asserted is 2); `exact` is
//! |result − reference| / ulp(reference) with the unrounded reference (what is usually quoted as
//! "max ulp error"). The derivative kernels have interior zeros (gelu′ at x ≈ −0.75), where no
//! relative bound holds: their error is measured relative to max(|f′|, 2⁻⁴·φ-scale), see
//! [`Tolerance`]. Run with `--nocapture` to see the table.

use std::fmt;

use pulp::Arch;
use pulp::x86::{V3, V4};
use rayon::prelude::*;

use super::{Derivative, Function, map_derivative_with, map_in_place_with, map_with};

/// Instruction sets to test: the baseline (no FMA) always, AVX2+FMA and AVX-512 if present.
fn arches() -> Vec<(&'static str, Arch)> {
    let mut arches = vec![("scalar", Arch::Scalar)];
    if let Some(simd) = V3::try_new() {
        arches.push(("avx2", Arch::V3(simd)));
    }
    if let Some(simd) = V4::try_new() {
        arches.push(("avx512", Arch::V4(simd)));
    }
    arches
}

/// Every `STRIDE`-th f32 bit pattern is tested (97 is prime, so all exponents and many mantissa
/// patterns are hit). Debug builds are ~50× slower: they test fewer.
const STRIDE: u64 = if cfg!(debug_assertions) { 9973 } else { 97 };

/// The order of f32 values as integers (−0 and +0 both 0), for distances in ulps.
fn ordered_f32(x: f32) -> i64 {
    let bits = x.to_bits();
    if bits >> 31 == 1 {
        -i64::from(bits & 0x7fff_ffff)
    } else {
        i64::from(bits)
    }
}

fn ordered_f64(x: f64) -> i128 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        -i128::from(bits & 0x7fff_ffff_ffff_ffff)
    } else {
        i128::from(bits)
    }
}

/// 2^e exactly (e ≥ −1074).
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1 << (e + 1074))
    }
}

/// The spacing of f32 values at |r| (2⁻¹⁴⁹ in the subnormal range).
fn ulp_f32(r: f64) -> f64 {
    let exponent = ((r.abs().to_bits() >> 52) as i32 - 1023).max(-126);
    pow2(exponent - 23)
}

/// The spacing of f64 values at |r| (2⁻¹⁰⁷⁴ in the subnormal range).
fn ulp_f64(r: f64) -> f64 {
    let exponent = ((r.abs().to_bits() >> 52) as i32 - 1023).max(-1022);
    pow2(exponent - 52)
}

/// How an error is scaled: relative to the reference (ulps of it) or, for functions with interior
/// zeros, relative to max(|reference|, floor(x)).
#[derive(Clone, Copy)]
enum Tolerance {
    Relative,
    /// Ulps of max(|f(x)|, floor(x)).
    Floor(fn(f64) -> f64),
}

/// The worst errors of one kernel on one instruction set.
#[derive(Clone, Copy, Default)]
struct Worst {
    ulps: f64,
    ulps_at: f64,
    exact: f64,
    exact_at: f64,
    count: u64,
}

impl Worst {
    fn merge(self, other: Worst) -> Worst {
        let mut merged = if self.ulps >= other.ulps {
            self
        } else {
            Worst {
                ulps: other.ulps,
                ulps_at: other.ulps_at,
                ..self
            }
        };
        if other.exact > merged.exact {
            merged.exact = other.exact;
            merged.exact_at = other.exact_at;
        }
        merged.count = self.count + other.count;
        merged
    }
}

impl fmt::Display for Worst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>4} ulp (at {:e}), {:.3} ulp exact (at {:e}), {} values",
            self.ulps, self.ulps_at, self.exact, self.exact_at, self.count
        )
    }
}

/// Compares one f32 result with the f64 reference. Panics if a special value is wrong.
fn error_f32(x: f32, y: f32, reference: f64, tolerance: Tolerance, what: &str) -> (f64, f64) {
    let rounded = reference as f32;
    if reference.is_nan() || rounded.is_infinite() || y.is_nan() || y.is_infinite() {
        let same = (y.is_nan() && reference.is_nan()) || y == rounded;
        assert!(same, "{what}({x:e}) = {y:e}, expected {reference:e}");
        return (0.0, 0.0);
    }
    let scale = match tolerance {
        Tolerance::Relative => reference.abs(),
        Tolerance::Floor(floor) => reference.abs().max(floor(f64::from(x))),
    };
    let ulp = ulp_f32(scale).max(ulp_f32(0.0));
    let exact = (f64::from(y) - reference).abs() / ulp;
    let distance = (ordered_f32(y) - ordered_f32(rounded)).unsigned_abs() as f64;
    // For a floored scale, the distance in representable values near 0 overstates the error.
    let ulps = distance.min(((f64::from(y) - f64::from(rounded)).abs() / ulp).round());
    (ulps, exact)
}

/// A kernel under test, run on one instruction set: (arch, x, out).
type Run<'a> = &'a (dyn Fn(Arch, &[f32], &mut [f32]) + Sync);

/// The inputs of a sweep: every `stride`-th f32 bit pattern (NaNs and infinities included),
/// generated block by block, plus ±2000 values around each breakpoint and its negation.
struct Inputs {
    stride: u64,
    extra: Vec<f32>,
}

const BLOCK: u64 = 1 << 14;

impl Inputs {
    fn new(stride: u64, breakpoints: &[f32]) -> Inputs {
        let mut extra = Vec::new();
        for &b in breakpoints {
            for b in [b, -b] {
                let centre = b.to_bits();
                for offset in 0..2000u32 {
                    extra.push(f32::from_bits(centre.wrapping_add(offset)));
                    extra.push(f32::from_bits(centre.wrapping_sub(offset)));
                }
            }
        }
        Inputs { stride, extra }
    }

    fn blocks(&self) -> u64 {
        (1u64 << 32).div_ceil(self.stride).div_ceil(BLOCK)
            + self.extra.len().div_ceil(BLOCK as usize) as u64
    }

    fn block(&self, index: u64) -> Vec<f32> {
        let strided_blocks = (1u64 << 32).div_ceil(self.stride).div_ceil(BLOCK);
        if index < strided_blocks {
            (index * BLOCK..((index + 1) * BLOCK))
                .map(|k| k * self.stride)
                .take_while(|&bits| bits < 1 << 32)
                .map(|bits| f32::from_bits(bits as u32))
                .collect()
        } else {
            self.extra
                .chunks(BLOCK as usize)
                .nth((index - strided_blocks) as usize)
                .map_or_else(Vec::new, <[f32]>::to_vec)
        }
    }
}

/// Runs `run` on every instruction set over `inputs` and compares with `reference`.
fn sweep_f32(
    what: &str,
    run: Run<'_>,
    reference: &(dyn Fn(f32) -> f64 + Sync),
    tolerance: Tolerance,
    inputs: &Inputs,
) -> Vec<(&'static str, Worst)> {
    let arches = arches();
    (0..inputs.blocks())
        .into_par_iter()
        .map(|index| {
            let xs = inputs.block(index);
            let references: Vec<f64> = xs.iter().map(|&x| reference(x)).collect();
            let mut ys = vec![0.0f32; xs.len()];
            arches
                .iter()
                .map(|&(_, arch)| {
                    run(arch, &xs, &mut ys);
                    let mut worst = Worst::default();
                    for ((&x, &y), &r) in xs.iter().zip(&ys).zip(&references) {
                        let (ulps, exact) = error_f32(x, y, r, tolerance, what);
                        worst = worst.merge(Worst {
                            ulps,
                            ulps_at: f64::from(x),
                            exact,
                            exact_at: f64::from(x),
                            count: 1,
                        });
                    }
                    worst
                })
                .collect::<Vec<_>>()
        })
        .reduce(
            || vec![Worst::default(); arches.len()],
            |a, b| a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect(),
        )
        .into_iter()
        .zip(&arches)
        .map(|(worst, &(name, _))| (name, worst))
        .collect()
}

/// Prints the table lines; returns the lines over the bound.
fn report(name: &str, results: &[(&'static str, Worst)], bound: f64) -> Vec<String> {
    let mut failures = Vec::new();
    for (arch, worst) in results {
        println!("{name:>22} f32 {arch:>7}: {worst}");
        if worst.ulps > bound {
            failures.push(format!("{name} on {arch}: {worst} (bound {bound} ulp)"));
        }
    }
    failures
}

fn forward_run(f: Function<f32>) -> impl Fn(Arch, &[f32], &mut [f32]) + Sync {
    move |arch, x, out| map_with(arch, f, x, out)
}

fn derivative_run(f: Derivative<f32>) -> impl Fn(Arch, &[f32], &mut [f32]) + Sync {
    move |arch, x, out| {
        let ones = vec![1.0f32; x.len()];
        map_derivative_with(arch, f, x, &ones, out);
    }
}

// ----------------------------------------------------------------------------------------------
// f32 references.

const SQRT_2: f64 = std::f64::consts::SQRT_2;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

fn sigmoid_f64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// x·Φ(x) through erfc, accurate in the left tail.
fn gelu_f64(x: f64) -> f64 {
    0.5 * x * libm::erfc(-x / SQRT_2)
}

fn gelu_derivative_f64(x: f64) -> f64 {
    0.5 * libm::erfc(-x / SQRT_2) + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
}

/// 2u for GELU's tanh approximation, in f64 (exact enough for an f32 reference).
fn gelu_tanh_argument_f64(x: f64) -> f64 {
    2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)
}

fn gelu_tanh_f64(x: f64) -> f64 {
    x * sigmoid_f64(gelu_tanh_argument_f64(x))
}

fn gelu_tanh_derivative_f64(x: f64) -> f64 {
    let z = gelu_tanh_argument_f64(x);
    let s = sigmoid_f64(z);
    let slope = 2.0 * (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 3.0 * 0.044715 * x * x);
    s + x * slope * s * sigmoid_f64(-z)
}

/// PyTorch's softplus: the branch is taken on β·x rounded to the type.
fn softplus_f64(x: f32, beta: f32, threshold: f32) -> f64 {
    if x * beta > threshold {
        f64::from(x)
    } else {
        let t = f64::from(x) * f64::from(beta);
        let log_term = if t > 0.0 {
            t + (-t).exp().ln_1p()
        } else {
            t.exp().ln_1p()
        };
        log_term / f64::from(beta)
    }
}

fn softplus_derivative_f64(x: f32, beta: f32, threshold: f32) -> f64 {
    if x * beta > threshold {
        1.0
    } else {
        sigmoid_f64(f64::from(x) * f64::from(beta))
    }
}

/// The f32 cases: (name, kernel, reference, tolerance, breakpoints).
type Case = (
    &'static str,
    Box<dyn Fn(Arch, &[f32], &mut [f32]) + Sync>,
    Box<dyn Fn(f32) -> f64 + Sync>,
    Tolerance,
    Vec<f32>,
);

fn f32_cases() -> Vec<Case> {
    let softplus_params: [(f32, f32); 4] = [(1.0, 20.0), (2.5, 20.0), (0.3, 5.0), (-1.5, 20.0)];
    let mut cases: Vec<Case> = vec![
        (
            "exp",
            Box::new(forward_run(Function::Exp)),
            Box::new(|x| f64::from(x).exp()),
            Tolerance::Relative,
            vec![88.72284, 87.33654, 103.27893, 0.346_573_6, 1.0],
        ),
        (
            "log",
            Box::new(forward_run(Function::Log)),
            Box::new(|x| f64::from(x).ln()),
            Tolerance::Relative,
            vec![
                1.0,
                std::f32::consts::FRAC_1_SQRT_2,
                std::f32::consts::SQRT_2,
                f32::MIN_POSITIVE,
            ],
        ),
        (
            "tanh",
            Box::new(forward_run(Function::Tanh)),
            Box::new(|x| f64::from(x).tanh()),
            Tolerance::Relative,
            vec![0.625, 9.0, 9.5],
        ),
        (
            "sigmoid",
            Box::new(forward_run(Function::Sigmoid)),
            Box::new(|x| sigmoid_f64(f64::from(x))),
            Tolerance::Relative,
            vec![0.0, 87.33654, 103.27893, 16.635532],
        ),
        (
            "erf",
            Box::new(forward_run(Function::Erf)),
            Box::new(|x| libm::erf(f64::from(x))),
            Tolerance::Relative,
            vec![0.75, 3.9, 10.5],
        ),
        (
            "gelu",
            Box::new(forward_run(Function::Gelu)),
            Box::new(|x| gelu_f64(f64::from(x))),
            Tolerance::Relative,
            vec![0.0, 14.2, 14.8],
        ),
        (
            "gelu_tanh",
            Box::new(forward_run(Function::GeluTanh)),
            Box::new(|x| gelu_tanh_f64(f64::from(x))),
            Tolerance::Relative,
            vec![0.0, 11.5, 12.0],
        ),
        (
            "erf_backward",
            Box::new(derivative_run(Derivative::Erf)),
            Box::new(|x| std::f64::consts::FRAC_2_SQRT_PI * (-f64::from(x) * f64::from(x)).exp()),
            Tolerance::Relative,
            vec![10.0, 10.5],
        ),
        (
            "gelu_backward",
            Box::new(derivative_run(Derivative::Gelu)),
            Box::new(|x| gelu_derivative_f64(f64::from(x))),
            // The two terms Φ(x) and x·φ(x) cancel at x ≈ −0.7518: ulps of their size there.
            Tolerance::Floor(|x| {
                (0.5 * libm::erfc(-x / SQRT_2))
                    .max(x.abs() * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp())
            }),
            vec![0.0, 0.7517916, 14.5, 14.8],
        ),
        (
            "gelu_tanh_backward",
            Box::new(derivative_run(Derivative::GeluTanh)),
            Box::new(|x| gelu_tanh_derivative_f64(f64::from(x))),
            Tolerance::Floor(|x| {
                let z = gelu_tanh_argument_f64(x);
                let slope =
                    2.0 * (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 3.0 * 0.044715 * x * x);
                sigmoid_f64(z).max((x * slope * sigmoid_f64(z) * sigmoid_f64(-z)).abs())
            }),
            vec![0.0, 0.7525, 12.0],
        ),
    ];
    for (beta, threshold) in softplus_params {
        let breakpoints = vec![threshold / beta, 0.0, 103.0 / beta.abs()];
        cases.push((
            "softplus",
            Box::new(move |arch, x, out| {
                map_with(arch, Function::Softplus { beta, threshold }, x, out)
            }),
            Box::new(move |x| softplus_f64(x, beta, threshold)),
            Tolerance::Relative,
            breakpoints.clone(),
        ));
        cases.push((
            "softplus_backward",
            Box::new(move |arch, x, out| {
                let ones = vec![1.0f32; x.len()];
                map_derivative_with(
                    arch,
                    Derivative::Softplus { beta, threshold },
                    x,
                    &ones,
                    out,
                )
            }),
            Box::new(move |x| softplus_derivative_f64(x, beta, threshold)),
            Tolerance::Relative,
            breakpoints,
        ));
    }
    cases
}

fn check_f32(stride: u64) {
    let mut failures = Vec::new();
    for (name, run, reference, tolerance, breakpoints) in f32_cases() {
        let inputs = Inputs::new(stride, &breakpoints);
        let results = sweep_f32(name, &*run, &*reference, tolerance, &inputs);
        failures.extend(report(name, &results, 2.0));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `STRIDE`-th f32 bit pattern; `TAPEGRAD_VECMATH_STRIDE=1 cargo test --release --lib
/// vecmath` checks all 2³² per function (minutes in release).
#[test]
fn f32_within_2_ulps_on_a_dense_sweep() {
    let stride = std::env::var("TAPEGRAD_VECMATH_STRIDE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s >= 1)
        .unwrap_or(STRIDE);
    check_f32(stride);
}

// ----------------------------------------------------------------------------------------------
// f64 against mpmath.

/// The kernel a golden case name stands for (see `tests/golden/vecmath.py`).
/// A kernel of the f64 golden test: (arch, x, out).
type Kernel64 = Box<dyn Fn(Arch, &[f64], &mut [f64])>;

fn golden_kernel(name: &str) -> Kernel64 {
    let softplus = |beta: f64, threshold: f64| -> Kernel64 {
        Box::new(move |arch, x, out| map_with(arch, Function::Softplus { beta, threshold }, x, out))
    };
    let derivative = |f: Derivative<f64>| -> Kernel64 {
        Box::new(move |arch, x, out| {
            let ones = vec![1.0; x.len()];
            map_derivative_with(arch, f, x, &ones, out)
        })
    };
    let forward =
        |f: Function<f64>| -> Kernel64 { Box::new(move |arch, x, out| map_with(arch, f, x, out)) };
    match name {
        "exp" => forward(Function::Exp),
        "log" => forward(Function::Log),
        "tanh" => forward(Function::Tanh),
        "sigmoid" => forward(Function::Sigmoid),
        "erf" => forward(Function::Erf),
        "gelu" => forward(Function::Gelu),
        "gelu_tanh" => forward(Function::GeluTanh),
        "softplus_b1_t20" => softplus(1.0, 20.0),
        "softplus_b2.5_t20" => softplus(2.5, 20.0),
        "softplus_b0.3_t5" => softplus(0.3, 5.0),
        "erf_backward" => derivative(Derivative::Erf),
        "gelu_backward" => derivative(Derivative::Gelu),
        "gelu_tanh_backward" => derivative(Derivative::GeluTanh),
        "softplus_backward_b1_t20" => derivative(Derivative::Softplus {
            beta: 1.0,
            threshold: 20.0,
        }),
        _ => panic!("no kernel for golden case {name}"),
    }
}

/// Scales of the derivative errors near their zeros (as [`Tolerance::Floor`] for f32).
fn golden_floor(name: &str, x: f64) -> f64 {
    match name {
        "gelu_backward" => {
            (0.5 * libm::erfc(-x / SQRT_2)).max(x.abs() * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp())
        }
        "gelu_tanh_backward" => {
            let z = gelu_tanh_argument_f64(x);
            let slope = 2.0 * (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 3.0 * 0.044715 * x * x);
            sigmoid_f64(z).max((x * slope * sigmoid_f64(z) * sigmoid_f64(-z)).abs())
        }
        _ => 0.0,
    }
}

#[test]
fn f64_within_2_ulps_of_mpmath_3_for_derivatives() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/vecmath_f64.safetensors"
    );
    let bytes = std::fs::read(path).expect("tests/golden/vecmath_f64.safetensors");
    let golden = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let read = |key: &str| -> Vec<f64> {
        let view = golden.tensor(key).expect("every case has x, hi and lo");
        view.data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect()
    };
    let mut names: Vec<String> = golden
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix("/x").map(str::to_owned))
        .collect();
    names.sort();
    let mut failures = Vec::new();
    for name in &names {
        let (x, hi, lo) = (
            read(&format!("{name}/x")),
            read(&format!("{name}/hi")),
            read(&format!("{name}/lo")),
        );
        let kernel = golden_kernel(name);
        for (arch_name, arch) in arches() {
            let mut y = vec![0.0; x.len()];
            kernel(arch, &x, &mut y);
            let mut worst = Worst::default();
            for i in 0..x.len() {
                let (ulps, exact) = if hi[i].is_infinite() || y[i].is_infinite() {
                    assert_eq!(y[i], hi[i], "{name}({:e}) on {arch_name}", x[i]);
                    (0.0, 0.0)
                } else {
                    let scale = hi[i].abs().max(golden_floor(name, x[i]));
                    let ulp = ulp_f64(scale).max(ulp_f64(0.0));
                    let exact = ((y[i] - hi[i]) - lo[i]).abs() / ulp;
                    let distance = (ordered_f64(y[i]) - ordered_f64(hi[i])).unsigned_abs() as f64;
                    (distance.min(((y[i] - hi[i]).abs() / ulp).round()), exact)
                };
                worst = worst.merge(Worst {
                    ulps,
                    ulps_at: x[i],
                    exact,
                    exact_at: x[i],
                    count: 1,
                });
            }
            println!("{name:>24} f64 {arch_name:>7}: {worst}");
            // The derivative kernels are documented with a bound of 3 ulps (see mod.rs).
            let bound = if name.contains("backward") { 3.0 } else { 2.0 };
            if worst.ulps > bound {
                failures.push(format!("{name} on {arch_name}: {worst} (bound {bound})"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ----------------------------------------------------------------------------------------------
// Special values, in place, the public functions, parallel chunks.

const FUNCTIONS: [Function<f64>; 9] = [
    Function::Exp,
    Function::Log,
    Function::Tanh,
    Function::Sigmoid,
    Function::Erf,
    Function::Gelu,
    Function::GeluTanh,
    Function::Softplus {
        beta: 1.0,
        threshold: 20.0,
    },
    Function::Softplus {
        beta: 0.5,
        threshold: 10.0,
    },
];

fn to_f32(f: Function<f64>) -> Function<f32> {
    match f {
        Function::Exp => Function::Exp,
        Function::Log => Function::Log,
        Function::Tanh => Function::Tanh,
        Function::Sigmoid => Function::Sigmoid,
        Function::Erf => Function::Erf,
        Function::Gelu => Function::Gelu,
        Function::GeluTanh => Function::GeluTanh,
        Function::Softplus { beta, threshold } => Function::Softplus {
            beta: beta as f32,
            threshold: threshold as f32,
        },
    }
}

/// (function, x, expected): limits at ±∞, signs of zero, NaN.
fn special_cases() -> Vec<(Function<f64>, f64, f64)> {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let softplus = Function::Softplus {
        beta: 1.0,
        threshold: 20.0,
    };
    vec![
        (Function::Exp, -inf, 0.0),
        (Function::Exp, inf, inf),
        (Function::Exp, -0.0, 1.0),
        (Function::Exp, 1000.0, inf),
        (Function::Exp, -1000.0, 0.0),
        (Function::Log, 0.0, -inf),
        (Function::Log, -0.0, -inf),
        (Function::Log, -1.0, nan),
        (Function::Log, -inf, nan),
        (Function::Log, inf, inf),
        (Function::Log, 1.0, 0.0),
        (Function::Tanh, -0.0, -0.0),
        (Function::Tanh, inf, 1.0),
        (Function::Tanh, -inf, -1.0),
        (Function::Sigmoid, -inf, 0.0),
        (Function::Sigmoid, inf, 1.0),
        (Function::Sigmoid, -0.0, 0.5),
        (Function::Erf, -0.0, -0.0),
        (Function::Erf, inf, 1.0),
        (Function::Erf, -inf, -1.0),
        (Function::Gelu, -0.0, -0.0),
        (Function::Gelu, 0.0, 0.0),
        (Function::Gelu, inf, inf),
        (Function::Gelu, -inf, -0.0),
        (Function::Gelu, -1000.0, -0.0),
        (Function::GeluTanh, -0.0, -0.0),
        (Function::GeluTanh, inf, inf),
        (Function::GeluTanh, -inf, -0.0),
        (softplus, -inf, 0.0),
        (softplus, inf, inf),
        (softplus, 25.0, 25.0),
        (softplus, -0.0, std::f64::consts::LN_2),
    ]
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
}

#[test]
fn special_values_on_every_instruction_set() {
    for (arch_name, arch) in arches() {
        for (f, x, expected) in special_cases() {
            let mut y = [0.0f64];
            map_with(arch, f, &[x], &mut y);
            assert!(
                same(y[0], expected),
                "{f:?}({x}) = {} on {arch_name}, want {expected}",
                y[0]
            );
            let mut y = [0.0f32];
            map_with(arch, to_f32(f), &[x as f32], &mut y);
            assert!(
                same(f64::from(y[0]), f64::from(expected as f32)),
                "{f:?}({x}) = {} in f32 on {arch_name}, want {expected}",
                y[0]
            );
        }
        // NaN propagates through every function and derivative (both signs of NaN).
        for f in FUNCTIONS {
            for nan in [f64::NAN, -f64::NAN] {
                let mut y = [0.0f64];
                map_with(arch, f, &[nan], &mut y);
                assert!(y[0].is_nan(), "{f:?}(NaN) on {arch_name}");
                let mut y = [0.0f32];
                map_with(arch, to_f32(f), &[nan as f32], &mut y);
                assert!(y[0].is_nan(), "{f:?}(NaN) in f32 on {arch_name}");
            }
        }
        for f in [
            Derivative::Erf,
            Derivative::Gelu,
            Derivative::GeluTanh,
            Derivative::Softplus {
                beta: 1.0,
                threshold: 20.0,
            },
        ] {
            let mut y = [0.0f64];
            map_derivative_with(arch, f, &[f64::NAN], &[1.0], &mut y);
            assert!(y[0].is_nan(), "{f:?}′(NaN) on {arch_name}");
        }
    }
}

/// Test inputs: normal draws scaled by 4 and a sprinkling of special values, of an odd length so
/// that the vector loops have a tail.
fn mixed_inputs(len: usize) -> Vec<f64> {
    use rand::SeedableRng;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    (0..len)
        .map(|i| match i % 97 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            _ => 4.0 * <f64 as crate::Float>::standard_normal(&mut rng),
        })
        .collect()
}

#[test]
fn in_place_equals_out_of_place_bit_for_bit() {
    let x64 = mixed_inputs(1001);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    for (_, arch) in arches() {
        for f in FUNCTIONS {
            let mut out = vec![0.0; x64.len()];
            map_with(arch, f, &x64, &mut out);
            let mut in_place = x64.clone();
            map_in_place_with(arch, f, &mut in_place);
            assert!(
                out.iter().zip(&in_place).all(|(a, b)| same(*a, *b)),
                "{f:?}"
            );

            let mut out = vec![0.0f32; x32.len()];
            map_with(arch, to_f32(f), &x32, &mut out);
            let mut in_place = x32.clone();
            map_in_place_with(arch, to_f32(f), &mut in_place);
            let equal = out
                .iter()
                .zip(&in_place)
                .all(|(a, b)| same(f64::from(*a), f64::from(*b)));
            assert!(equal, "{f:?} in f32");
        }
    }
}

/// The public functions (which split long slices over threads) agree with one dispatched loop.
#[test]
fn public_functions_agree_with_the_dispatched_loop() {
    use super::{
        erf, erf_backward, exp, exp_in_place, gelu, gelu_backward, gelu_tanh, gelu_tanh_backward,
        log, sigmoid, softplus, softplus_backward, tanh,
    };
    let len = (1 << 18) + 37;
    let x = mixed_inputs(len);
    let g = mixed_inputs(len);
    let arch = Arch::new();
    type Forward = fn(&[f64], &mut [f64]);
    type Backward = fn(&[f64], &[f64], &mut [f64]);
    let forward: [(Forward, Function<f64>); 7] = [
        (exp, Function::Exp),
        (log, Function::Log),
        (tanh, Function::Tanh),
        (sigmoid, Function::Sigmoid),
        (erf, Function::Erf),
        (gelu, Function::Gelu),
        (gelu_tanh, Function::GeluTanh),
    ];
    let (mut a, mut b) = (vec![0.0; len], vec![0.0; len]);
    for (public, f) in forward {
        public(&x, &mut a);
        map_with(arch, f, &x, &mut b);
        assert!(a.iter().zip(&b).all(|(p, q)| same(*p, *q)), "{f:?}");
    }
    softplus(&x, 2.0, 15.0, &mut a);
    map_with(
        arch,
        Function::Softplus {
            beta: 2.0,
            threshold: 15.0,
        },
        &x,
        &mut b,
    );
    assert!(a.iter().zip(&b).all(|(p, q)| same(*p, *q)), "softplus");
    let mut c = x.clone();
    exp_in_place(&mut c);
    map_with(arch, Function::Exp, &x, &mut b);
    assert!(c.iter().zip(&b).all(|(p, q)| same(*p, *q)), "exp_in_place");
    let backward: [(Backward, Derivative<f64>); 3] = [
        (erf_backward, Derivative::Erf),
        (gelu_backward, Derivative::Gelu),
        (gelu_tanh_backward, Derivative::GeluTanh),
    ];
    for (public, f) in backward {
        public(&x, &g, &mut a);
        map_derivative_with(arch, f, &x, &g, &mut b);
        assert!(a.iter().zip(&b).all(|(p, q)| same(*p, *q)), "{f:?}");
    }
    softplus_backward(&x, &g, 2.0, 15.0, &mut a);
    map_derivative_with(
        arch,
        Derivative::Softplus {
            beta: 2.0,
            threshold: 15.0,
        },
        &x,
        &g,
        &mut b,
    );
    assert!(
        a.iter().zip(&b).all(|(p, q)| same(*p, *q)),
        "softplus_backward"
    );
}

/// The backward kernels multiply the incoming gradient by the derivative.
#[test]
fn backward_kernels_scale_by_the_incoming_gradient() {
    let x = mixed_inputs(501);
    let g = mixed_inputs(501);
    let ones = vec![1.0; x.len()];
    for (_, arch) in arches() {
        for f in [Derivative::Erf, Derivative::Gelu, Derivative::GeluTanh] {
            let (mut scaled, mut unit) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            map_derivative_with(arch, f, &x, &g, &mut scaled);
            map_derivative_with(arch, f, &x, &ones, &mut unit);
            for i in 0..x.len() {
                assert!(same(scaled[i], g[i] * unit[i]), "{f:?} at {}", x[i]);
            }
        }
    }
}

/// f64 over a million random values per function (log-uniform magnitudes over the whole range,
/// both signs) against std / the `libm` crate. Those references have errors of their own (glibc's
/// exp and log are within 1 ulp, tanh and the `libm` crate's erf within ~1–2), so this bounds the
/// distance to them by 3 ulps; the bound against exact values is the mpmath test's.
#[test]
fn f64_near_std_and_libm_on_random_values() {
    use rand::{RngExt, SeedableRng};
    let count = if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    };
    let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
    type Case = (Function<f64>, fn(f64) -> f64, f64);
    let cases: [Case; 5] = [
        (Function::Exp, f64::exp, 709.0),
        (Function::Log, f64::ln, 1e308),
        (Function::Tanh, f64::tanh, 30.0),
        (Function::Erf, libm::erf, 7.0),
        (Function::Sigmoid, sigmoid_f64, 745.0),
    ];
    for (f, reference, max) in cases {
        let x: Vec<f64> = (0..count)
            .map(|_| {
                let magnitude = max.ln() + rng.random_range(-700.0f64..0.0);
                let v = magnitude.exp();
                if f == Function::Log || rng.random_range(0..2) == 0 {
                    v
                } else {
                    -v
                }
            })
            .collect();
        for (arch_name, arch) in arches() {
            let mut y = vec![0.0; x.len()];
            map_with(arch, f, &x, &mut y);
            let worst = x
                .iter()
                .zip(&y)
                .map(|(&x, &y)| {
                    let r = reference(x);
                    ((ordered_f64(y) - ordered_f64(r)).unsigned_abs(), x)
                })
                .max_by_key(|&(d, _)| d)
                .unwrap_or((0, 0.0));
            println!(
                "{f:?} f64 {arch_name}: {} ulp from std/libm (at {:e})",
                worst.0, worst.1
            );
            assert!(
                worst.0 <= 3,
                "{f:?} on {arch_name}: {} ulp at {:e}",
                worst.0,
                worst.1
            );
        }
    }
}
