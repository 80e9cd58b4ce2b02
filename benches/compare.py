"""Runs examples/bench.rs and benches/pytorch_reference.py side by side, one workload per process
(so peak memory is per workload), interleaved so that both see the same machine state, and prints
the markdown table of docs/performance.md.

    cargo build --release --example bench
    python3 benches/compare.py --repeat 3   # add --sweep for the N × H grid

Each cell is the best of --repeat runs of its process (default 1): on a shared machine, noise only
ever adds time.

Needs torch (pip install torch). Not run by CI.
"""

import json
import subprocess
import sys

WORKLOADS = [
    "seed_manual_200",
    "seed_autograd_200",
    "mlp_1024x784x1024x10",
    "mlp_1024x784x4096x10",
    "matmul_1024",
    "dropout_4096x4096",
]


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


REPEAT = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1


def best(runs):
    """The run with the lowest time, per workload."""
    by_name = {}
    for result in runs:
        for r in result:
            if r["workload"] not in by_name or r["us_per_step"] < by_name[r["workload"]]["us_per_step"]:
                by_name[r["workload"]] = r
    return list(by_name.values())


def ours(args):
    return best(run(["target/release/examples/bench", "--json", *args]) for _ in range(REPEAT))


def theirs(args):
    return best(run([sys.executable, "benches/pytorch_reference.py", *args]) for _ in range(REPEAT))


def main():
    if "--sweep" in sys.argv:
        print("| N | H | tapegrad µs/step | PyTorch µs/step | PyTorch / tapegrad |")
        print("|---|---|---|---|---|")
        a, b = ours(["--sweep", "--threads", "1"]), theirs(["--sweep", "--threads", "1"])
        for x, y in zip(a, b):
            n, h = x["workload"][len("sweep_n"):].split("_h")
            print(f"| {n} | {h} | {x['us_per_step']:.1f} | {y['us_per_step']:.1f} | {y['us_per_step'] / x['us_per_step']:.1f}× |")
        return
    print("| workload | threads | tapegrad µs/step | PyTorch µs/step | tapegrad / PyTorch | notes |")
    print("|---|---|---|---|---|---|")
    for threads in ["1", "2"]:
        for name in WORKLOADS:
            x = ours(["--threads", threads, "--only", name])[0]
            y = theirs(["--threads", threads, "--only", name])[0]
            notes = []
            for key, label in [
                ("gflops", "GFLOP/s"),
                ("peak_rss_kib", "peak RSS KiB"),
                ("rss_growth_after_step2_kib", "RSS growth after step 2, KiB"),
                ("rss_growth_after_step10_kib", "after step 10"),
                ("saved_bytes", "saved bytes"),
            ]:
                if key in x:
                    notes.append(f"{label}: {x[key]} vs {y.get(key, '?')}")
            ratio = x["us_per_step"] / y["us_per_step"]
            print(f"| {name} | {threads} | {x['us_per_step']:.1f} | {y['us_per_step']:.1f} | {ratio:.3f} | {'; '.join(notes)} |", flush=True)


if __name__ == "__main__":
    main()
