//! A packed mask of bits, one per tensor element: what dropout saves for its backward pass.
//!
//! A dropout over a `[128, 64]` activation keeps 8192 decisions. As bytes (PyTorch's `bool` mask) that
//! is 8 KiB; packed here it is 1 KiB.

use rand::Rng;
use rand_pcg::Pcg64;
use rayon::prelude::*;

use crate::kernels::pool;

/// Elements per independent random stream. Fixed, so a mask never depends on how it is computed.
pub const MASK_CHUNK: usize = 1 << 14;

/// A fixed-length sequence of bits stored 64 to a word.
///
/// ```
/// use tapegrad::BitMask;
/// let m = BitMask::from_bools(&[true, false, true])?;
/// assert_eq!((m.len(), m.count_ones()), (3, 2));
/// assert!(m.get(2) && !m.get(1));
/// # Ok::<(), tapegrad::Error>(())
/// ```
#[derive(PartialEq, Eq, Hash)]
pub struct BitMask {
    words: Vec<u64>,
    len: usize,
}

impl Clone for BitMask {
    /// A copy; like [`Tensor`](crate::Tensor)'s, it aborts if memory runs out, and the library uses
    /// [`BitMask::try_clone`] instead.
    fn clone(&self) -> Self {
        BitMask {
            words: self.words.clone(),
            len: self.len,
        }
    }
}

impl Drop for BitMask {
    /// Large masks go back to this thread's buffer cache, like tensors.
    fn drop(&mut self) {
        pool::recycle(std::mem::take(&mut self.words));
    }
}

impl BitMask {
    /// `len` bits, all clear. Fails with [`Error::OutOfMemory`](crate::Error::OutOfMemory) if
    /// the words cannot be allocated.
    pub fn zeros(len: usize) -> crate::Result<Self> {
        Ok(BitMask {
            words: pool::try_zeroed("BitMask", len.div_ceil(64))?,
            len,
        })
    }

    /// `len` bits, all set.
    pub fn ones(len: usize) -> crate::Result<Self> {
        let mut mask = BitMask {
            words: pool::try_filled("BitMask", len.div_ceil(64), u64::MAX)?,
            len,
        };
        mask.clear_tail();
        Ok(mask)
    }

    /// Bit `i` is `f(i)`.
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> bool) -> crate::Result<Self> {
        let mut mask = Self::zeros(len)?;
        for (w, word) in mask.words.iter_mut().enumerate() {
            let start = w * 64;
            for b in 0..64.min(len - start) {
                *word |= (f(start + b) as u64) << b;
            }
        }
        Ok(mask)
    }

    /// Bit `i` is `predicate(values[i])`, one 64-bit word at a time.
    pub fn from_predicate<T: Copy>(
        values: &[T],
        predicate: impl Fn(T) -> bool,
    ) -> crate::Result<Self> {
        let mut mask = Self::zeros(values.len())?;
        for (word, chunk) in mask.words.iter_mut().zip(values.chunks(64)) {
            *word = chunk
                .iter()
                .enumerate()
                .fold(0u64, |w, (b, &v)| w | (predicate(v) as u64) << b);
        }
        Ok(mask)
    }

    /// A copy that reports [`Error::OutOfMemory`](crate::Error::OutOfMemory) instead of aborting.
    pub fn try_clone(&self) -> crate::Result<Self> {
        Ok(BitMask {
            words: pool::try_copy("BitMask", &self.words)?,
            len: self.len,
        })
    }

    /// A mask from packed words (bit i of word i/64); bits past `len` are cleared.
    pub(crate) fn from_words(words: Vec<u64>, len: usize) -> Self {
        debug_assert_eq!(words.len(), len.div_ceil(64));
        let mut mask = BitMask { words, len };
        mask.clear_tail();
        mask
    }

    /// A mask from booleans.
    pub fn from_bools(bits: &[bool]) -> crate::Result<Self> {
        Self::from_fn(bits.len(), |i| bits[i])
    }

    /// Bit `i` is set independently with probability `keep_prob` (dropout's 1 − p).
    ///
    /// Takes exactly one `u64` from `rng`, whatever `len` is, and derives from it one PCG stream per
    /// chunk of [`MASK_CHUNK`] elements; so the same `rng` state gives the same mask, and the mask
    /// does not depend on how many threads draw it. Each bit compares a 32-bit draw with
    /// `round(keep_prob · 2³²)`: the keep probability is exact to 2⁻³², and 0 and 1 are exact.
    /// `keep_prob` is clamped to `[0, 1]`; callers validate it.
    pub fn bernoulli<R: Rng + ?Sized>(
        len: usize,
        keep_prob: f64,
        rng: &mut R,
    ) -> crate::Result<Self> {
        let (seed, threshold) = (rng.next_u64(), keep_threshold(keep_prob));
        let mut mask = Self::zeros(len)?;
        let fill =
            |(chunk, words): (usize, &mut [u64])| fill_chunk(words, seed, chunk as u64, threshold);
        if crate::tensor::parallel(len) {
            mask.words
                .par_chunks_mut(WORDS_PER_CHUNK)
                .enumerate()
                .for_each(fill);
        } else {
            mask.words
                .chunks_mut(WORDS_PER_CHUNK)
                .enumerate()
                .for_each(fill);
        }
        mask.clear_tail();
        Ok(mask)
    }

    /// [`BitMask::bernoulli`] and [`BitMask::apply`] in one pass: each chunk's bits are drawn and
    /// applied to that chunk of `x` while it is in cache, chunks in parallel for large inputs. Returns
    /// the same mask `bernoulli` would draw from the same generator state, and `m ⊙ x · scale`.
    pub(crate) fn bernoulli_apply<T: crate::Float, R: Rng + ?Sized>(
        x: &[T],
        keep_prob: f64,
        scale: T,
        rng: &mut R,
    ) -> crate::Result<(Self, Vec<T>)> {
        let (seed, threshold) = (rng.next_u64(), keep_threshold(keep_prob));
        let mut mask = Self::zeros(x.len())?;
        let mut out = pool::try_dirty("dropout", x.len())?;
        let work = |(chunk, ((words, xs), outs)): ChunkWork<'_, T>| {
            fill_chunk(words, seed, chunk as u64, threshold);
            apply_words(words, xs, scale, false, outs);
        };
        if crate::tensor::parallel(x.len()) {
            (mask
                .words
                .par_chunks_mut(WORDS_PER_CHUNK)
                .zip(x.par_chunks(MASK_CHUNK)))
            .zip(out.par_chunks_mut(MASK_CHUNK))
            .enumerate()
            .for_each(work);
        } else {
            (mask
                .words
                .chunks_mut(WORDS_PER_CHUNK)
                .zip(x.chunks(MASK_CHUNK)))
            .zip(out.chunks_mut(MASK_CHUNK))
            .enumerate()
            .for_each(work);
        }
        mask.clear_tail();
        Ok((mask, out))
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mask has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i`. Panics if `i >= len()`, like slice indexing.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        assert!(
            i < self.len,
            "bit {i} out of range for a mask of {}",
            self.len
        );
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Bytes of storage: one bit per element, rounded up to whole 64-bit words.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// The packed words; bit `i` is bit `i % 64` of word `i / 64`. Bits past `len()` are zero.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The bits in order.
    pub fn iter(&self) -> impl Iterator<Item = bool> + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    /// Clears the bits past `len` in the last word, so equality and counting see only real bits.
    fn clear_tail(&mut self) {
        let tail = self.len % 64;
        if let (true, Some(last)) = (tail != 0, self.words.last_mut()) {
            *last &= (1u64 << tail) - 1;
        }
    }

    /// Dropout's forward and backward, with PyTorch's semantics (`x * mask * scale`):
    /// `out[i] = x[i] · (bit i ? scale : 0)`. A dropped NaN or infinity gives NaN (0 · ∞), so anomaly
    /// mode still sees it; a dropped negative number gives −0. Fails unless `x`, `out` and the mask
    /// have one length.
    ///
    /// ```
    /// use tapegrad::BitMask;
    /// let mask = BitMask::from_bools(&[true, false, true, false])?;
    /// let mut out = [0.0f32; 4];
    /// mask.apply(&[1.0, 2.0, f32::INFINITY, f32::NAN], 2.0, &mut out)?;
    /// assert_eq!(out[..3], [2.0, 0.0, f32::INFINITY]);
    /// assert!(out[3].is_nan()); // a dropped NaN is not hidden
    /// # Ok::<(), tapegrad::Error>(())
    /// ```
    pub fn apply<T: crate::Float>(&self, x: &[T], scale: T, out: &mut [T]) -> crate::Result<()> {
        self.apply_as(x, scale, false, out)
    }

    /// `out[i] = bit i ? x[i] · scale : +0.0`: where a bit is clear the output is exactly zero,
    /// whatever `x[i]` is. ReLU's backward (PyTorch's `threshold_backward`).
    pub fn select<T: crate::Float>(&self, x: &[T], scale: T, out: &mut [T]) -> crate::Result<()> {
        self.apply_as(x, scale, true, out)
    }

    /// [`BitMask::apply`] (`exact_zero` false) or [`BitMask::select`] (true) with `x` as its own
    /// output: each 64-element chunk is copied to the stack and written back masked.
    pub(crate) fn apply_in_place<T: crate::Float>(
        &self,
        x: &mut [T],
        scale: T,
        exact_zero: bool,
    ) -> crate::Result<()> {
        if x.len() != self.len {
            return Err(crate::Error::MaskLength {
                op: "BitMask::apply",
                mask_len: self.len,
                shape: crate::Shape::new(&[x.len()])?,
            });
        }
        if crate::tensor::parallel(x.len()) {
            self.words
                .par_chunks(WORDS_PER_CHUNK)
                .zip(x.par_chunks_mut(MASK_CHUNK))
                .for_each(|(words, xs)| apply_words_in_place(words, xs, scale, exact_zero));
        } else {
            apply_words_in_place(&self.words, x, scale, exact_zero);
        }
        Ok(())
    }

    fn apply_as<T: crate::Float>(
        &self,
        x: &[T],
        scale: T,
        exact_zero: bool,
        out: &mut [T],
    ) -> crate::Result<()> {
        if x.len() != self.len || out.len() != self.len {
            return Err(crate::Error::MaskLength {
                op: "BitMask::apply",
                mask_len: self.len,
                shape: crate::Shape::new(&[x.len().max(out.len())])?,
            });
        }
        if crate::tensor::parallel(x.len()) {
            (self
                .words
                .par_chunks(WORDS_PER_CHUNK)
                .zip(x.par_chunks(MASK_CHUNK)))
            .zip(out.par_chunks_mut(MASK_CHUNK))
            .for_each(|((words, xs), outs)| apply_words(words, xs, scale, exact_zero, outs));
        } else {
            apply_words(&self.words, x, scale, exact_zero, out);
        }
        Ok(())
    }
}

/// One chunk's share of a fused draw-and-apply: (chunk index, ((mask words, input), output)).
type ChunkWork<'a, T> = (usize, ((&'a mut [u64], &'a [T]), &'a mut [T]));

/// Words of mask per chunk of [`MASK_CHUNK`] elements.
const WORDS_PER_CHUNK: usize = MASK_CHUNK / 64;

/// The 32-bit comparison threshold for keeping with probability `keep_prob` (clamped to [0, 1]).
fn keep_threshold(keep_prob: f64) -> u64 {
    (keep_prob.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64
}

/// Applies the mask words to `x` without branches (see [`Float::apply_mask_word`](crate::Float)).
fn apply_words<T: crate::Float>(words: &[u64], x: &[T], scale: T, exact_zero: bool, out: &mut [T]) {
    for ((&word, xs), outs) in words.iter().zip(x.chunks(64)).zip(out.chunks_mut(64)) {
        T::apply_mask_word(word, xs, scale, exact_zero, outs);
    }
}

/// [`apply_words`] with `x` as its own output, one 64-element chunk at a time through the stack.
fn apply_words_in_place<T: crate::Float>(words: &[u64], x: &mut [T], scale: T, exact_zero: bool) {
    let mut chunk = [T::ZERO; 64];
    for (&word, xs) in words.iter().zip(x.chunks_mut(64)) {
        let copy = &mut chunk[..xs.len()];
        copy.copy_from_slice(xs);
        T::apply_mask_word(word, copy, scale, exact_zero, xs);
    }
}

/// Fills one chunk's words from its own PCG stream.
///
/// A bit is kept when a uniform 32-bit number is below `threshold`. When `threshold` is a multiple of
/// 2^(32 − w) only the top w bits of that number matter, so a w-bit lane compared with
/// `threshold >> (32 − w)` decides the bit with exactly the same probability, and one 64-bit draw
/// serves 64/w elements: for p = 0.5, w = 1 and a draw fills a whole word.
fn fill_chunk(words: &mut [u64], seed: u64, chunk: u64, threshold: u64) {
    let state = (u128::from(splitmix64(seed)) << 64)
        | u128::from(splitmix64(seed ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let mut stream = Pcg64::new(state, u128::from(chunk));
    let lane_bits = [1u32, 2, 4, 8, 16, 32]
        .into_iter()
        .find(|&w| threshold.is_multiple_of(1u64 << (32 - w)))
        .unwrap_or(32);
    let lane_threshold = threshold >> (32 - lane_bits);
    let lane_mask = (1u64 << lane_bits) - 1;
    let lanes_per_draw = 64 / lane_bits;
    for word in words {
        let mut bits = 0u64;
        if lane_bits == 1 && lane_threshold == 1 {
            // Keep iff the lane bit is 0: the mask word is the complement of the draw.
            bits = !stream.next_u64();
        } else {
            for draw in 0..lane_bits {
                let r = stream.next_u64();
                for lane in 0..lanes_per_draw {
                    let value = r >> (lane * lane_bits) & lane_mask;
                    bits |= u64::from(value < lane_threshold) << (draw * lanes_per_draw + lane);
                }
            }
        }
        *word = bits;
    }
}

/// SplitMix64's finaliser: spreads a seed's bits so nearby seeds give unrelated streams.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl std::fmt::Debug for BitMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BitMask({} of {} set, {} bytes)",
            self.count_ones(),
            self.len,
            self.bytes()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tail_bits_are_clear_and_edges_exact() {
        let mut rng = Pcg64::seed_from_u64(3);
        let m = BitMask::bernoulli(70, 1.0, &mut rng).unwrap();
        assert_eq!(m.count_ones(), 70);
        assert_eq!(m.words()[1] >> 6, 0);
        assert_eq!(
            BitMask::bernoulli(70, 0.0, &mut rng).unwrap().count_ones(),
            0
        );
    }

    #[test]
    fn one_draw_per_mask() {
        let mut a = Pcg64::seed_from_u64(9);
        let mut b = Pcg64::seed_from_u64(9);
        BitMask::bernoulli(100_000, 0.5, &mut a).unwrap();
        b.next_u64();
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
