//! The data-parallel pieces in one process: bucket layout, sampler shards and padding (against
//! PyTorch's `DistributedSampler`), gradient averaging and broadcast in a world of size 1 (local,
//! and through MPI as a singleton), rank-0 checkpoints, per-rank dropout streams, the watchdog.
//! The multi-rank runs are in `.ci/mpi` (`mpirun -np 2 … ddp --check` and the fault runs).
#![cfg(feature = "mpi")]

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use tapegrad::distributed::{
    self, BucketLayout, DdpOptions, Distributed, DistributedDataParallel, DistributedSampler,
    Watchdog,
};
use tapegrad::nn::{
    Context, CrossEntropyLoss, Forward, Linear, Module, ReLU, Sequential, StateDict,
};
use tapegrad::optim::{GradSource, Optimizer, Sgd, SgdConfig};
use tapegrad::{Error, Param, Tape, Tensor};

fn model(seed: u64) -> Sequential<f64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    Sequential::new()
        .push(Linear::new(5, 7, &mut rng).unwrap())
        .push(ReLU)
        .push(Linear::new(7, 3, &mut rng).unwrap())
}

fn grads_of(model: &Sequential<f64>, seed: u64) -> tapegrad::Gradients<f64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    let tape = Tape::new();
    let x = tape.constant(Tensor::normal(&[4, 5], 0.0, 1.0, &mut rng).unwrap());
    let logits = model.forward(&mut Context::eval(), x).unwrap();
    let loss = CrossEntropyLoss::default()
        .forward(logits, &[0, 1, 2, 1])
        .unwrap();
    loss.backward().unwrap()
}

// ---------- bucket layout ----------

#[test]
fn buckets_cut_the_concatenation_at_fixed_sizes() {
    // Tensors of 3, 5, 0, 4 elements: flat positions 0-2 | 3-7 | - | 8-11, buckets of 4.
    let layout = BucketLayout::new(&[3, 5, 0, 4], 4).unwrap();
    assert_eq!(layout.total_elements(), 12);
    assert_eq!(layout.num_buckets(), 3);
    assert_eq!(layout.pieces(0), vec![(0, 0..3, 0..3), (1, 0..1, 3..4)]);
    assert_eq!(layout.pieces(1), vec![(1, 1..5, 0..4)]);
    assert_eq!(layout.pieces(2), vec![(3, 0..4, 0..4)]);
    // A last bucket shorter than the others.
    let layout = BucketLayout::new(&[10], 4).unwrap();
    assert_eq!(
        (0..3).map(|k| layout.bucket_range(k)).collect::<Vec<_>>(),
        vec![0..4, 4..8, 8..10]
    );
    assert!(BucketLayout::new(&[], 4).unwrap().num_buckets() == 0);
    assert!(matches!(
        BucketLayout::new(&[3], 0),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn buckets_cover_every_element_once_in_order() {
    let mut rng = Pcg64::seed_from_u64(3);
    for _ in 0..50 {
        let sizes: Vec<usize> = (0..rng.random_range(0..8))
            .map(|_| rng.random_range(0..20))
            .collect();
        let bucket = rng.random_range(1..16);
        let layout = BucketLayout::new(&sizes, bucket).unwrap();
        // Walk the pieces and rebuild the flat sequence of (tensor, element) pairs.
        let mut walked = Vec::new();
        for k in 0..layout.num_buckets() {
            let range = layout.bucket_range(k);
            assert!(range.len() == bucket || k + 1 == layout.num_buckets());
            let mut next = 0;
            for (i, within, at) in layout.pieces(k) {
                assert_eq!(at.start, next, "pieces are contiguous in the bucket");
                assert_eq!(within.len(), at.len());
                next = at.end;
                walked.extend(within.map(|e| (i, e)));
            }
            assert_eq!(next, range.len(), "pieces fill the bucket");
        }
        let expected: Vec<(usize, usize)> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| (0..n).map(move |e| (i, e)))
            .collect();
        assert_eq!(walked, expected, "sizes {sizes:?}, bucket {bucket}");
    }
}

// ---------- sampler ----------

#[test]
fn sampler_matches_pytorch_without_shuffle() {
    let golden = include_str!("golden/distributed_sampler.txt");
    let mut cases = 0;
    for line in golden.lines() {
        let (head, idx) = line.split_once(':').unwrap();
        let h: Vec<usize> = head
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let expected: Vec<usize> = idx.split_whitespace().map(|v| v.parse().unwrap()).collect();
        let sampler = DistributedSampler::new(h[0], h[1], h[2])
            .unwrap()
            .shuffle(false)
            .drop_last(h[3] == 1);
        assert_eq!(sampler.indices(3), expected, "case {head}");
        assert_eq!(sampler.num_samples(), expected.len(), "case {head}");
        cases += 1;
    }
    assert_eq!(cases, 56);
}

#[test]
fn shuffled_shards_are_disjoint_equal_and_reshuffled() {
    for (n, world) in [(100usize, 4usize), (101, 4), (7, 3), (1437, 2)] {
        for drop_last in [false, true] {
            let shards: Vec<Vec<usize>> = (0..world)
                .map(|r| {
                    DistributedSampler::new(n, world, r)
                        .unwrap()
                        .seed(11)
                        .drop_last(drop_last)
                        .indices(5)
                })
                .collect();
            let per_rank = if drop_last {
                n / world
            } else {
                n.div_ceil(world)
            };
            assert!(shards.iter().all(|s| s.len() == per_rank));
            let all: Vec<usize> = shards.iter().flatten().copied().collect();
            let distinct: HashSet<usize> = all.iter().copied().collect();
            assert!(all.iter().all(|&i| i < n));
            if drop_last {
                assert_eq!(distinct.len(), all.len(), "no index twice when cutting");
            } else {
                assert_eq!(distinct.len(), n, "every index when padding");
            }
            // The same list on every rank, dealt out round-robin.
            let order = DistributedSampler::new(n, world, 0)
                .unwrap()
                .seed(11)
                .drop_last(drop_last)
                .epoch_order(5);
            for (r, shard) in shards.iter().enumerate() {
                let dealt: Vec<usize> = order.iter().skip(r).step_by(world).copied().collect();
                assert_eq!(&dealt, shard);
            }
            // The first k·world positions are one process's first k·world samples (same seed).
            let whole = DistributedSampler::new(n, 1, 0)
                .unwrap()
                .seed(11)
                .indices(5);
            let full = (n / world) * world;
            assert_eq!(order[..full], whole[..full]);
        }
    }
    let s = DistributedSampler::new(50, 2, 1).unwrap().seed(1);
    assert_ne!(s.indices(0), s.indices(1), "a new order every epoch");
    assert_eq!(s.indices(4), s.clone().indices(4), "reproducible");
    assert_ne!(s.indices(0), s.clone().seed(2).indices(0), "seeded");
    let mut sorted = DistributedSampler::new(50, 1, 0).unwrap().indices(9);
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "a permutation");
}

#[test]
fn sampler_rejects_bad_ranks() {
    for (world, rank) in [(0, 0), (2, 2), (3, 7)] {
        assert!(matches!(
            DistributedSampler::new(10, world, rank),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

// ---------- dropout streams ----------

#[test]
fn rank_streams_follow_the_documented_formula_and_differ() {
    let seed = 42u64;
    // splitmix64(42), computed independently of the library.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let state = (u128::from(z) << 64) | u128::from(seed);
    for rank in 0..4 {
        let mut expected = Pcg64::new(state, rank as u128);
        let mut got = distributed::rank_rng(seed, rank);
        for _ in 0..8 {
            assert_eq!(got.random::<u64>(), expected.random::<u64>());
        }
    }
    let draws = |rank| {
        let mut r = distributed::rank_rng(seed, rank);
        (0..16).map(|_| r.random::<u64>()).collect::<Vec<_>>()
    };
    assert_ne!(draws(0), draws(1));
    assert_eq!(draws(1), draws(1));
}

// ---------- the wrapper in a local world ----------

#[test]
fn local_world_averages_to_the_gradients_themselves() {
    let dist = Distributed::local();
    assert_eq!(
        (dist.rank(), dist.world_size(), dist.is_mpi()),
        (0, 1, false)
    );
    let m = model(1);
    // Buckets of 16 bytes: the gradients straddle many buckets.
    let mut ddp = DistributedDataParallel::new(&dist, &m, DdpOptions { bucket_bytes: 16 }).unwrap();
    // The gradients, then a presence flag per parameter.
    assert_eq!(
        ddp.bucket_layout().total_elements(),
        5 * 7 + 7 + 7 * 3 + 3 + 4
    );
    assert_eq!(ddp.bucket_layout().num_buckets(), 70usize.div_ceil(2));
    let plain = grads_of(&m, 9);
    let averaged = ddp.reduce(&dist, grads_of(&m, 9)).unwrap();
    assert_eq!(averaged.len(), 4);
    for (name, p) in m.named_params() {
        assert_eq!(
            averaged.grad(&p).unwrap().data(),
            plain.param(&p).unwrap().data(),
            "{name}"
        );
    }
    ddp.check_in_sync(&dist).unwrap();
}

#[test]
fn ddp_training_in_one_process_is_plain_training() {
    let dist = Distributed::local();
    let (a, b) = (model(2), model(2));
    let mut ddp = DistributedDataParallel::new(&dist, &a, DdpOptions::default()).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let mut sa = Sgd::new(a.named_params(), config).unwrap();
    let mut sb = Sgd::new(b.named_params(), config).unwrap();
    for step in 0..5 {
        let averaged = ddp.reduce(&dist, grads_of(&a, step)).unwrap();
        sa.step(&averaged).unwrap();
        sb.step(&grads_of(&b, step)).unwrap();
    }
    for ((_, pa), (_, pb)) in a.named_params().iter().zip(b.named_params().iter()) {
        assert_eq!(pa.value().data(), pb.value().data());
    }
}

#[test]
fn a_parameter_without_gradient_gets_none_and_shapes_are_checked() {
    let dist = Distributed::local();
    let m = model(3);
    let mut ddp = DistributedDataParallel::new(&dist, &m, DdpOptions::default()).unwrap();
    // Only the first layer on the tape: the second gets no gradient.
    let params = m.named_params();
    let (w, b) = (&params[0].1, &params[1].1);
    let tape = Tape::new();
    let x = tape.constant(Tensor::<f64>::ones(&[2, 5]).unwrap());
    let loss = x
        .matmul(tape.param(w).transpose(0, 1).unwrap())
        .unwrap()
        .add(tape.param(b))
        .unwrap()
        .sum()
        .unwrap();
    let averaged = ddp.reduce(&dist, loss.backward().unwrap()).unwrap();
    assert!(averaged.get(w).is_some());
    assert!(averaged.get(&params[2].1).is_none());
    assert_eq!(averaged.len(), 2);

    // A parameter replaced by one of another shape since the wrapper was made.
    w.set(Tensor::zeros(&[2, 2]).unwrap());
    let tape = Tape::new();
    let loss = tape.param(w).sum().unwrap();
    assert!(matches!(
        ddp.reduce(&dist, loss.backward().unwrap()),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn duplicate_names_are_refused() {
    struct Twice(Param<f64>);
    impl Module<f64> for Twice {
        fn visit(&self, v: &mut tapegrad::nn::Visitor<'_, f64>) {
            v.param("w", &self.0);
            v.param("w", &self.0);
        }
    }
    let m = Twice(Param::new("w", Tensor::zeros(&[2]).unwrap()));
    assert!(matches!(
        DistributedDataParallel::new(&Distributed::local(), &m, DdpOptions::default()),
        Err(Error::DuplicateName { .. })
    ));
}

// ---------- checkpoints ----------

#[test]
fn rank0_checkpoints_round_trip_and_report_absence_and_failure() {
    let dist = Distributed::local();
    let dir = std::env::temp_dir().join(format!("tapegrad-dist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    assert!(dist.load_checkpoint::<f64>(&path).unwrap().is_none());

    let m = model(4);
    let mut state = StateDict::of(&m).unwrap();
    state.metadata.insert("epochs_done".into(), "3".into());
    dist.save_checkpoint(&state, &path).unwrap();
    let loaded = dist.load_checkpoint::<f64>(&path).unwrap().unwrap();
    assert_eq!(
        loaded.metadata.get("epochs_done").map(String::as_str),
        Some("3")
    );
    let fresh = model(5);
    loaded.load_into(&fresh).unwrap();
    for ((_, a), (_, b)) in m.named_params().iter().zip(fresh.named_params().iter()) {
        assert_eq!(a.value().data(), b.value().data());
    }
    // A save that cannot happen fails and leaves the last good checkpoint as it was.
    let before = std::fs::read(&path).unwrap();
    let bad = dir.join("no-such-dir").join("ckpt.safetensors");
    assert!(matches!(
        dist.save_checkpoint(&state, &bad),
        Err(Error::Io { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A corrupt file is an error, not a panic.
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(dist.load_checkpoint::<f64>(&path).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

// ---------- watchdog ----------

#[test]
fn watchdog_fires_without_progress_and_not_after_stopping() {
    let (tx, rx) = mpsc::channel();
    let dog = Watchdog::with_action(Duration::from_millis(20), move || {
        tx.send(()).ok();
    });
    // No pet: it fires (waiting up to a minute for a loaded machine, not a timing assertion).
    assert!(rx.recv_timeout(Duration::from_secs(60)).is_ok());
    drop(dog);

    let (tx, rx) = mpsc::channel();
    let dog = Watchdog::with_action(Duration::from_secs(3600), move || {
        tx.send(()).ok();
    });
    assert!(dog.is_running());
    dog.pet();
    drop(dog);
    // Dropped before its deadline: the action was dropped unrun, so the channel is closed.
    assert_eq!(rx.recv(), Err(mpsc::RecvError));
}

// ---------- through MPI, as a singleton ----------

/// Everything that calls MPI, in one test: MPI is initialised once per process, and all calls
/// must come from the thread that initialised it.
#[test]
fn mpi_singleton_collectives_and_wrapper() {
    let dist = distributed::init_mpi_singleton().unwrap();
    assert!(dist.is_mpi());
    assert_eq!((dist.rank(), dist.world_size()), (0, 1));
    // A second initialisation is a clean error.
    assert!(matches!(
        distributed::init_mpi_singleton(),
        Err(Error::InvalidArgument { .. })
    ));

    let mut send = vec![1.5f32, -2.0, 3.25];
    let mut recv = Vec::new();
    dist.all_reduce_sum(&mut send, &mut recv).unwrap();
    assert_eq!(recv, send);
    let mut buf = vec![0.5f64, 7.0];
    dist.broadcast_from_rank0(&mut buf).unwrap();
    assert_eq!(buf, [0.5, 7.0]);
    assert_eq!(dist.min_max_u64(9), (9, 9));
    assert!(dist.all_ok(true) && !dist.all_ok(false));
    dist.check_same("test", "a value", 5).unwrap();

    let m = model(6);
    let mut ddp = DistributedDataParallel::new(&dist, &m, DdpOptions { bucket_bytes: 40 }).unwrap();
    let plain = grads_of(&m, 1);
    let averaged = ddp.reduce(&dist, grads_of(&m, 1)).unwrap();
    for (name, p) in m.named_params() {
        assert_eq!(
            averaged.grad(&p).unwrap().data(),
            plain.param(&p).unwrap().data(),
            "{name}"
        );
    }
    ddp.broadcast_state(&dist).unwrap();
    ddp.check_in_sync(&dist).unwrap();
    dist.barrier();
}
