#!/usr/bin/env python3
"""Fits the polynomial coefficients of the vector math kernels and writes `coefficients.rs`.

Run from the repository root (needs only mpmath, which PyTorch's sympy dependency brings along):

    python3 src/kernels/vecmath/coefficients.py > src/kernels/vecmath/coefficients.rs

Each polynomial is a weighted minimax fit (the Remez exchange algorithm on a dense grid, in
200-bit arithmetic) of the part of a function that is not known exactly, weighted so that the error
is relative to the function the kernel returns. Coefficients are then rounded to f32 or f64 one at a
time, lowest degree first, each rounding followed by a refit of the remaining ones, so the rounding
of the leading coefficients is compensated by the higher ones. The error printed with each
polynomial is the weighted error of the rounded coefficients evaluated exactly; the kernels' tests
measure the error of the floating-point evaluation.
"""

import sys

import mpmath as mp
import numpy as np

mp.mp.prec = 200


class Fit:
    """min over c of max over the grid of |w(t)·(f(t) − Σ cᵢ tⁱ)| on [lo, hi], degree `deg`."""

    def __init__(self, f, w, lo, hi, deg, grid=1000):
        self.deg = deg
        lo, hi = mp.mpf(lo), mp.mpf(hi)
        self.t = [(lo + hi) / 2 - (hi - lo) / 2 * mp.cos(mp.pi * (k + mp.mpf(0.5)) / grid)
                  for k in range(grid)]
        self.f = [f(t) for t in self.t]
        self.w = [w(t) for t in self.t]
        self.powers = [[t ** i for i in range(deg + 1)] for t in self.t]

    def remez(self, fixed):
        """Best free coefficients given `fixed` (a dict degree → value); returns (coeffs, error)."""
        free = [i for i in range(self.deg + 1) if i not in fixed]
        n = len(free)
        g = len(self.t)
        rest = [self.f[j] - mp.fsum(c * self.powers[j][i] for i, c in fixed.items())
                for j in range(g)]
        if n == 0:
            err = max(abs(self.w[j] * rest[j]) for j in range(g))
            return dict(fixed), err
        ref = sorted({int(round((g - 1) * (1 - mp.cos(mp.pi * k / n)) / 2)) for k in range(n + 1)})
        best = None
        for _ in range(40):
            m = mp.matrix(n + 1, n + 1)
            rhs = mp.matrix(n + 1, 1)
            for r, j in enumerate(ref):
                for col, i in enumerate(free):
                    m[r, col] = self.powers[j][i]
                m[r, n] = (-1) ** r / self.w[j]
                rhs[r] = rest[j]
            sol = mp.lu_solve(m, rhs)
            coeffs = dict(fixed)
            for col, i in enumerate(free):
                coeffs[i] = sol[col]
            level = abs(sol[n])
            err = [self.w[j] * (rest[j] - mp.fsum(sol[col] * self.powers[j][i]
                                                  for col, i in enumerate(free)))
                   for j in range(g)]
            worst = max(abs(e) for e in err)
            if best is None or worst < best[1]:
                best = (coeffs, worst)
            if worst <= level * (1 + mp.mpf('1e-4')):
                break
            # The new reference: the largest error of each run of one sign, trimmed at the ends
            # to n + 1 points.
            runs, run = [], [0]
            for j in range(1, g):
                if (err[j] >= 0) == (err[run[0]] >= 0):
                    run.append(j)
                else:
                    runs.append(run)
                    run = [j]
            runs.append(run)
            ext = [max(r, key=lambda j: abs(err[j])) for r in runs]
            if len(ext) < n + 1:
                ext = single_exchange(ref, err, max(range(g), key=lambda j: abs(err[j])))
            while len(ext) > n + 1:
                # Drop an end point, or the adjacent pair with the smallest errors (dropping a
                # pair keeps the signs alternating), whichever loses the least.
                if len(ext) == n + 2:
                    ext.pop(0 if abs(err[ext[0]]) < abs(err[ext[-1]]) else -1)
                    continue
                pair = min(range(len(ext) - 1),
                           key=lambda i: max(abs(err[ext[i]]), abs(err[ext[i + 1]])))
                end_cost = min(abs(err[ext[0]]), abs(err[ext[-1]]))
                if end_cost < max(abs(err[ext[pair]]), abs(err[ext[pair + 1]])):
                    ext.pop(0 if abs(err[ext[0]]) < abs(err[ext[-1]]) else -1)
                else:
                    del ext[pair:pair + 2]
            ref = ext
        return best

    def rounded(self, to_float, split_constant=False):
        """Rounds the coefficients one at a time (lowest degree first), refitting the rest.

        With `split_constant`, the constant term is kept as an unevaluated sum hi + lo of two
        floats (returned as an extra last element): where the polynomial's variable is 0 its value
        is the constant term, and no other coefficient can make up for that term's rounding.
        """
        fixed = {}
        lo = None
        for i in range(self.deg + 1):
            coeffs, _ = self.remez(fixed)
            if i == 0 and split_constant:
                hi = mp.mpf(to_float(coeffs[0]))
                lo = mp.mpf(to_float(coeffs[0] - hi))
                fixed[0] = hi + lo
            else:
                fixed[i] = mp.mpf(to_float(coeffs[i]))
        result = [fixed[i] for i in range(self.deg + 1)]
        if split_constant:
            result[0] = hi
            result.append(lo)
        return result, self.remez(fixed)[1]


def single_exchange(ref, err, j):
    """The classic one-point exchange: `j` (the largest error) replaces a reference point so that
    the signs still alternate."""
    ref = list(ref)
    sign = lambda i: err[i] >= 0  # noqa: E731
    if j in ref:
        return ref
    k = next((i for i, r in enumerate(ref) if r > j), len(ref))
    if k == 0:
        if sign(ref[0]) == sign(j):
            ref[0] = j
        else:
            ref = [j] + ref[:-1]
    elif k == len(ref):
        if sign(ref[-1]) == sign(j):
            ref[-1] = j
        else:
            ref = ref[1:] + [j]
    elif sign(ref[k - 1]) == sign(j):
        ref[k - 1] = j
    else:
        ref[k] = j
    return ref


def f64(x):
    """x rounded to the nearest f64 (mpmath's float() truncates)."""
    return mp.libmp.to_float(mp.mpf(x)._mpf_, rnd=mp.libmp.round_nearest)


def f32(x):
    return float(np.float32(f64(x)))


def literal(x, kind):
    if kind == "f32":
        text = str(np.float32(x))
    else:
        text = repr(f64(x))
    if "e" not in text and "." not in text:
        text += ".0"
    return text


def emit(name, doc, fit, kind, split_constant=False):
    coeffs, err = fit.rounded(f32 if kind == "f32" else f64, split_constant)
    if split_constant:
        lo = coeffs.pop()
        const(f"{name}_C0_LO", f"The low part of the constant term of `{name}` (the high part is "
              f"`{name}[0]`).", lo, kind)
    print(f"    /// {doc}")
    print(f"    /// Weighted minimax error of these rounded coefficients: {mp.nstr(err, 3)}.")
    print(f"    pub(crate) const {name}: [{kind}; {len(coeffs)}] = [")
    for c in coeffs:
        print(f"        {literal(c, kind)},")
    print("    ];")
    print(f"{name} {kind} {mp.nstr(err, 3)}", file=sys.stderr)


def const(name, doc, value, kind):
    print(f"    /// {doc}")
    print(f"    pub(crate) const {name}: {kind} = {literal(value, kind)};")


LN2 = mp.log(2)
SQRT_HALF = mp.sqrt(mp.mpf(0.5))
ERFCX = lambda a: mp.exp(a * a) * mp.erfc(a)  # noqa: E731


def exp_fit(deg):
    # eʳ = 1 + r + r²·Q(r) on |r| ≤ ln2/2 (plus a margin for the rounding of the reduction),
    # relative to eʳ.
    half = LN2 / 2 + mp.mpf(2) ** -20
    return Fit(lambda r: (mp.expm1(r) - r) / r ** 2 if r != 0 else mp.mpf(0.5),
               lambda r: r * r / mp.exp(r), -half, half, deg)


def log_atanh_fit(deg):
    # With s = f/(2 + f): ln(1 + f) = 2·atanh(s) = 2s + s·R(s²), R(z) = z·Q(z), s² ≤ z_max.
    # The error of ln is s·ΔR, relative to ≈ 2s: weight 1/2 on R, i.e. z/2 on Q.
    smax = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)
    def q(z):
        s = mp.sqrt(z)
        return (2 * mp.atanh(s) - 2 * s) / s / z
    return Fit(lambda z: q(z) if z > 0 else mp.mpf(2) / 3, lambda z: z / 2,
               mp.mpf(0), smax ** 2 * (1 + mp.mpf(2) ** -20), deg)


def tanh_fit(limit, deg):
    # tanh x = x + x³·Q(x²) for |x| ≤ limit, relative to tanh x.
    def q(z):
        x = mp.sqrt(z)
        return (mp.tanh(x) - x) / x ** 3
    def w(z):
        x = mp.sqrt(z)
        return x ** 3 / mp.tanh(x)
    return Fit(lambda z: q(z) if z > 0 else -mp.mpf(1) / 3,
               lambda z: w(z) if z > 0 else mp.mpf(0), 0, mp.mpf(limit) ** 2, deg)


def erf_fit(limit, deg):
    # erf x = x + x·P(x²) for |x| ≤ limit, relative to erf x.
    def p(z):
        x = mp.sqrt(z)
        return mp.erf(x) / x - 1
    def w(z):
        x = mp.sqrt(z)
        return x / mp.erf(x)
    return Fit(lambda z: p(z) if z > 0 else 2 / mp.sqrt(mp.pi) - 1,
               lambda z: w(z) if z > 0 else mp.sqrt(mp.pi) / 2, 0, mp.mpf(limit) ** 2, deg)


def erfcx_fit(k, start, amax, deg, amin=0):
    # erfcx(a) = e^(a²)·erfc(a) = P(u − start) with u = 1/(a + k), for 0 ≤ a ≤ amax, relative.
    # In u the function is analytic and flat (erfcx(a) ≈ 1/(a√π) for large a): the Möbius map
    # of Weideman's method, with u rather than (a − k)/(a + k) as the variable so that the
    # rounding error of the variable stays relative to u. The expansion point `start` (a float
    # next to 1/(amax + k)) is the end where erfcx is smallest: there every term is positive, so
    # the floating-point evaluation has no cancellation (Σ|cᵢwⁱ| / |P(w)| stays below 1.1).
    def f(v):
        a = 1 / (v + start) - k
        return ERFCX(a)
    return Fit(f, lambda v: 1 / f(v), 0, 1 / (mp.mpf(amin) + k) - start, deg)


def split(value, kind, bits=None):
    """value = hi + lo: hi rounded to `bits` significant bits (all of them by default), lo the
    rest rounded to the type."""
    to_float = f32 if kind == "f32" else f64
    if bits is None:
        hi = mp.mpf(to_float(value))
    else:
        e = mp.floor(mp.log(abs(value), 2)) + 1
        hi = mp.nint(value * mp.mpf(2) ** (bits - e)) / mp.mpf(2) ** (bits - e)
    return hi, mp.mpf(to_float(value - hi))


def emit_log2_constants(kind):
    # k·LN2_HI must be exact for every exponent k the kernels meet (|k| < 2⁸ for f32, 2¹¹ for f64).
    hi, lo = split(LN2, kind, 15 if kind == "f32" else 42)
    const("LN2_HI", "ln 2 rounded to few enough bits that k·LN2_HI is exact (Cody–Waite).", hi, kind)
    const("LN2_LO", "ln 2 − LN2_HI.", lo, kind)
    const("LOG2_E", "1/ln 2.", 1 / LN2, kind)


KAPPA = mp.mpf("0.044715")
GELU_TANH_C = 2 * mp.sqrt(2 / mp.pi)


def emit_gaussian_constants(kind, two_float):
    const("FRAC_1_SQRT_2PI", "1/√(2π), the standard normal density at 0.", 1 / mp.sqrt(2 * mp.pi),
          kind)
    if two_float:
        hi, lo = split(KAPPA, kind)
        const("KAPPA_HI", "0.044715, the cubic coefficient of GELU's tanh approximation (high "
              "part).", hi, kind)
        const("KAPPA_LO", "0.044715 − KAPPA_HI.", lo, kind)
        hi, lo = split(GELU_TANH_C, kind)
        const("GELU_TANH_C_HI", "2·√(2/π): gelu_tanh(x) = x·σ(2·√(2/π)·(x + κx³)) (high part).",
              hi, kind)
        const("GELU_TANH_C_LO", "2·√(2/π) − GELU_TANH_C_HI.", lo, kind)
    else:
        const("KAPPA", "0.044715, the cubic coefficient of GELU's tanh approximation.", KAPPA, kind)
        const("GELU_TANH_C", "2·√(2/π): gelu_tanh(x) = x·σ(2·√(2/π)·(x + κx³)).", GELU_TANH_C,
              kind)
    const("GELU_TANH_C3K", "3κ·2·√(2/π), for the derivative of the argument of σ.",
          3 * KAPPA * GELU_TANH_C, kind)


def emit_erf(kind, limit, deg, k, amax, erfcx_deg, split_constant):
    if limit is not None:
        const("ERF_POLY_LIMIT", "Below this |x|, erf uses the odd polynomial.", limit, kind)
        emit("ERF", f"erf x = x + x·Σ cᵢ x²ⁱ for |x| ≤ {limit}.", erf_fit(limit, deg), kind)
    start = mp.mpf((f32 if kind == "f32" else f64)(1 / (amax + k)))
    const("ERFCX_K", "The shift k of the variable u = 1/(a + k) of the erfcx polynomial.", k, kind)
    const("ERFCX_START", "The expansion point of the erfcx polynomial: u at a = `ERFCX_MAX`.",
          start, kind)
    const("ERFCX_MAX", "The largest a the erfcx polynomial is fitted for.", amax, kind)
    emit("ERFCX", f"erfcx(a) = e^(a²)·erfc(a) = Σ cᵢ (u − start)ⁱ, u = 1/(a + {k}), "
         f"for 0 ≤ a ≤ {mp.nstr(amax, 4)}.", erfcx_fit(k, start, amax, erfcx_deg), kind,
         split_constant=split_constant)


def main():
    print("//! Polynomial coefficients of the vector math kernels.")
    print("//!")
    print("//! Generated by `python3 src/kernels/vecmath/coefficients.py > "
          "src/kernels/vecmath/coefficients.rs`")
    print("//! (weighted minimax fits in 200-bit arithmetic, coefficients rounded one at a time); do not")
    print("//! edit by hand. Lowest degree first. Each error is relative to the function the kernel returns.")
    print("#![allow(clippy::excessive_precision, clippy::approx_constant, clippy::unreadable_literal)]")
    print()

    print("/// Native f32: exp, log, tanh, erf and the functions built on them (sigmoid, softplus).")
    print("pub(crate) mod f32 {")
    emit("EXP", "eʳ = 1 + r + r²·Σ cᵢ rⁱ for |r| ≤ ln2/2.", exp_fit(4), "f32")
    emit("LOG", "ln(1 + f) = 2s + s·z·Σ cᵢ zⁱ with s = f/(2 + f), z = s², "
         "for f ∈ [√½ − 1, √2 − 1].", log_atanh_fit(2), "f32")
    const("TANH_POLY_LIMIT", "Below this |x|, tanh uses the odd polynomial.", 0.625, "f32")
    emit("TANH", "tanh x = x + x³·Σ cᵢ x²ⁱ for |x| ≤ 0.625.", tanh_fit(0.625, 4), "f32")
    emit_log2_constants("f32")
    # erf needs erfc only where erf > 0.84 and below 4 (erf rounds to 1 above 3.92): a short
    # erfcx polynomial, whose errors erf damps by erfc/erf ≤ 0.19.
    const("ERF_POLY_LIMIT", "Below this |x|, erf uses the odd polynomial.", 1.0, "f32")
    emit("ERF", "erf x = x + x·Σ cᵢ x²ⁱ for |x| ≤ 1.", erf_fit(1.0, 6), "f32")
    start = mp.mpf(f32(1 / (mp.mpf(4) + 2)))
    const("ERFCX_K", "The shift k of the variable u = 1/(a + k) of the erfcx polynomial.", 2, "f32")
    const("ERFCX_START", "The expansion point of the erfcx polynomial: u at a = `ERFCX_MAX`.",
          start, "f32")
    const("ERFCX_MAX", "The largest a the erfcx polynomial is fitted for.", 4, "f32")
    emit("ERFCX", "erfcx(a) = e^(a²)·erfc(a) = Σ cᵢ (u − start)ⁱ, u = 1/(a + 2), for "
         "0.95 ≤ a ≤ 4 (erf only).", erfcx_fit(2, start, mp.mpf(4), 7, amin=mp.mpf(0.95)), "f32",
         split_constant=True)
    print("}")
    print()
    print("/// Native f64: every kernel.")
    print("pub(crate) mod f64 {")
    emit("EXP", "eʳ = 1 + r + r²·Σ cᵢ rⁱ for |r| ≤ ln2/2.", exp_fit(9), "f64")
    emit("LOG", "ln(1 + f) = 2s + s·z·Σ cᵢ zⁱ with s = f/(2 + f), z = s², "
         "for f ∈ [√½ − 1, √2 − 1].", log_atanh_fit(6), "f64")
    const("TANH_POLY_LIMIT", "Below this |x|, tanh uses the odd polynomial.", 0.625, "f64")
    emit("TANH", "tanh x = x + x³·Σ cᵢ x²ⁱ for |x| ≤ 0.625.", tanh_fit(0.625, 11), "f64")
    emit_log2_constants("f64")
    emit_erf("f64", 0.75, 10, 4, mp.mpf(27.5), 23, split_constant=True)
    emit_gaussian_constants("f64", two_float=True)
    print("}")
    print()
    print("/// gelu, gelu_tanh and the erf-family derivatives for f32, evaluated in f64 (`wide.rs`): f64")
    print("/// coefficients of fits to f32 accuracy.")
    print("pub(crate) mod wide {")
    emit("EXP", "eʳ = 1 + r + r²·Σ cᵢ rⁱ for |r| ≤ ln2/2.", exp_fit(4), "f64")
    emit_erf("f64", None, None, 3, mp.mpf(10.5), 10, split_constant=False)
    emit_gaussian_constants("f64", two_float=False)
    const("GELU_MAX", "gelu is computed for x clamped to ±GELU_MAX (= ERFCX_MAX·√2, rounded "
          "down): beyond, the f32 result is x or −0.", 14.8, "f64")
    const("GELU_TANH_MAX", "gelu_tanh is computed for x clamped to ±GELU_TANH_MAX: beyond, the "
          "f32 result is x or −0.", 12.0, "f64")
    print("}")


if __name__ == "__main__":
    main()
