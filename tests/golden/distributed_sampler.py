"""PyTorch's DistributedSampler without shuffling: each rank's indices for a few data-set sizes,
world sizes and drop_last settings. Run by hand: python3 tests/golden/distributed_sampler.py
Writes tests/golden/distributed_sampler.txt, one line per case: `len replicas rank drop_last: indices`."""

from torch.utils.data.distributed import DistributedSampler

CASES = [(10, 3), (12, 4), (7, 2), (5, 8), (1, 3), (0, 2), (17, 5), (9, 1)]
lines = []
for n, replicas in CASES:
    for drop_last in (False, True):
        for rank in range(replicas):
            s = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False,
                                   drop_last=drop_last)
            s.set_epoch(3)
            idx = list(s)
            assert len(idx) == len(s)
            lines.append(f"{n} {replicas} {rank} {int(drop_last)}: {' '.join(map(str, idx))}")
with open("tests/golden/distributed_sampler.txt", "w") as f:
    f.write("\n".join(lines) + "\n")
