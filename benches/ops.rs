//! Forward + backward of each op on a [256, 256] f32 input (the loss is the sum of the output,
//! except for the losses themselves). Run: `cargo bench --bench ops`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::{Param, Result, Shape, Tape, Tensor, Var};

const N: usize = 256;

type Op = for<'t> fn(Var<'t, f32>, Var<'t, f32>, &mut Pcg64) -> Result<Var<'t, f32>>;

fn ops(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Param::new(
        "x",
        Tensor::<f32>::normal(&[N, N], 0.0, 1.0, &mut rng).unwrap(),
    );
    let y = Param::new(
        "y",
        Tensor::<f32>::uniform(&[N, N], 0.5, 2.0, &mut rng).unwrap(),
    );
    let bias = Param::new(
        "b",
        Tensor::<f32>::normal(&[N], 0.0, 1.0, &mut rng).unwrap(),
    );
    let labels: Vec<usize> = (0..N).map(|i| i % 10).collect();

    let cases: Vec<(&str, Op)> = vec![
        ("matmul", |a, b, _| a.matmul(b)),
        ("matmul_t", |a, b, _| a.matmul_t(b)),
        ("add", |a, b, _| a.add(b)),
        ("mul", |a, b, _| a.mul(b)),
        ("div", |a, b, _| a.div(b)),
        ("relu", |a, _, _| a.relu()),
        ("dropout", |a, _, rng| a.dropout(0.5, rng)),
        ("exp", |a, _, _| a.exp()),
        ("log", |_, b, _| b.log()),
        ("tanh", |a, _, _| a.tanh()),
        ("sigmoid", |a, _, _| a.sigmoid()),
        ("softmax", |a, _, _| a.softmax()),
        ("log_softmax", |a, _, _| a.log_softmax()),
        ("sum_axis", |a, _, _| a.sum_axis(0, false)),
        ("transpose", |a, _, _| a.t()),
        ("reshape", |a, _, _| a.reshape(&[N * N])),
        ("broadcast_to", |a, _, _| {
            a.sum_axis(0, true)?.broadcast_to(&Shape::new(&[N, N])?)
        }),
    ];
    let mut group = c.benchmark_group("op_forward_backward_256x256_f32");
    for (name, op) in cases {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let out = op(tape.param(&x), tape.param(&y), &mut rng).unwrap();
                black_box(out.sum().unwrap().backward().unwrap());
            })
        });
    }
    group.bench_function("add_bias", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let out = tape.param(&x).add(tape.param(&bias)).unwrap();
            black_box(out.sum().unwrap().backward().unwrap());
        })
    });
    group.bench_function("cross_entropy", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let loss = tape.param(&x).cross_entropy(&labels).unwrap();
            black_box(loss.backward().unwrap());
        })
    });
    group.finish();
}

/// The summation kernel against the running total it replaced (what `iter().sum()` computes: one
/// f32 accumulator, each addition waiting for the previous one), on a 4096² f32 tensor (64 MiB,
/// so both are bounded by memory bandwidth once the kernel is fast enough), and down the rows
/// (a bias gradient: 4096 rows of 4096).
fn summation(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let n = 4096;
    let x = Tensor::<f32>::uniform(&[n, n], 0.0, 1.0, &mut Pcg64::seed_from_u64(1)).unwrap();
    let mut group = c.benchmark_group("sum_4096x4096_f32");
    group.bench_function("pairwise_sum_all", |b| b.iter(|| black_box(x.sum_all())));
    group.bench_function("running_total_sum_all", |b| {
        b.iter(|| black_box(x.data().iter().copied().sum::<f32>()))
    });
    let bias = Shape::new(&[n]).unwrap();
    group.bench_function("pairwise_sum_to_rows", |b| {
        b.iter(|| black_box(x.sum_to(&bias).unwrap()))
    });
    group.bench_function("running_total_rows", |b| {
        b.iter(|| {
            let mut out = vec![0.0f32; n];
            for row in x.data().chunks_exact(n) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            black_box(out)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = ops, summation
}
criterion_main!(benches);
