//! Forward + backward of each element-wise op on a [256, 256] f32 input, one thread (the loss is
//! the sum of the output). `relu`, `exp` and `add` are included as yardsticks from the existing
//! ops. Run: `cargo bench --bench ops_elementwise`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{Param, Result, Tape, Tensor, Var};

const N: usize = 256;

/// An op of the input `x` ~ N(0, 1), a positive `p` ~ U(0.5, 2), and a 0/1 mask `m`.
type Op = for<'t> fn(Var<'t, f32>, Var<'t, f32>, Var<'t, f32>) -> Result<Var<'t, f32>>;

fn elementwise(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Param::new(
        "x",
        Tensor::<f32>::normal(&[N, N], 0.0, 1.0, &mut rng).unwrap(),
    );
    let p = Param::new(
        "p",
        Tensor::<f32>::uniform(&[N, N], 0.5, 2.0, &mut rng).unwrap(),
    );
    let mask = Tensor::<f32>::uniform(&[N, N], 0.0, 1.0, &mut rng)
        .unwrap()
        .map(|u| if u < 0.5 { 1.0 } else { 0.0 })
        .unwrap();

    let cases: Vec<(&str, Op)> = vec![
        ("relu (yardstick)", |x, _, _| x.relu()),
        ("exp (yardstick)", |x, _, _| x.exp()),
        ("add (yardstick)", |x, p, _| x.add(p)),
        ("sqrt", |_, p, _| p.sqrt()),
        ("rsqrt", |_, p, _| p.rsqrt()),
        ("square", |x, _, _| x.square()),
        ("reciprocal", |_, p, _| p.reciprocal()),
        ("abs", |x, _, _| x.abs()),
        ("sin", |x, _, _| x.sin()),
        ("cos", |x, _, _| x.cos()),
        ("log1p", |_, p, _| p.log1p()),
        ("expm1", |x, _, _| x.expm1()),
        ("erf", |x, _, _| x.erf()),
        ("pow_scalar(2)", |x, _, _| x.pow_scalar(2.0)),
        ("pow_scalar(1.5)", |_, p, _| p.pow_scalar(1.5)),
        ("clamp", |x, _, _| x.clamp(Some(-0.5), Some(0.5))),
        ("gelu", |x, _, _| x.gelu()),
        ("gelu_tanh", |x, _, _| x.gelu_tanh()),
        ("silu", |x, _, _| x.silu()),
        ("softplus", |x, _, _| x.softplus(1.0, 20.0)),
        ("leaky_relu", |x, _, _| x.leaky_relu(0.01)),
        ("elu", |x, _, _| x.elu(1.0)),
        ("hardtanh", |x, _, _| x.hardtanh(-1.0, 1.0)),
        ("pow", |x, p, _| p.pow(x)),
        ("maximum", |x, p, _| x.maximum(p)),
        ("minimum", |x, p, _| x.minimum(p)),
        ("masked_fill", |x, _, m| x.masked_fill(m, -1e9)),
        ("where", |x, p, m| m.where_(x, p)),
        ("x * (x > 0)", |x, _, _| x.mul(x.gt_scalar(0.0)?)),
        ("operators (x * 2 - p) / p", |x, p, _| ((x * 2.0)? - p)? / p),
    ];
    let mut group = c.benchmark_group("elementwise_forward_backward_256x256_f32");
    for (name, op) in cases {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let m = tape.constant(mask.clone());
                let out = op(tape.param(&x), tape.param(&p), m).unwrap();
                let _ = black_box(out.sum().unwrap().backward().unwrap());
            })
        });
    }
    group.finish();

    // The comparisons alone (forward only: they record a constant).
    let mut group = c.benchmark_group("comparison_forward_256x256_f32");
    group.bench_function("gt", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            black_box(tape.param(&x).gt(tape.param(&p)).unwrap().value());
        })
    });
    group.bench_function("gt_scalar", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            black_box(tape.param(&x).gt_scalar(0.0).unwrap().value());
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300));
    targets = elementwise
}
criterion_main!(benches);
