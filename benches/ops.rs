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

/// An op of one input that may capture its index arguments.
type UnaryOp<'a> = dyn for<'t> Fn(Var<'t, f32>) -> Result<Var<'t, f32>> + 'a;

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
                let _ = black_box(out.sum().unwrap().backward().unwrap());
            })
        });
    }
    group.bench_function("add_bias", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let out = tape.param(&x).add(tape.param(&bias)).unwrap();
            let _ = black_box(out.sum().unwrap().backward().unwrap());
        })
    });
    let ids: Vec<usize> = (0..N).map(|i| (i * 37) % N).collect();
    let table_ids = tapegrad::Indices::new(&ids, &[N]).unwrap();
    let gather_index = tapegrad::Indices::new(
        &(0..N * N).map(|i| (i * 7) % N).collect::<Vec<_>>(),
        &[N, N],
    )
    .unwrap();
    let indexing: Vec<(&str, Box<UnaryOp<'_>>)> = vec![
        ("permute", Box::new(|a| a.permute(&[1, 0]))),
        ("slice_step2", Box::new(|a| a.slice(1, 0, N, 2))),
        ("cat", Box::new(|a| a.tape().cat(&[a, a], 0))),
        ("index_select", Box::new(|a| a.index_select(0, &ids))),
        ("embedding", Box::new(|a| a.embedding(&table_ids, None))),
        ("gather", Box::new(|a| a.gather(1, &gather_index))),
        ("softmax_axis0", Box::new(|a| a.softmax_along(0))),
        ("log_softmax_axis0", Box::new(|a| a.log_softmax_along(0))),
    ];
    for (name, op) in indexing {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let tape = Tape::new();
                let out = op(tape.param(&x)).unwrap();
                let _ = black_box(out.sum().unwrap().backward().unwrap());
            })
        });
    }
    group.bench_function("cross_entropy", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let loss = tape.param(&x).cross_entropy(&labels).unwrap();
            let _ = black_box(loss.backward().unwrap());
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

/// Batched products: the `bmm_64x128x64x128` workload's forward, and a forward+backward of the
/// attention-shaped [8·4, 128, 32] × [8·4, 32, 128].
fn batched(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let mut rng = Pcg64::seed_from_u64(2);
    let mut group = c.benchmark_group("batched_matmul_f32");
    let a = Param::new(
        "a",
        Tensor::<f32>::normal(&[64, 128, 64], 0.0, 1.0, &mut rng).unwrap(),
    );
    let b = Param::new(
        "b",
        Tensor::<f32>::normal(&[64, 64, 128], 0.0, 1.0, &mut rng).unwrap(),
    );
    group.bench_function("bmm_64x128x64x128_forward", |bench| {
        bench.iter(|| {
            let tape = Tape::<f32>::no_grad();
            let _ = black_box(tape.param(&a).matmul(tape.param(&b)).unwrap());
        })
    });
    let q = Param::new(
        "q",
        Tensor::<f32>::normal(&[32, 128, 32], 0.0, 1.0, &mut rng).unwrap(),
    );
    group.bench_function("bmm_32x128x32x128_forward_backward", |bench| {
        bench.iter(|| {
            let tape = Tape::new();
            let x = tape.param(&q);
            let s = x.matmul(x.transpose(1, 2).unwrap()).unwrap();
            let _ = black_box(s.sum().unwrap().backward().unwrap());
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = ops, summation, batched
}
criterion_main!(benches);
