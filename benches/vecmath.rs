//! The vector math kernels against the scalar loops they replace (std / the `libm` crate, one
//! element at a time), on 256² and 4096² elements, 1 thread. `vecmath/<kernel>/<size>` is the
//! kernel, `libm/<kernel>/<size>` the scalar loop; `benches/vecmath_pytorch.py` times PyTorch on
//! the same inputs. Run: `cargo bench --bench vecmath` (add `-- f32` or a kernel name to filter).

use std::f32::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::Float;

/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
/// √(2/π), GELU's tanh approximation.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// The scalar loop each kernel replaces: y = f(x, g) element by element.
fn scalar(name: &str) -> fn(f32, f32) -> f32 {
    fn sigmoid(x: f32) -> f32 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }
    match name {
        "exp" => |x, _| x.exp(),
        "log" => |x, _| x.ln(),
        "tanh" => |x, _| x.tanh(),
        "sigmoid" => |x, _| sigmoid(x),
        "erf" => |x, _| libm::erff(x),
        "gelu" => |x, _| 0.5 * x * (1.0 + libm::erff(x * FRAC_1_SQRT_2)),
        "gelu_tanh" => {
            |x, _| 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
        }
        "softplus" => |x, _| if x > 20.0 { x } else { x.exp().ln_1p() },
        "erf_backward" => |x, g| g * FRAC_2_SQRT_PI * (-x * x).exp(),
        "gelu_backward" => |x, g| {
            let cdf = 0.5 * (1.0 + libm::erff(x * FRAC_1_SQRT_2));
            g * (cdf + x * FRAC_1_SQRT_2PI * (-0.5 * x * x).exp())
        },
        "gelu_tanh_backward" => |x, g| {
            let inner = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            let t = inner.tanh();
            let d_inner = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)
        },
        "softplus_backward" => |x, g| if x > 20.0 { g } else { g * sigmoid(x) },
        _ => unreachable!("no scalar loop for {name}"),
    }
}

const KERNELS: [&str; 12] = [
    "exp",
    "log",
    "tanh",
    "sigmoid",
    "erf",
    "gelu",
    "gelu_tanh",
    "softplus",
    "erf_backward",
    "gelu_backward",
    "gelu_tanh_backward",
    "softplus_backward",
];

fn vecmath(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(0);
    for (side, label) in [(256usize, "256x256"), (4096, "4096x4096")] {
        let n = side * side;
        // Standard normal inputs scaled by 3 (|x| up to ~15: every regime of every kernel), and
        // their absolute values for log.
        let x: Vec<f32> = (0..n)
            .map(|_| 3.0 * f32::standard_normal(&mut rng))
            .collect();
        let positive: Vec<f32> = x.iter().map(|v| v.abs() + 1e-3).collect();
        let g: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut out = vec![0.0f32; n];
        let mut group = c.benchmark_group(format!("f32/{label}"));
        group.throughput(Throughput::Elements(n as u64));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if side > 1000 { 4 } else { 2 }));
        group.sample_size(if side > 1000 { 20 } else { 50 });
        for name in KERNELS {
            let input = if name == "log" { &positive } else { &x };
            let kernel = f32::vecmath_kernel(name).expect("every listed kernel exists");
            group.bench_function(BenchmarkId::new("vecmath", name), |b| {
                b.iter(|| kernel(black_box(input), black_box(&g), black_box(&mut out)))
            });
            let f = scalar(name);
            group.bench_function(BenchmarkId::new("libm", name), |b| {
                b.iter(|| {
                    for ((o, &v), &gv) in out.iter_mut().zip(black_box(input)).zip(&g) {
                        *o = f(v, gv);
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, vecmath);
criterion_main!(benches);
