//! The model checker on the digits MLP (64 → 256 → 256 → 10 with dropout: 85 002 parameters, one
//! image): fast mode (one random projection per parameter) against full mode (every element of
//! every parameter). Run: `cargo bench --bench gradcheck`.
//!
//! Full mode costs two forward passes per parameter element (170 004 here), fast mode two per
//! parameter (12); both one backward pass. What each detects: full mode locates the wrong element
//! of each parameter; fast mode says which parameter is wrong (a wrong gradient changes its
//! projection on a random direction with probability 1) but not where.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use tapegrad::Tensor;
use tapegrad::gradcheck::{ModuleCheckOptions, gradcheck_module};
use tapegrad::nn::{Dropout, Linear, Module, ReLU, Sequential};

fn digits_mlp() -> Sequential<f32> {
    let mut rng = Pcg64::seed_from_u64(0);
    Sequential::new()
        .push(Linear::new(64, 256, &mut rng).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.2).unwrap())
        .push(Linear::new(256, 256, &mut rng).unwrap())
        .push(ReLU)
        .push(Dropout::new(0.2).unwrap())
        .push(Linear::new(256, 10, &mut rng).unwrap())
}

fn model_check(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let model = digits_mlp();
    assert_eq!(model.num_params(), 85_002);
    let x = Tensor::<f32>::uniform(&[1, 64], 0.0, 1.0, &mut Pcg64::seed_from_u64(1)).unwrap();
    let labels = [3usize];
    let mut group = c.benchmark_group("gradcheck_module_digits_mlp_85002_params");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    for (name, options) in [
        (
            "fast",
            ModuleCheckOptions {
                full_up_to: 0,
                ..ModuleCheckOptions::default()
            },
        ),
        (
            "full",
            ModuleCheckOptions {
                full: true,
                ..ModuleCheckOptions::default()
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let report =
                    gradcheck_module(&model, &x, |y| y.cross_entropy(&labels), &options).unwrap();
                assert!(report.passed(), "{report}");
                black_box(report)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, model_check);
criterion_main!(benches);
