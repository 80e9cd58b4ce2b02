//! One training step of the lesson's model (N=128, d=20, H=64, K=5, p=0.5, f32): gradients by hand
//! versus on the tape. Run: `cargo bench --bench training_step`.

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use std::hint::black_box;
use tapegrad::lesson::{LessonConfig, manual_step, tape_step};

fn training_step(c: &mut Criterion) {
    tapegrad::set_num_threads(1);
    let (data, weights) = LessonConfig::default().generate::<f32>().unwrap();
    let mut group = c.benchmark_group("lesson_step_f32");
    group.bench_function("manual", |b| {
        let mut rng = Pcg64::seed_from_u64(1);
        b.iter(|| black_box(manual_step(&data, &weights, 0.5, &mut rng).unwrap()))
    });
    group.bench_function("tape", |b| {
        let mut rng = Pcg64::seed_from_u64(1);
        b.iter(|| black_box(tape_step(&data, &weights, 0.5, &mut rng).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, training_step);
criterion_main!(benches);
