"""Runs examples/bench.rs, benches/pytorch_reference.py and benches/jax_reference.py side by side and prints
the markdown table of docs/performance.md.

    cargo build --release --example bench
    python3 benches/compare.py --repeat 3                 # all workloads, 1 and 2 threads
    python3 benches/compare.py --only gpt_step,matmul_1024 --threads 1
    python3 benches/compare.py --engines tapegrad,pytorch # leave JAX out
    python3 benches/compare.py --sweep                    # the lesson's N x H grid, 1 thread
    python3 benches/compare.py --cpu                      # CPU time per step instead of wall time

One process per (engine, workload, threads), so peak memory is per workload; the engines are interleaved
(tapegrad, PyTorch, JAX, tapegrad, ...) so that all three see the same machine state, and each cell is
the best of --repeat processes (default 1): on a shared machine, noise only ever adds time.

The ratio columns are peer time / tapegrad time: above 1 means tapegrad is faster. A workload that an
engine does not have (e.g. one not yet in examples/bench.rs, or fp32_peak in Python), a missing binary
or a failed run shows as "—" (failures are reported on stderr).

Needs torch and jax[cpu] + optax (pip install torch "jax[cpu]" optax). Not run by CI.
"""

import argparse
import json
import os
import subprocess
import sys

WORKLOADS = [
    "seed_manual_200",
    "seed_autograd_200",
    "mlp_1024x784x1024x10",
    "mlp_1024x784x4096x10",
    "matmul_1024",
    "dropout_4096x4096",
    "fp32_peak",
    "conv2d_64x3x32x32_k3",
    "layer_norm_4096x768",
    "attention_8x4x128x32",
    "bmm_64x128x64x128",
    "makemore_step",
    "digits_cnn_step",
    "gpt_step",
]

ENGINES = {
    "tapegrad": ["target/release/examples/bench", "--json"],
    "pytorch": [sys.executable, "benches/pytorch_reference.py"],
    "jax": [sys.executable, "benches/jax_reference.py"],
}
LABELS = {"tapegrad": "tapegrad", "pytorch": "PyTorch", "jax": "JAX"}
DASH = "—"
# The time field the cells and ratios use: "us_per_step" (wall) or, with --cpu, "cpu_us_per_step"
# (CPU time of all threads: on a loaded machine the fairer figure at 1 thread; at 2 threads it is
# the total work, not the latency).
TIME = "us_per_step"


def run(engine, args):
    """The JSON lines one process of `engine` prints, or [] if it could not run (reported on stderr)."""
    cmd = ENGINES[engine] + args
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:  # e.g. the Rust binary is not built
        print(f"{engine}: {e}", file=sys.stderr)
        return []
    if done.returncode != 0:
        print(f"{engine} {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}", file=sys.stderr)
        return []
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def best(results):
    """The result with the lowest time per workload, over lists of results."""
    by_name = {}
    for result in results:
        for r in result:
            if r.get(TIME) is None:
                continue
            if r["workload"] not in by_name or r[TIME] < by_name[r["workload"]][TIME]:
                by_name[r["workload"]] = r
    return by_name


def fmt_us(r):
    return f"{r[TIME]:.1f}" if r else DASH


def ratio(peer, ours):
    return f"{peer[TIME] / ours[TIME]:.2f}×" if peer and ours else DASH


def mib(kib):
    return f"{kib / 1024:.0f}"


def notes(results, engines):
    """Extra fields, each as 'label: a / b / c' in engine order ('—' where an engine lacks it)."""
    out = []
    for key, label, show in [
        ("gflops", "GFLOP/s", str),
        ("gflops_per_cpu_second", "GFLOP/s per CPU second", str),
        ("cpu_us_per_step", "CPU µs/step", str),
        ("us_per_step", "wall µs/step", str),
        ("isa", "ISA", str),
        ("tokens_per_s", "tokens/s", str),
        ("peak_rss_kib", "peak RSS MiB", mib),
        ("rss_growth_after_step2_kib", "RSS growth after step 2 KiB", str),
        ("rss_growth_after_step10_kib", "after step 10", str),
        ("saved_bytes", "saved bytes", str),
    ]:
        values = [results[e].get(key) if results[e] else None for e in engines]
        if any(v is not None for v in values):
            out.append(f"{label}: " + " / ".join(DASH if v is None else show(v) for v in values))
    return "; ".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="processes per cell; the fastest counts")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--only", help="comma-separated workloads (default: all)")
    parser.add_argument("--engines", default="tapegrad,pytorch,jax", help="comma-separated subset")
    parser.add_argument("--sweep", action="store_true", help="the lesson's step over N x H, 1 thread")
    parser.add_argument("--cpu", action="store_true", help="cells and ratios in CPU time per step, not wall time")
    args = parser.parse_args()
    if args.cpu:
        global TIME
        TIME = "cpu_us_per_step"
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or "tapegrad" not in engines:
        parser.error(f"--engines must include tapegrad and only name {', '.join(ENGINES)}")
    peers = [e for e in engines if e != "tapegrad"]

    if args.sweep:
        sweep = {e: best(run(e, ["--sweep", "--threads", "1"]) for _ in range(args.repeat)) for e in engines}
        print("| N | H | " + " | ".join(f"{LABELS[e]} µs/step" for e in engines) + " | "
              + " | ".join(f"{LABELS[e]} / tapegrad" for e in peers) + " |")
        print("|---" * (2 + len(engines) + len(peers)) + "|")
        for name, ours in sweep["tapegrad"].items():
            n, h = name[len("sweep_n"):].split("_h")
            cells = [fmt_us(sweep[e].get(name)) for e in engines] + [ratio(sweep[e].get(name), ours) for e in peers]
            print(f"| {n} | {h} | " + " | ".join(cells) + " |", flush=True)
        return

    workloads = args.only.split(",") if args.only else WORKLOADS
    unit = "CPU µs/step" if args.cpu else "µs/step"
    print("| workload | threads | " + " | ".join(f"{LABELS[e]} {unit}" for e in engines) + " | "
          + " | ".join(f"{LABELS[e]} / tapegrad" for e in peers) + " | notes (" + " / ".join(LABELS[e] for e in engines) + ") |")
    print("|---" * (3 + len(engines) + len(peers)) + "|")
    for threads in args.threads.split(","):
        for name in workloads:
            runs = {e: [] for e in engines}
            for _ in range(args.repeat):
                for e in engines:
                    runs[e].append(run(e, ["--threads", threads, "--only", name]))
            results = {e: best(runs[e]).get(name) for e in engines}
            ours = results["tapegrad"]
            cells = [fmt_us(results[e]) for e in engines] + [ratio(results[e], ours) for e in peers]
            print(f"| {name} | {threads} | " + " | ".join(cells) + f" | {notes(results, engines)} |", flush=True)


if __name__ == "__main__":
    main()
