//! Reductions that pick an element: `max` and `min` (with the indices of the chosen elements),
//! `amax` and `amin`, `argmax` and `argmin` — and the plan every reduction along an axis in this
//! family of files shares ([`Plan`]).
//!
//! **Which element.** Along each slice the largest (smallest) element is chosen; among equal
//! elements the *first* one, as PyTorch does on CPU; a NaN beats every number (the result is NaN
//! and its index is the first NaN's), as in PyTorch.
//!
//! **Gradients at ties.** The two families differ, as they do in PyTorch:
//! - `max`/`min` return indices, and the gradient goes to the chosen index only:
//!   ∂L/∂xᵢ = g if i is the index, else exactly 0 (PyTorch's `value_selecting_reduction_backward`).
//! - `amax`/`amin` split the gradient evenly among all elements equal to the result:
//!   ∂L/∂xᵢ = (g / c) · [xᵢ = y], with c the number of such elements (PyTorch's
//!   `scale_grad_by_count`). A slice holding NaN has no element equal to its NaN result, so c = 0 and
//!   the gradient is (g / 0) · 0 = NaN, again as in PyTorch.
//!
//! Both are linear in g with a routing fixed by the forward pass, so their second derivative is 0.
//! The graph path applies the same routing with recorded ops: a dedicated node for the index routing
//! (whose own backward is the opposite routing), and a multiplication by constant weights for the
//! even split.
//!
//! **Empty slices.** The maximum of no elements is undefined: reducing along an axis of size 0 (or
//! over every element of an empty tensor) is an [`Error::InvalidArgument`], as PyTorch raises.

use std::sync::Arc;

use smallvec::{SmallVec, smallvec};

use super::{Backward, BackwardCx, GraphCx, InputGrads, InputVars};
use crate::element::Float;
use crate::error::{Error, Result};
use crate::indices::Indices;
use crate::kernels::pool;
use crate::shape::Shape;
use crate::tape::Var;
use crate::tensor::Tensor;

/// Where a reduction runs: the `[outer, len, inner]` view of its input (see `Shape::around`),
/// the output's shape, and the input's shape with the reduced axes kept as size 1 (the shape a
/// gradient is viewed as before it is spread back along the reduced axis).
///
/// `axis: None` reduces every element (`outer = inner = 1`, `len = numel`). A rank-0 input
/// accepts axis 0 and −1 and is a slice of one element, as in PyTorch.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) outer: usize,
    pub(crate) len: usize,
    pub(crate) inner: usize,
    /// The output's shape (`kept` if keepdim, else without the reduced axes).
    pub(crate) out: Shape,
    /// The input's shape with every reduced axis set to 1.
    pub(crate) kept: Shape,
    /// Whether every element is reduced (no axis, or a rank-0 input): PyTorch's `var` backward
    /// treats this case apart.
    pub(crate) all: bool,
}

impl Plan {
    pub(crate) fn new(
        op: &'static str,
        shape: &Shape,
        axis: Option<isize>,
        keepdim: bool,
    ) -> Result<Plan> {
        let rank = shape.rank();
        match axis {
            None => {
                let kept = Shape::checked(SmallVec::from_elem(1, rank))?;
                let out = if keepdim {
                    kept.clone()
                } else {
                    Shape::scalar()
                };
                Ok(Plan {
                    outer: 1,
                    len: shape.numel(),
                    inner: 1,
                    out,
                    kept,
                    all: true,
                })
            }
            Some(axis) if rank == 0 => {
                if axis == 0 || axis == -1 {
                    Ok(Plan {
                        outer: 1,
                        len: 1,
                        inner: 1,
                        out: Shape::scalar(),
                        kept: Shape::scalar(),
                        all: true,
                    })
                } else {
                    Err(Error::AxisOutOfRange {
                        op,
                        axis,
                        shape: shape.clone(),
                    })
                }
            }
            Some(axis) => {
                let axis = shape.axis(op, axis)?;
                let (outer, len, inner) = shape.around(axis);
                let mut kept: SmallVec<[usize; 4]> = SmallVec::from_slice(shape.dims());
                kept[axis] = 1;
                let kept = Shape::checked(kept)?;
                let out = if keepdim {
                    kept.clone()
                } else {
                    let mut dims: SmallVec<[usize; 4]> = SmallVec::from_slice(shape.dims());
                    dims.remove(axis);
                    Shape::checked(dims)?
                };
                Ok(Plan {
                    outer,
                    len,
                    inner,
                    out,
                    kept,
                    all: false,
                })
            }
        }
    }

    /// The `[outer, len, inner]` dimensions, for viewing a `Var` in the graph path.
    pub(crate) fn view3(&self) -> [usize; 3] {
        [self.outer, self.len, self.inner]
    }

    /// The `[outer, 1, inner]` dimensions of a reduced value viewed beside [`Plan::view3`].
    pub(crate) fn reduced3(&self) -> [usize; 3] {
        [self.outer, 1, self.inner]
    }

    /// Fails for a reduction over no elements whose result would be undefined (max, min, the
    /// ∞-norm), naming the op, the shape and the axis.
    pub(crate) fn require_elements(
        &self,
        op: &'static str,
        shape: &Shape,
        axis: Option<isize>,
    ) -> Result<()> {
        if self.len > 0 {
            return Ok(());
        }
        let over = match axis {
            Some(axis) => format!("axis {axis} of size 0"),
            None => "every element".to_string(),
        };
        Err(Error::InvalidArgument {
            op,
            reason: format!(
                "cannot reduce over {over} of an empty tensor of shape {shape}: the result of no elements is undefined"
            ),
        })
    }

    /// Bytes of the plan itself (its dimensions), for `saved_bytes`.
    pub(crate) fn saved_bytes(&self) -> usize {
        (self.out.rank() + self.kept.rank() + 3) * std::mem::size_of::<usize>()
    }
}

/// `out[o·inner + i] = f(x[o, l, i]  for every l, …)` — calls `f(x, r)` for each element of an
/// `[outer, len, inner]` input with the matching element `r` of a reduced `[outer, inner]` operand,
/// writing the results in input order. The inner loop runs over contiguous rows of both.
pub(crate) fn map_along<T: Float>(
    x: &[T],
    reduced: &[T],
    plan: &Plan,
    out: &mut [T],
    f: impl Fn(T, T) -> T,
) {
    if x.is_empty() {
        return;
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        // Contiguous slices: one reduced value per slice.
        for ((xs, os), &r) in x
            .chunks_exact(len)
            .zip(out.chunks_exact_mut(len))
            .zip(reduced)
        {
            for (o, &xv) in os.iter_mut().zip(xs) {
                *o = f(xv, r);
            }
        }
        return;
    }
    for ((xs, os), rs) in x
        .chunks_exact(len * inner)
        .zip(out.chunks_exact_mut(len * inner))
        .zip(reduced.chunks_exact(inner))
    {
        for (xrow, orow) in xs.chunks_exact(inner).zip(os.chunks_exact_mut(inner)) {
            for ((o, &xv), &r) in orow.iter_mut().zip(xrow).zip(rs) {
                *o = f(xv, r);
            }
        }
    }
}

/// [`map_along`] with two reduced operands: `f(x, a, b)`.
pub(crate) fn map_along2<T: Float>(
    x: &[T],
    a: &[T],
    b: &[T],
    plan: &Plan,
    out: &mut [T],
    f: impl Fn(T, T, T) -> T,
) {
    if x.is_empty() {
        return;
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        for (((xs, os), &av), &bv) in x
            .chunks_exact(len)
            .zip(out.chunks_exact_mut(len))
            .zip(a)
            .zip(b)
        {
            for (o, &xv) in os.iter_mut().zip(xs) {
                *o = f(xv, av, bv);
            }
        }
        return;
    }
    for (((xs, os), ars), brs) in x
        .chunks_exact(len * inner)
        .zip(out.chunks_exact_mut(len * inner))
        .zip(a.chunks_exact(inner))
        .zip(b.chunks_exact(inner))
    {
        for (xrow, orow) in xs.chunks_exact(inner).zip(os.chunks_exact_mut(inner)) {
            for (((o, &xv), &av), &bv) in orow.iter_mut().zip(xrow).zip(ars).zip(brs) {
                *o = f(xv, av, bv);
            }
        }
    }
}

/// Counts, for each reduced element r, the elements x of its slice with `hit(x, r)`; into `out`
/// (`[outer, inner]`, overwritten). Counts are exact integers in T up to 2²⁴ (f32) or 2⁵³.
pub(crate) fn count_along<T: Float>(
    x: &[T],
    reduced: &[T],
    plan: &Plan,
    out: &mut [T],
    hit: impl Fn(T, T) -> bool,
) {
    out.fill(T::ZERO);
    if x.is_empty() {
        return;
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        for ((xs, o), &r) in x.chunks_exact(len).zip(out.iter_mut()).zip(reduced) {
            *o = T::from_f64(xs.iter().filter(|&&xv| hit(xv, r)).count() as f64);
        }
        return;
    }
    for ((xs, os), rs) in x
        .chunks_exact(len * inner)
        .zip(out.chunks_exact_mut(inner))
        .zip(reduced.chunks_exact(inner))
    {
        for xrow in xs.chunks_exact(inner) {
            for ((o, &xv), &r) in os.iter_mut().zip(xrow).zip(rs) {
                if hit(xv, r) {
                    *o += T::ONE;
                }
            }
        }
    }
}

/// Which extreme a selection looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extreme {
    Max,
    Min,
}

impl Extreme {
    /// Whether `candidate` replaces the current choice: strictly better (so the first of equal
    /// elements stays chosen), and a NaN beats every number (PyTorch propagates NaN).
    #[inline]
    pub(crate) fn better<T: Float>(self, candidate: T, current: T) -> bool {
        let strictly = match self {
            Extreme::Max => candidate > current,
            Extreme::Min => candidate < current,
        };
        strictly || (candidate.is_nan() && !current.is_nan())
    }
}

/// The chosen element of every slice of `x` (viewed as `[outer, len, inner]`, `len ≥ 1`): its
/// value into `values` and its position along the axis into `positions` (both `[outer, inner]`).
/// The value is read through `key` (identity, or |x| for the ∞-norm).
pub(crate) fn select_along<T: Float>(
    x: &[T],
    plan: &Plan,
    extreme: Extreme,
    key: impl Fn(T) -> T,
    values: &mut [T],
    positions: &mut [u64],
) {
    if values.is_empty() || x.is_empty() {
        return;
    }
    let (len, inner) = (plan.len, plan.inner);
    if inner == 1 {
        for ((row, v), p) in x.chunks_exact(len).zip(values.iter_mut()).zip(positions) {
            let (mut best, mut at) = (key(row[0]), 0usize);
            for (l, &candidate) in row.iter().enumerate().skip(1) {
                let candidate = key(candidate);
                if extreme.better(candidate, best) {
                    best = candidate;
                    at = l;
                }
            }
            *v = best;
            *p = at as u64;
        }
        return;
    }
    for ((block, vs), ps) in x
        .chunks_exact(len * inner)
        .zip(values.chunks_exact_mut(inner))
        .zip(positions.chunks_exact_mut(inner))
    {
        let mut rows = block.chunks_exact(inner);
        // len ≥ 1 and the block is len·inner long: the first row exists.
        if let Some(first) = rows.next() {
            for (v, &x) in vs.iter_mut().zip(first) {
                *v = key(x);
            }
            ps.fill(0);
        }
        for (l, row) in rows.enumerate() {
            for ((v, p), &candidate) in vs.iter_mut().zip(ps.iter_mut()).zip(row) {
                let candidate = key(candidate);
                if extreme.better(candidate, *v) {
                    *v = candidate;
                    *p = (l + 1) as u64;
                }
            }
        }
    }
}

/// The values and positions of the chosen elements, as a tensor of `plan.out` and a position
/// buffer; fails for an empty slice.
fn select<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    axis: Option<isize>,
    keepdim: bool,
    extreme: Extreme,
) -> Result<(Tensor<T>, Vec<u64>, Plan)> {
    let plan = Plan::new(op, x.shape(), axis, keepdim)?;
    plan.require_elements(op, x.shape(), axis)?;
    let mut values = Tensor::overwritable(op, plan.out.clone())?;
    let mut positions = pool::try_dirty::<u64>(op, plan.out.numel())?;
    select_along(
        x.data(),
        &plan,
        extreme,
        |v| v,
        values.data_mut(),
        &mut positions,
    );
    Ok((values, positions, plan))
}

fn indices(positions: &[u64], shape: &Shape) -> Result<Indices> {
    Indices::new(positions, shape.dims())
}

impl<T: Float> Tensor<T> {
    /// Position of the largest element along `axis` (the first one among equals; the first NaN if
    /// any), or of the whole tensor flattened for `axis: None`. Fails for an empty slice.
    ///
    /// PyTorch equivalent: `torch.argmax(x, dim=axis, keepdim=keepdim)`.
    pub fn argmax(&self, axis: Option<isize>, keepdim: bool) -> Result<Indices> {
        let (_, positions, plan) = select("argmax", self, axis, keepdim, Extreme::Max)?;
        indices(&positions, &plan.out)
    }

    /// Position of the smallest element along `axis` (the first one among equals; the first NaN if
    /// any), or of the whole tensor flattened for `axis: None`. Fails for an empty slice.
    ///
    /// PyTorch equivalent: `torch.argmin(x, dim=axis, keepdim=keepdim)`.
    pub fn argmin(&self, axis: Option<isize>, keepdim: bool) -> Result<Indices> {
        let (_, positions, plan) = select("argmin", self, axis, keepdim, Extreme::Min)?;
        indices(&positions, &plan.out)
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// The largest element along `axis` and its index (the first among equals; a NaN wins).
    /// The gradient goes to that index only: ∂L/∂xᵢ = g·[i = index].
    ///
    /// An axis of size 0 is an error, as in PyTorch. For the maximum of every element use
    /// [`Var::amax`] with `None` (PyTorch's `x.max()` also splits its gradient among ties).
    ///
    /// PyTorch equivalent: `torch.max(x, dim=axis, keepdim=keepdim)`.
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0f64, 3.0, 3.0, 2.0, 5.0, 0.0], &[2, 3])?);
    /// let (values, indices) = x.max(1, false)?;
    /// assert_eq!(values.value().data(), &[3.0, 5.0]);
    /// assert_eq!(indices.values(), &[1, 1]); // the first of the two 3s
    /// let g = values.sum()?.backward()?;
    /// assert_eq!(g.wrt(x)?.data(), &[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn max(self, axis: isize, keepdim: bool) -> Result<(Var<'t, T>, Indices)> {
        self.select_with_indices("max", axis, keepdim, Extreme::Max)
    }

    /// The smallest element along `axis` and its index (the first among equals; a NaN wins).
    /// The gradient goes to that index only: ∂L/∂xᵢ = g·[i = index].
    ///
    /// PyTorch equivalent: `torch.min(x, dim=axis, keepdim=keepdim)`.
    pub fn min(self, axis: isize, keepdim: bool) -> Result<(Var<'t, T>, Indices)> {
        self.select_with_indices("min", axis, keepdim, Extreme::Min)
    }

    fn select_with_indices(
        self,
        op: &'static str,
        axis: isize,
        keepdim: bool,
        extreme: Extreme,
    ) -> Result<(Var<'t, T>, Indices)> {
        let x = self.value();
        let (values, positions, plan) = select(op, &x, Some(axis), keepdim, extreme)?;
        let indices = indices(&positions, &plan.out)?;
        let route = Arc::new(Route {
            positions,
            len: plan.len,
            inner: plan.inner,
            small: plan.out,
            full: x.shape().clone(),
        });
        let out = self.tape.record(op, values, &[self], || RouteBackward {
            route,
            op_places: false,
        });
        Ok((out, indices))
    }

    /// The largest element along `axis` (`None`: of every element). The gradient is split evenly
    /// among the elements equal to it: ∂L/∂xᵢ = (g / c)·[xᵢ = y], c = #{i : xᵢ = y}.
    ///
    /// PyTorch equivalent: `torch.amax(x, dim=axis, keepdim=keepdim)` (`dim=()` for `None`).
    ///
    /// ```
    /// use tapegrad::{Tape, Tensor};
    /// let tape = Tape::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![3.0f64, 1.0, 3.0], &[3])?);
    /// let y = x.amax(None, false)?;
    /// assert_eq!(y.value().item()?, 3.0);
    /// assert_eq!(y.backward()?.wrt(x)?.data(), &[0.5, 0.0, 0.5]); // split between the ties
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn amax(self, axis: Option<isize>, keepdim: bool) -> Result<Var<'t, T>> {
        self.select_split("amax", axis, keepdim, Extreme::Max)
    }

    /// The smallest element along `axis` (`None`: of every element). The gradient is split evenly
    /// among the elements equal to it: ∂L/∂xᵢ = (g / c)·[xᵢ = y].
    ///
    /// PyTorch equivalent: `torch.amin(x, dim=axis, keepdim=keepdim)` (`dim=()` for `None`).
    pub fn amin(self, axis: Option<isize>, keepdim: bool) -> Result<Var<'t, T>> {
        self.select_split("amin", axis, keepdim, Extreme::Min)
    }

    fn select_split(
        self,
        op: &'static str,
        axis: Option<isize>,
        keepdim: bool,
        extreme: Extreme,
    ) -> Result<Var<'t, T>> {
        let x = self.value();
        let (values, _, plan) = select(op, &x, axis, keepdim, extreme)?;
        Ok(self
            .tape
            .record(op, values, &[self], || SplitBackward { op, plan }))
    }

    /// Position of the largest element along `axis` (`None`: in the flattened tensor); the first
    /// among equals, the first NaN if any. Not differentiable (it returns integers).
    ///
    /// PyTorch equivalent: `torch.argmax(x, dim=axis, keepdim=keepdim)`.
    pub fn argmax(self, axis: Option<isize>, keepdim: bool) -> Result<Indices> {
        self.value().argmax(axis, keepdim)
    }

    /// Position of the smallest element along `axis` (`None`: in the flattened tensor); the first
    /// among equals, the first NaN if any. Not differentiable.
    ///
    /// PyTorch equivalent: `torch.argmin(x, dim=axis, keepdim=keepdim)`.
    pub fn argmin(self, axis: Option<isize>, keepdim: bool) -> Result<Indices> {
        self.value().argmin(axis, keepdim)
    }
}

/// The index routing of `max`/`min`: for each element of the small (reduced) tensor, its position
/// along the axis of the full one.
#[derive(Debug)]
struct Route {
    positions: Vec<u64>,
    len: usize,
    inner: usize,
    small: Shape,
    full: Shape,
}

impl Route {
    /// Full-shaped zeros with `g[r]` placed at each chosen position (PyTorch's
    /// `zeros.scatter(dim, indices, grad)`: exact zeros elsewhere, whatever g holds).
    fn place<T: Float>(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        let mut out = Tensor::full_shape(self.full.clone(), T::ZERO)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        let data = out.data_mut();
        let (len, inner) = (self.len, self.inner);
        for (r, (&p, &gv)) in self.positions.iter().zip(g.data()).enumerate() {
            let (o, i) = (r / inner, r % inner);
            data[(o * len + p as usize) * inner + i] = gv;
        }
        Ok(out)
    }

    /// The small-shaped values of a full-shaped `h` at the chosen positions.
    fn pick<T: Float>(&self, h: &Tensor<T>) -> Result<Tensor<T>> {
        let (len, inner) = (self.len, self.inner);
        let data = h.data();
        let values = pool::try_collect(
            "max",
            self.positions.len(),
            self.positions.iter().enumerate().map(|(r, &p)| {
                let (o, i) = (r / inner, r % inner);
                data[(o * len + p as usize) * inner + i]
            }),
        )?;
        Tensor::from_shape_vec(values, self.small.clone())
    }

    fn bytes(&self) -> usize {
        self.positions.len() * std::mem::size_of::<u64>()
            + (self.small.rank() + self.full.rank() + 3) * std::mem::size_of::<usize>()
    }
}

/// Backward of an op that moves elements by a fixed [`Route`]: `max`/`min` pick (full → small), so
/// their backward places g; the graph path records the placement as a node whose backward picks,
/// and so on: each direction is the other's backward, both linear in their input.
#[derive(Debug)]
struct RouteBackward {
    route: Arc<Route>,
    /// Whether the op this rule belongs to placed (small → full) rather than picked.
    op_places: bool,
}

impl RouteBackward {
    fn apply<T: Float>(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        if self.op_places {
            self.route.pick(g)
        } else {
            self.route.place(g)
        }
    }
}

impl<T: Float> Backward<T> for RouteBackward {
    fn backward(&self, _cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        Ok(smallvec![Some(self.apply(g)?)])
    }

    fn backward_graph<'t>(&self, _cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let value = self.apply(&g.value())?;
        let name = if self.op_places {
            "route_pick"
        } else {
            "route_place"
        };
        Ok(smallvec![Some(g.tape.record(name, value, &[g], || {
            RouteBackward {
                route: Arc::clone(&self.route),
                op_places: !self.op_places,
            }
        }))])
    }

    fn saved_bytes(&self) -> usize {
        self.route.bytes()
    }

    fn describe_saved(&self) -> String {
        format!(
            "{} positions along an axis of {}",
            self.route.positions.len(),
            self.route.len
        )
    }
}

/// Backward of `amax`/`amin`: g split evenly among the elements equal to the result. Saves the
/// plan; x and y are on the tape.
#[derive(Debug)]
struct SplitBackward {
    op: &'static str,
    plan: Plan,
}

impl SplitBackward {
    /// The number of elements equal to the result in each slice, `[outer, inner]`.
    fn counts<T: Float>(&self, x: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
        let mut counts = Tensor::overwritable(self.op, self.plan.kept.clone())?;
        count_along(x.data(), y.data(), &self.plan, counts.data_mut(), |x, y| {
            x == y
        });
        Ok(counts)
    }
}

impl<T: Float> Backward<T> for SplitBackward {
    fn backward(&self, cx: &BackwardCx<'_, T>, g: &Tensor<T>) -> Result<InputGrads<T>> {
        let (x, y) = (cx.input(0), cx.output());
        // (g / c) · [x = y], in PyTorch's order.
        let share = g.zip_map(
            &self.counts(x, y)?.into_reshaped(g.shape().clone())?,
            self.op,
            |g, c| g / c,
        )?;
        let mut dx = Tensor::overwritable(self.op, x.shape().clone())?;
        map_along2(
            x.data(),
            share.data(),
            y.data(),
            &self.plan,
            dx.data_mut(),
            |x, share, y| share * if x == y { T::ONE } else { T::ZERO },
        );
        Ok(smallvec![Some(dx)])
    }

    /// The same split as a division by constant counts and a product with a constant mask: linear
    /// in g, constant in x (the second derivative is 0).
    fn backward_graph<'t>(&self, cx: &GraphCx<'t, T>, g: Var<'t, T>) -> Result<InputVars<'t, T>> {
        let (x, y) = (cx.input(0).value(), cx.output().value());
        let counts = cx.tape().constant(self.counts(&x, &y)?);
        let mut mask = Tensor::overwritable(self.op, x.shape().clone())?;
        map_along(x.data(), y.data(), &self.plan, mask.data_mut(), |x, y| {
            if x == y { T::ONE } else { T::ZERO }
        });
        let dx = g
            .reshape(self.plan.kept.dims())?
            .div(counts)?
            .broadcast_to(x.shape())?
            .mul(cx.tape().constant(mask))?;
        Ok(smallvec![Some(dx)])
    }

    fn saved_bytes(&self) -> usize {
        self.plan.saved_bytes()
    }

    fn describe_saved(&self) -> String {
        format!("slices of {} (reads its input and output)", self.plan.len)
    }
}
