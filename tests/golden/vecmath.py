#!/usr/bin/env python3
"""Reference values for the f64 vector math kernels (src/kernels/vecmath), computed with mpmath in
160-bit arithmetic, written to tests/golden/vecmath_f64.safetensors. Run by hand (not by CI):

    python3 tests/golden/vecmath.py

For each kernel `name`: `name/x` (f64 inputs), `name/hi` (the exact value rounded to f64) and
`name/lo` (the exact value minus hi, rounded to f64), so the tests measure errors in fractions of
an ulp. Inputs: log-uniform magnitudes over each function's whole range, uniform draws over its
core, dense draws around the breakpoints of the algorithms, and the edges of the subnormal range.
"""

import os

import mpmath as mp
import numpy as np
from safetensors.numpy import save_file

mp.mp.prec = 160
rng = np.random.default_rng(20240611)
N = 2800  # per kernel: the file stays under 1 MB


def log_uniform(lo, hi, n, signs=(1,)):
    mags = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return mags * rng.choice(signs, n)


def around(points, n, spread=1e-6):
    pts = rng.choice(points, n)
    return pts * (1 + rng.uniform(-spread, spread, n))


def inputs(parts):
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    return rng.permutation(x)[:N]


KAPPA = mp.mpf("0.044715")
C = 2 * mp.sqrt(2 / mp.pi)


def nearest(v):
    """v rounded to the nearest f64 (mpmath's float() truncates)."""
    return mp.libmp.to_float(mp.mpf(v)._mpf_, rnd=mp.libmp.round_nearest)


def sigmoid(t):
    return 1 / (1 + mp.exp(-t))


def gelu_tanh_parts(x):
    z = C * (x + KAPPA * x ** 3)
    s = sigmoid(z)
    return s, z


def softplus(beta, threshold):
    def f(x):
        if float(np.float64(x) * np.float64(beta)) > threshold:
            return x
        return mp.log1p(mp.exp(x * beta)) / beta
    return f


def softplus_backward(beta, threshold):
    def f(x):
        if float(np.float64(x) * np.float64(beta)) > threshold:
            return mp.mpf(1)
        return sigmoid(x * beta)
    return f


def gelu_tanh_backward(x):
    s, _ = gelu_tanh_parts(x)
    slope = C * (1 + 3 * KAPPA * x * x)
    return s + x * slope * s * (1 - s)


CASES = {
    "exp": (lambda x: mp.exp(x), inputs([
        rng.uniform(-745.2, 709.78, 1000),
        log_uniform(1e-300, 700, 1000, (1, -1)),
        around([709.78, -708.39, -745.13, -744.4, 0.34657359, -0.34657359], 500, 1e-4),
        log_uniform(1e-18, 1e-8, 500, (1, -1)),
    ])),
    "log": (lambda x: mp.log(x), inputs([
        np.abs(rng.uniform(0, 1, 1000)) * 10.0 ** rng.integers(-307, 308, 1000),
        log_uniform(5e-324, 2.2e-308, 500),
        1 + log_uniform(1e-16, 0.5, 600, (1, -1)),
        around([np.sqrt(0.5), np.sqrt(2.0)], 400, 1e-3),
        rng.uniform(0.5, 2.0, 500),
    ])),
    "tanh": (lambda x: mp.tanh(x), inputs([
        log_uniform(1e-300, 25, 1200, (1, -1)),
        rng.uniform(-3, 3, 800),
        around([0.625, -0.625, 19.0], 1000, 1e-3),
    ])),
    "sigmoid": (sigmoid, inputs([
        rng.uniform(-745, 40, 1200),
        log_uniform(1e-300, 40, 1000, (1, -1)),
        around([-708.4, -744.4, 36.7], 800, 1e-3),
    ])),
    "erf": (lambda x: mp.erf(x), inputs([
        log_uniform(1e-300, 6.5, 1200, (1, -1)),
        rng.uniform(-4, 4, 800),
        around([0.75, -0.75, 5.9, 27.5], 1000, 1e-3),
    ])),
    "gelu": (lambda x: x * mp.ncdf(x), inputs([
        rng.uniform(-39, 10, 1200),
        log_uniform(1e-300, 39, 1000, (1, -1)),
        around([-37.5, -38.6, -38.8, -1.06, 1.06], 800, 1e-3),
    ])),
    "gelu_tanh": (lambda x: x * gelu_tanh_parts(x)[0], inputs([
        rng.uniform(-24, 10, 1200),
        log_uniform(1e-300, 24, 1000, (1, -1)),
        around([-22.0, -23.0, 0.5, -0.5], 800, 1e-3),
    ])),
    "softplus_b1_t20": (softplus(1, 20), inputs([
        rng.uniform(-760, 25, 1200),
        log_uniform(1e-300, 30, 1000, (1, -1)),
        around([20.0, -36.7, -708.4, -744.4], 800, 1e-3),
    ])),
    "softplus_b2.5_t20": (softplus(2.5, 20), inputs([
        rng.uniform(-300, 10, 1200),
        log_uniform(1e-300, 12, 1000, (1, -1)),
        around([8.0, -283.4, -297.8], 800, 1e-3),
    ])),
    "softplus_b0.3_t5": (softplus(0.3, 5), inputs([
        rng.uniform(-2500, 20, 1200),
        log_uniform(1e-300, 2500, 1000, (1, -1)),
        around([5 / 0.3, -2361.3, -2481.3], 800, 1e-3),
    ])),
    "erf_backward": (lambda x: 2 / mp.sqrt(mp.pi) * mp.exp(-x * x), inputs([
        log_uniform(1e-300, 27.5, 1500, (1, -1)),
        rng.uniform(-6, 6, 1000),
        around([26.6, 27.2], 500, 1e-3),
    ])),
    "gelu_backward": (lambda x: mp.ncdf(x) + x * mp.npdf(x), inputs([
        rng.uniform(-39, 10, 1200),
        log_uniform(1e-300, 39, 1000, (1, -1)),
        around([-37.5, -38.6, -1.06, 1.06], 800, 1e-3),
    ])),
    "gelu_tanh_backward": (gelu_tanh_backward, inputs([
        rng.uniform(-24, 10, 1200),
        log_uniform(1e-300, 24, 1000, (1, -1)),
        around([-22.0, -23.0], 800, 1e-3),
    ])),
    "softplus_backward_b1_t20": (softplus_backward(1, 20), inputs([
        rng.uniform(-760, 25, 1200),
        log_uniform(1e-300, 30, 1000, (1, -1)),
        around([20.0, -36.7, -708.4, -744.4], 800, 1e-3),
    ])),
}


def main():
    tensors = {}
    for name, (f, x) in CASES.items():
        hi = np.empty_like(x)
        lo = np.empty_like(x)
        for i, v in enumerate(x):
            exact = f(mp.mpf(float(v)))
            hi[i] = nearest(exact)
            lo[i] = nearest(exact - mp.mpf(hi[i])) if np.isfinite(hi[i]) else 0.0
        tensors[f"{name}/x"] = x
        tensors[f"{name}/hi"] = hi
        tensors[f"{name}/lo"] = lo
        print(f"{name}: {len(x)} values")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vecmath_f64.safetensors")
    save_file(tensors, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
