//! Data loading: per-epoch orders, batching, collation, prefetch, splits and their errors.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tapegrad::data::{
    Collate, DataLoader, Dataset, LabeledDataset, RandomSampler, Sampler, Stack, Subset,
    TensorDataset, random_split, random_split_dataset, stack,
};
use tapegrad::datasets::Digits;
use tapegrad::{Error, Result, Tensor};

/// Item `i` is `i` itself, so the batches show the order directly.
struct Ids(usize);

impl Dataset for Ids {
    type Item = usize;
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, index: usize) -> Result<usize> {
        if index < self.0 {
            Ok(index)
        } else {
            Err(Error::IndexOutOfRange {
                op: "Ids",
                position: 0,
                index: index as i64,
                len: self.0,
            })
        }
    }
}

/// Fails on one index.
struct FailsAt(usize, usize);

impl Dataset for FailsAt {
    type Item = usize;
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, index: usize) -> Result<usize> {
        if index == self.1 {
            Err(Error::InvalidArgument {
                op: "FailsAt",
                reason: format!("item {index} is broken"),
            })
        } else {
            Ok(index)
        }
    }
}

fn batches<D, C>(loader: &DataLoader<D, C>, epoch: u64) -> Vec<Vec<usize>>
where
    D: Dataset + Send + Sync + 'static,
    C: Collate<D::Item, Batch = Vec<usize>> + Send + Sync + 'static,
{
    loader
        .epoch(epoch)
        .unwrap()
        .collect::<Result<Vec<_>>>()
        .unwrap()
}

#[test]
fn sequential_batches_with_and_without_drop_last() {
    let loader = DataLoader::new(Ids(10), 4).unwrap();
    assert_eq!(
        batches(&loader, 0),
        [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
    );
    assert_eq!(loader.batches_in(0).unwrap(), 3);
    let loader = loader.drop_last(true);
    assert_eq!(batches(&loader, 0), [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    assert_eq!(loader.batches_in(0).unwrap(), 2);
    // Exact multiple: nothing dropped.
    let loader = DataLoader::new(Ids(8), 4).unwrap().drop_last(true);
    assert_eq!(batches(&loader, 0).len(), 2);
    // Fewer items than a batch: one small batch, or none with drop_last.
    let loader = DataLoader::new(Ids(3), 4).unwrap();
    assert_eq!(batches(&loader, 0), [vec![0, 1, 2]]);
    assert!(batches(&loader.drop_last(true), 0).is_empty());
    // An empty data set yields no batches.
    assert!(batches(&DataLoader::new(Ids(0), 4).unwrap(), 0).is_empty());
}

#[test]
fn shuffle_covers_every_index_once_per_epoch_and_is_reproducible() {
    let loader = DataLoader::new(Ids(103), 10).unwrap().shuffle(5);
    let mut orders = Vec::new();
    for epoch in 0..4 {
        let flat: Vec<usize> = batches(&loader, epoch).concat();
        let mut sorted = flat.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..103).collect::<Vec<_>>(), "epoch {epoch}");
        // Reproducible from (seed, epoch) alone: a fresh loader, epochs visited out of order.
        let fresh = DataLoader::new(Ids(103), 10).unwrap().shuffle(5);
        assert_eq!(batches(&fresh, epoch).concat(), flat);
        assert_eq!(loader.order(epoch).unwrap(), flat);
        orders.push(flat);
    }
    // Reshuffled each epoch, and shuffled at all.
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[0], (0..103).collect::<Vec<_>>());
    // Another seed, another order.
    let other = DataLoader::new(Ids(103), 10).unwrap().shuffle(6);
    assert_ne!(batches(&other, 0).concat(), orders[0]);
    // With drop_last the dropped items are the tail of this epoch's order.
    let dropped = loader.clone().drop_last(true);
    assert_eq!(batches(&dropped, 2).concat(), orders[2][..100]);
}

#[test]
fn an_epoch_resumes_at_any_batch() {
    let loader = DataLoader::new(Ids(23), 4).unwrap().shuffle(9);
    let whole = batches(&loader, 3);
    for first in 0..=whole.len() {
        let rest: Vec<_> = loader
            .epoch_from(3, first)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(rest, whole[first..]);
    }
    assert!(matches!(
        loader.epoch_from(3, whole.len() + 1),
        Err(Error::IndexOutOfRange { .. })
    ));
}

#[test]
fn prefetch_gives_the_same_batches() {
    let x = Tensor::from_vec((0..60).map(|v| v as f64).collect(), &[20, 3]).unwrap();
    let labels: Vec<u32> = (0..20).map(|i| i * 7 % 5).collect();
    let data = Arc::new(LabeledDataset::new(x, labels).unwrap());
    let plain = DataLoader::new(Arc::clone(&data), 6).unwrap().shuffle(3);
    for depth in [1, 2, 8] {
        let ahead = plain.clone().prefetch(depth);
        for epoch in 0..3 {
            let a: Vec<(Tensor<f64>, Vec<u32>)> =
                plain.epoch(epoch).unwrap().map(Result::unwrap).collect();
            let b: Vec<(Tensor<f64>, Vec<u32>)> =
                ahead.epoch(epoch).unwrap().map(Result::unwrap).collect();
            assert_eq!(a.len(), 4);
            assert_eq!(a.len(), b.len());
            for ((xa, ya), (xb, yb)) in a.iter().zip(&b) {
                assert_eq!((xa.dims(), xa.data(), ya), (xb.dims(), xb.data(), yb));
            }
        }
    }
    // Each batch holds the rows its labels say, independently of the loader.
    for batch in plain.prefetch(2).epoch(1).unwrap() {
        let (x, labels) = batch.unwrap();
        for (row, label) in x.data().chunks(3).zip(labels) {
            let i = (row[0] / 3.0) as u32;
            assert_eq!(
                row,
                [3.0 * i as f64, 3.0 * i as f64 + 1.0, 3.0 * i as f64 + 2.0]
            );
            assert_eq!(label, i * 7 % 5);
        }
    }
}

#[test]
fn errors_end_the_epoch_with_and_without_prefetch() {
    for depth in [0, 1, 3] {
        let loader = DataLoader::new(FailsAt(20, 9), 4).unwrap().prefetch(depth);
        let got: Vec<Result<Vec<usize>>> = loader.epoch(0).unwrap().collect();
        assert_eq!(got.len(), 3, "depth {depth}");
        assert_eq!(got[0].as_ref().unwrap(), &[0, 1, 2, 3]);
        assert_eq!(got[1].as_ref().unwrap(), &[4, 5, 6, 7]);
        match &got[2] {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("item 9")),
            other => panic!("{other:?}"),
        }
    }
    // A collate error propagates too.
    let strict = |items: Vec<usize>| {
        if items.contains(&5) {
            Err(Error::InvalidArgument {
                op: "strict",
                reason: "five".into(),
            })
        } else {
            Ok(items.len())
        }
    };
    let loader = DataLoader::new(Ids(10), 3)
        .unwrap()
        .collate(strict)
        .prefetch(2);
    let got: Vec<_> = loader.epoch(0).unwrap().collect();
    assert_eq!(got.len(), 2);
    assert!(matches!(
        got[1],
        Err(Error::InvalidArgument { op: "strict", .. })
    ));
}

/// Counts the items read, to see the prefetch thread stop.
struct Counting(usize, Arc<AtomicUsize>);

impl Dataset for Counting {
    type Item = usize;
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, index: usize) -> Result<usize> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(index)
    }
}

#[test]
fn dropping_an_epoch_early_stops_the_prefetch_thread() {
    let reads = Arc::new(AtomicUsize::new(0));
    let loader = DataLoader::new(Counting(100_000, Arc::clone(&reads)), 10)
        .unwrap()
        .prefetch(2);
    let mut epoch = loader.epoch(0).unwrap();
    assert_eq!(epoch.next().unwrap().unwrap(), (0..10).collect::<Vec<_>>());
    drop(epoch); // returns: the drop joins the thread, which must notice the closed channel
    let after_drop = reads.load(Ordering::SeqCst);
    // At most the batch taken, the channel's 2, and the one in progress when it closed.
    assert!(after_drop <= 40, "{after_drop} items read");
    assert_eq!(
        reads.load(Ordering::SeqCst),
        after_drop,
        "the thread has stopped"
    );
    // Never iterated at all.
    drop(loader.epoch(1).unwrap());
}

#[test]
fn a_panicking_collate_is_an_error_not_a_hang() {
    let loader = DataLoader::new(Ids(10), 5)
        .unwrap()
        .collate(|items: Vec<usize>| -> Result<usize> {
            assert!(items[0] == 0, "collate gave up");
            Ok(items.len())
        })
        .prefetch(1);
    let got: Vec<_> = loader.epoch(0).unwrap().collect();
    assert_eq!(got.len(), 2);
    assert_eq!(*got[0].as_ref().unwrap(), 5);
    match &got[1] {
        Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("collate gave up")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tensor_dataset_and_default_collate() {
    let x = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[4, 3, 2]).unwrap();
    let y = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4]).unwrap();
    let data = TensorDataset::new(vec![x, y]).unwrap();
    assert_eq!(data.len(), 4);
    let loader = DataLoader::new(data, 3).unwrap();
    let got: Vec<Vec<Tensor<f32>>> = loader.epoch(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0][0].dims(), &[3, 3, 2]);
    assert_eq!(
        got[0][0].data(),
        (0..18).map(|v| v as f32).collect::<Vec<_>>()
    );
    assert_eq!(got[1][0].dims(), &[1, 3, 2]);
    assert_eq!(got[1][1].data(), &[4.0]);
    assert_eq!(got[0][1].dims(), &[3]);

    // Integer ids per item concatenate; integer items gather.
    let ids: Vec<u16> = Stack.collate(vec![3u16, 1, 2]).unwrap();
    assert_eq!(ids, [3, 1, 2]);
    let a = Tensor::from_vec(vec![1.0f64], &[1]).unwrap();
    let (t, seq) = Stack
        .collate(vec![(a.clone(), vec![1i64, 2]), (a.clone(), vec![3, 4])])
        .unwrap();
    assert_eq!((t.dims(), seq), (&[2, 1][..], vec![1, 2, 3, 4]));
    // Mismatched shapes within a batch.
    let b = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap();
    assert!(matches!(
        stack(&[a.clone(), b]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        stack::<f64>(&[]),
        Err(Error::ArgumentCount { .. })
    ));
}

#[test]
fn construction_errors() {
    assert!(matches!(
        DataLoader::new(Ids(3), 0),
        Err(Error::InvalidHyperparameter {
            name: "batch_size",
            ..
        })
    ));
    let x = Tensor::<f32>::zeros(&[4, 2]).unwrap();
    let y = Tensor::<f32>::zeros(&[5]).unwrap();
    assert!(matches!(
        TensorDataset::new(vec![x.clone(), y]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        TensorDataset::new(vec![Tensor::<f32>::scalar(1.0)]),
        Err(Error::BadRank { .. })
    ));
    assert!(matches!(
        TensorDataset::<f32>::new(vec![]),
        Err(Error::ArgumentCount { .. })
    ));
    assert!(matches!(
        LabeledDataset::new(x.clone(), vec![0usize; 3]),
        Err(Error::LabelCount {
            labels: 3,
            batch: 4,
            ..
        })
    ));
    let data = LabeledDataset::new(x, vec![0usize; 4]).unwrap();
    assert!(matches!(
        data.get(4),
        Err(Error::IndexOutOfRange {
            index: 4,
            len: 4,
            ..
        })
    ));
    assert!(matches!(
        Subset::new(Arc::new(Ids(5)), vec![0, 5]),
        Err(Error::IndexOutOfRange {
            position: 1,
            index: 5,
            ..
        })
    ));
    // A sampler that steps outside the data set.
    let loader = DataLoader::new(Ids(5), 2)
        .unwrap()
        .sampler(|len: usize, _epoch: u64| Ok((0..=len).collect()));
    assert!(matches!(
        loader.epoch(0),
        Err(Error::IndexOutOfRange {
            position: 5,
            index: 5,
            len: 5,
            ..
        })
    ));
}

#[test]
fn a_custom_sampler_sets_the_order() {
    // A two-rank split of a shuffled order, the shape of a distributed sampler.
    let rank = |r: usize| {
        move |len: usize, epoch: u64| -> Result<Vec<usize>> {
            let all = RandomSampler { seed: 11 }.indices(len, epoch)?;
            Ok(all.into_iter().skip(r).step_by(2).collect())
        }
    };
    let a = DataLoader::new(Ids(9), 2).unwrap().sampler(rank(0));
    let b = DataLoader::new(Ids(9), 2).unwrap().sampler(rank(1));
    let (a, b) = (batches(&a, 4).concat(), batches(&b, 4).concat());
    assert_eq!((a.len(), b.len()), (5, 4));
    let union: BTreeSet<usize> = a.iter().chain(&b).copied().collect();
    assert_eq!(union, (0..9).collect());
    // Repeats are allowed (sampling with replacement).
    let loader = DataLoader::new(Ids(3), 2)
        .unwrap()
        .sampler(|_: usize, _: u64| Ok(vec![2, 2, 0]));
    assert_eq!(batches(&loader, 0), [vec![2, 2], vec![0]]);
}

#[test]
fn random_split_partitions_with_pytorch_lengths() {
    // PyTorch 2.15: random_split(range(n), fractions) gives these lengths (floor, then the remainder
    // one by one from the first part).
    let cases: [(usize, &[f64], &[usize]); 4] = [
        (10, &[0.5, 0.3, 0.2], &[5, 3, 2]),
        (7, &[0.5, 0.5], &[4, 3]),
        (11, &[0.3, 0.3, 0.4], &[4, 3, 4]),
        (2, &[0.1, 0.1, 0.8], &[1, 0, 1]),
    ];
    for (len, fractions, lengths) in cases {
        let parts = random_split(len, fractions, 4).unwrap();
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), lengths);
        let mut all: Vec<usize> = parts.concat();
        all.sort_unstable();
        assert_eq!(all, (0..len).collect::<Vec<_>>());
    }
    let parts = random_split(20, &[5usize, 0, 15], 1).unwrap();
    assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [5, 0, 15]);
    assert_eq!(parts, random_split(20, &[5usize, 0, 15], 1).unwrap());
    assert_ne!(parts, random_split(20, &[5usize, 0, 15], 2).unwrap());

    // Errors: lengths not summing to the length, fractions not summing to 1, out of [0, 1].
    for bad in [
        random_split(10, &[3usize, 3], 0),
        random_split(10, &[0.5, 0.4], 0),
        random_split(10, &[0.5, 0.6], 0),
        random_split(10, &[1.5, -0.5], 0),
        random_split(10, &[f64::NAN, 1.0], 0),
        random_split(10, &[] as &[f64], 0),
    ] {
        assert!(
            matches!(
                bad,
                Err(Error::InvalidArgument { .. } | Error::InvalidHyperparameter { .. })
            ),
            "{bad:?}"
        );
    }

    // Of a data set: subsets reading through to it.
    let subsets = random_split_dataset(Ids(10), &[0.7, 0.3], 8).unwrap();
    let indices = random_split(10, &[0.7, 0.3], 8).unwrap();
    for (subset, indices) in subsets.iter().zip(&indices) {
        assert_eq!(subset.indices(), indices.as_slice());
        let items: Vec<usize> = (0..subset.len()).map(|i| subset.get(i).unwrap()).collect();
        assert_eq!(&items, indices);
    }
}

#[test]
fn digits_splits_feed_a_loader() {
    let digits = Digits::load_shipped().unwrap();
    assert_eq!(Dataset::len(&digits), 1797);
    let (image, label) = digits.get(5).unwrap();
    assert_eq!((image, label), (digits.images[5], digits.labels[5]));
    let (train, test) = digits.split::<f32>(360, 0).unwrap();
    // The split is a partition.
    assert_eq!(train.len() + test.len(), 1797);
    let loader = DataLoader::new(train.clone(), 64).unwrap().shuffle(2);
    let mut seen = 0;
    for batch in loader.epoch(0).unwrap() {
        let (x, labels) = batch.unwrap();
        assert_eq!(x.dims(), &[labels.len(), 64]);
        seen += labels.len();
    }
    assert_eq!(seen, 1437);
    // Item i of the split is row i of its features.
    let (row, label) = train.get(17).unwrap();
    assert_eq!(row.data(), &train.x.data()[17 * 64..18 * 64]);
    assert_eq!(label, train.labels[17]);
}
