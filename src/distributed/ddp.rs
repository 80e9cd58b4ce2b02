//! Gradient averaging across ranks: the data-parallel wrapper and its bucket layout.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::{Distributed, Fnv};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::grads::Gradients;
use crate::nn::Module;
use crate::optim::GradSource;
use crate::param::{Buffer, Param, ParamId};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// How tensors are cut into the flat buckets one collective call each moves: the tensors, in a
/// fixed order, laid end to end in one virtual vector, cut every `bucket_elems` elements (the
/// last bucket may be shorter; a tensor may straddle two buckets).
///
/// The layout depends only on the tensor sizes and the bucket size, so it is the same on every
/// rank and in every run: each element is always summed in the same bucket at the same offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketLayout {
    offsets: Vec<usize>,
    sizes: Vec<usize>,
    total: usize,
    bucket_elems: usize,
}

impl BucketLayout {
    /// The layout of tensors of `sizes` elements (in this order), in buckets of `bucket_elems`
    /// elements. Fails with [`Error::InvalidArgument`] if `bucket_elems` is 0 or the total
    /// overflows.
    pub fn new(sizes: &[usize], bucket_elems: usize) -> Result<Self> {
        let fail = |reason: String| Error::InvalidArgument {
            op: "BucketLayout::new",
            reason,
        };
        if bucket_elems == 0 {
            return Err(fail("the bucket size must be at least 1 element".into()));
        }
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut total = 0usize;
        for &n in sizes {
            offsets.push(total);
            total = total
                .checked_add(n)
                .ok_or_else(|| fail("the tensors hold more than usize::MAX elements".into()))?;
        }
        Ok(BucketLayout {
            offsets,
            sizes: sizes.to_vec(),
            total,
            bucket_elems,
        })
    }

    /// Elements of all tensors together.
    pub fn total_elements(&self) -> usize {
        self.total
    }

    /// Elements per bucket (the last may hold fewer).
    pub fn bucket_elems(&self) -> usize {
        self.bucket_elems
    }

    /// How many buckets (0 when there is nothing to move).
    pub fn num_buckets(&self) -> usize {
        self.total.div_ceil(self.bucket_elems)
    }

    /// Bucket `k`'s range in the virtual flat vector.
    pub fn bucket_range(&self, k: usize) -> Range<usize> {
        let start = k.saturating_mul(self.bucket_elems).min(self.total);
        start..start.saturating_add(self.bucket_elems).min(self.total)
    }

    /// The pieces of bucket `k`, in order: `(tensor index, range within the tensor, range within
    /// the bucket)`.
    pub fn pieces(&self, k: usize) -> Vec<(usize, Range<usize>, Range<usize>)> {
        let bucket = self.bucket_range(k);
        // The first tensor that ends after the bucket starts.
        let first = self
            .offsets
            .partition_point(|&o| o <= bucket.start)
            .saturating_sub(1);
        let mut out = Vec::new();
        for i in first..self.sizes.len() {
            let (o, n) = (self.offsets[i], self.sizes[i]);
            if o >= bucket.end {
                break;
            }
            let start = o.max(bucket.start);
            let end = (o + n).min(bucket.end);
            if start < end {
                out.push((
                    i,
                    start - o..end - o,
                    start - bucket.start..end - bucket.start,
                ));
            }
        }
        out
    }
}

/// Settings of [`DistributedDataParallel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DdpOptions {
    /// Bytes per all-reduce bucket (default 25 MiB, PyTorch's `bucket_cap_mb=25`). Part of the
    /// layout every rank must agree on; with more than 2 ranks another bucket size may change the
    /// last bits of the sums (MPI chooses its all-reduce algorithm by message size).
    pub bucket_bytes: usize,
}

impl Default for DdpOptions {
    fn default() -> Self {
        DdpOptions {
            bucket_bytes: 25 << 20,
        }
    }
}

/// Averaged gradients, one per parameter that had a gradient on at least one rank: what the
/// optimizers step on.
#[derive(Debug, Clone, Default)]
pub struct AveragedGradients<T: Float> {
    grads: HashMap<ParamId, Tensor<T>>,
}

impl<T: Float> AveragedGradients<T> {
    /// The averaged gradient of `param`.
    pub fn get(&self, param: &Param<T>) -> Option<&Tensor<T>> {
        self.grads.get(&param.id())
    }

    /// How many parameters have one.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether none has one.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
}

impl<T: Float> GradSource<T> for AveragedGradients<T> {
    fn grad(&self, param: &Param<T>) -> Option<&Tensor<T>> {
        self.get(param)
    }
}

/// Data-parallel training of one model: [`new`](Self::new) makes every rank's copy equal to rank
/// 0's, and [`reduce`](Self::reduce), after each backward pass, averages the gradients over the
/// ranks, so every rank takes the same optimizer step and the copies stay equal.
///
/// The gradients are copied, in the order the model visits its parameters, into flat buckets of
/// [`DdpOptions::bucket_bytes`] (see [`BucketLayout`]); each bucket is summed over the ranks with
/// one `MPI_Allreduce` and divided by the world size. A parameter without a gradient on a rank
/// counts as a zero gradient there (PyTorch's `find_unused_parameters=True`); one without a
/// gradient on every rank gets none, and the optimizer skips it.
///
/// With N ranks each taking the mean loss over B samples, the average of their gradients is the
/// gradient of the mean loss over the N·B samples — what one process with batch N·B computes —
/// up to the order of the additions (see `docs/distributed.md` for how close that is).
///
/// ```
/// use rand::SeedableRng;
/// use tapegrad::distributed::{self, DdpOptions, DistributedDataParallel};
/// use tapegrad::nn::{Context, CrossEntropyLoss, Forward, Linear, Module};
/// use tapegrad::optim::{Optimizer, Sgd, SgdConfig};
/// use tapegrad::{Tape, Tensor};
///
/// let dist = distributed::Distributed::local(); // `distributed::init()?` in a real program
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let model = Linear::<f64>::new(4, 3, &mut rng)?;
/// let mut ddp = DistributedDataParallel::new(&dist, &model, DdpOptions::default())?;
/// let mut sgd = Sgd::new(model.named_params(), SgdConfig { lr: 0.1, ..Default::default() })?;
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::normal(&[6, 4], 0.0, 1.0, &mut rng)?);
/// let loss = CrossEntropyLoss::default().forward(model.forward(&mut Context::eval(), x)?, &[0, 1, 2, 0, 1, 2])?;
/// let grads = ddp.reduce(&dist, loss.backward()?)?;
/// sgd.step(&grads)?;
/// # Ok::<(), tapegrad::Error>(())
/// ```
///
/// PyTorch equivalent: `torch.nn.parallel.DistributedDataParallel(model)` with the MPI backend.
/// PyTorch starts all-reducing buckets while the backward pass is still running; here the
/// backward pass finishes first (a tape's backward is one call), then the buckets go in order.
#[derive(Debug)]
pub struct DistributedDataParallel<T: Float> {
    params: Vec<(String, Param<T>)>,
    buffers: Vec<(String, Buffer<T>)>,
    /// The shapes of the parameters, then the buffers, when the wrapper was made: the layout
    /// every rank agreed on.
    shapes: Vec<Shape>,
    grad_layout: BucketLayout,
    state_layout: BucketLayout,
    send: Vec<T>,
    recv: Vec<T>,
}

impl<T: Float> DistributedDataParallel<T> {
    /// Wraps `model` (the wrapper keeps handles to its parameters and buffers) and overwrites
    /// every rank's parameters and buffers with rank 0's. Every rank must call it with the same
    /// model layout; otherwise every rank fails with the same [`Error::InvalidArgument`] (checked
    /// with a fingerprint of the names, shapes, element type and bucket size).
    pub fn new<M: Module<T> + ?Sized>(
        dist: &Distributed,
        model: &M,
        options: DdpOptions,
    ) -> Result<Self> {
        let op = "DistributedDataParallel::new";
        let params = model.named_params();
        let buffers = model.named_buffers();
        let mut names = HashSet::new();
        for name in params
            .iter()
            .map(|(n, _)| n)
            .chain(buffers.iter().map(|(n, _)| n))
        {
            if !names.insert(name.as_str()) {
                return Err(Error::DuplicateName {
                    op,
                    name: name.clone(),
                });
            }
        }
        let bucket_elems = (options.bucket_bytes / T::BYTES).max(1);
        let param_sizes: Vec<usize> = params.iter().map(|(_, p)| p.shape().numel()).collect();
        let state_sizes: Vec<usize> = param_sizes
            .iter()
            .copied()
            .chain(buffers.iter().map(|(_, b)| b.shape().numel()))
            .collect();
        // The gradients, then one presence flag per parameter (so the flags travel in the last
        // bucket instead of a collective call of their own).
        let grad_sizes: Vec<usize> = param_sizes.iter().copied().chain([params.len()]).collect();
        let grad_layout = BucketLayout::new(&grad_sizes, bucket_elems)?;
        let state_layout = BucketLayout::new(&state_sizes, bucket_elems)?;

        let mut fingerprint = Fnv::new()
            .bytes(T::DTYPE.as_bytes())
            .u64(bucket_elems as u64);
        for (kind, name, dims) in params
            .iter()
            .map(|(n, p)| ("param", n, p.shape().dims().to_vec()))
            .chain(
                buffers
                    .iter()
                    .map(|(n, b)| ("buffer", n, b.shape().dims().to_vec())),
            )
        {
            fingerprint = fingerprint.bytes(kind.as_bytes()).bytes(name.as_bytes());
            fingerprint = fingerprint.u64(dims.len() as u64);
            for d in dims {
                fingerprint = fingerprint.u64(d as u64);
            }
        }
        dist.check_same(op, "the model layout", fingerprint.finish())?;

        let shapes = params
            .iter()
            .map(|(_, p)| p.shape())
            .chain(buffers.iter().map(|(_, b)| b.shape()))
            .collect();
        let mut ddp = DistributedDataParallel {
            shapes,
            params,
            buffers,
            grad_layout,
            state_layout,
            send: Vec::new(),
            recv: Vec::new(),
        };
        ddp.broadcast_state(dist)?;
        Ok(ddp)
    }

    /// The parameters, by name, in the order their gradients are bucketed.
    pub fn named_params(&self) -> &[(String, Param<T>)] {
        &self.params
    }

    /// The layout of the gradient buckets: the parameters' gradients in visiting order, then one
    /// presence flag per parameter.
    pub fn bucket_layout(&self) -> &BucketLayout {
        &self.grad_layout
    }

    /// Makes buffers with `bucket_elems` elements each, from the pool.
    fn reserve(&mut self, op: &'static str) -> Result<()> {
        let want = self.state_layout.bucket_elems.min(
            self.state_layout
                .total_elements()
                .max(self.grad_layout.total_elements()),
        );
        for buf in [&mut self.send, &mut self.recv] {
            if buf.capacity() < want {
                buf.try_reserve_exact(want - buf.len())
                    .map_err(|_| Error::OutOfMemory {
                        op,
                        bytes: (want as u128) * T::BYTES as u128,
                    })?;
            }
        }
        Ok(())
    }

    /// Overwrites every rank's parameters and buffers with rank 0's (done by `new`; call it again
    /// after loading a checkpoint on rank 0 only, or to re-synchronise running statistics, like
    /// PyTorch's `broadcast_buffers=True`).
    pub fn broadcast_state(&mut self, dist: &Distributed) -> Result<()> {
        let op = "DistributedDataParallel::broadcast_state";
        self.reserve(op)?;
        let values: Vec<std::sync::Arc<Tensor<T>>> = self
            .params
            .iter()
            .map(|(_, p)| p.value())
            .chain(self.buffers.iter().map(|(_, b)| b.value()))
            .collect();
        for (v, shape) in values.iter().zip(&self.shapes) {
            self.check_shape(op, shape, v)?;
        }
        let mut fresh = values
            .iter()
            .map(|v| v.try_clone())
            .collect::<Result<Vec<_>>>()?;
        for k in 0..self.state_layout.num_buckets() {
            let range = self.state_layout.bucket_range(k);
            self.send.clear();
            self.send.resize(range.len(), T::ZERO);
            for (i, within, at) in self.state_layout.pieces(k) {
                self.send[at].copy_from_slice(&values[i].data()[within]);
            }
            dist.broadcast_from_rank0(&mut self.send)?;
            for (i, within, at) in self.state_layout.pieces(k) {
                fresh[i].data_mut()[within].copy_from_slice(&self.send[at]);
            }
        }
        let mut fresh = fresh.into_iter();
        for ((_, p), value) in self.params.iter().zip(fresh.by_ref()) {
            p.set(value);
        }
        for ((_, b), value) in self.buffers.iter().zip(fresh) {
            b.set(value);
        }
        Ok(())
    }

    /// Averages one backward pass's parameter gradients over all ranks (see the type's docs).
    /// Every rank must call it once per step. Fails with [`Error::ShapeMismatch`] if a gradient's
    /// shape is not the one its parameter had when the wrapper was made.
    ///
    /// The gradients are consumed: their tensors are reused for the averages.
    pub fn reduce(
        &mut self,
        dist: &Distributed,
        mut grads: Gradients<T>,
    ) -> Result<AveragedGradients<T>> {
        let op = "DistributedDataParallel::reduce";
        self.reserve(op)?;
        // Each parameter's gradient, zeros where this rank has none (the sum over ranks of the
        // presence flags says which parameters have one anywhere; counts are exact in floating
        // point for any realistic world size).
        let mut full = Vec::with_capacity(self.params.len());
        let mut present = Vec::with_capacity(self.params.len());
        for ((_, p), shape) in self.params.iter().zip(&self.shapes) {
            match grads.take_param(p) {
                Some(g) => {
                    self.check_shape(op, shape, &g)?;
                    full.push(g);
                    present.push(T::ONE);
                }
                None => {
                    full.push(Tensor::zeros(shape.dims())?);
                    present.push(T::ZERO);
                }
            }
        }
        let flags = full.len();
        let mut counts = present.clone();
        let world = T::from_f64(dist.world_size() as f64);
        for k in 0..self.grad_layout.num_buckets() {
            let range = self.grad_layout.bucket_range(k);
            self.send.clear();
            self.send.resize(range.len(), T::ZERO);
            let pieces = self.grad_layout.pieces(k);
            for (i, within, at) in &pieces {
                let source = if *i == flags {
                    &present[within.clone()]
                } else {
                    &full[*i].data()[within.clone()]
                };
                self.send[at.clone()].copy_from_slice(source);
            }
            dist.all_reduce_sum(&mut self.send, &mut self.recv)?;
            for (i, within, at) in pieces {
                if i == flags {
                    counts[within].copy_from_slice(&self.recv[at]);
                    continue;
                }
                for (out, &sum) in full[i].data_mut()[within].iter_mut().zip(&self.recv[at]) {
                    *out = sum / world;
                }
            }
        }
        let grads = self
            .params
            .iter()
            .zip(full)
            .zip(counts)
            .filter(|(_, count)| *count > T::ZERO)
            .map(|(((_, p), g), _)| (p.id(), g))
            .collect();
        Ok(AveragedGradients { grads })
    }

    /// Fails with [`Error::ShapeMismatch`] unless `tensor` has the shape the ranks agreed on
    /// (a parameter replaced by one of another shape after the wrapper was made).
    fn check_shape(&self, op: &'static str, agreed: &Shape, tensor: &Tensor<T>) -> Result<()> {
        if tensor.shape() == agreed {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                op,
                lhs: agreed.clone(),
                rhs: tensor.shape().clone(),
            })
        }
    }

    /// A fingerprint of the exact bits of every parameter and buffer: equal on every rank while
    /// the copies are in sync.
    pub fn state_fingerprint(&self) -> u64 {
        let mut h = Fnv::new();
        let values = self
            .params
            .iter()
            .map(|(_, p)| p.value())
            .chain(self.buffers.iter().map(|(_, b)| b.value()));
        for v in values {
            for &x in v.data() {
                h = h.u64(x.to_f64().to_bits());
            }
        }
        h.finish()
    }

    /// Fails on every rank unless every rank's parameters and buffers are bit for bit equal.
    pub fn check_in_sync(&self, dist: &Distributed) -> Result<()> {
        dist.check_same(
            "DistributedDataParallel::check_in_sync",
            "the parameter values",
            self.state_fingerprint(),
        )
    }
}
