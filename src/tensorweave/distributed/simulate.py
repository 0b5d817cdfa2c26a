"""An analytic model of data-parallel step time, to look beyond one machine.

A worker step is compute plus moving the parameters: ``t_worker = batch * compute_per_example
+ 2 * bytes_per_step / worker_bandwidth + step_overhead`` (pull the parameters, push the
gradients). With ``cores`` set (one machine), the W workers' compute and both ends of every
copy share those cores: ``t_worker >= W * (compute + 2 * transfer + overhead) / cores``. The
parameter servers move ``2 * bytes_per_step`` per worker step, spread over ``ps`` tasks of
``ps_bandwidth`` each, with the busiest one carrying ``imbalance / ps`` of it.

* **async**: ``steps/s = min(W / t_worker, ps * ps_bandwidth / (2 * bytes * imbalance))``;
* **sync** with ``N = W - backup`` gradients per step: a step waits for the N-th fastest of W
  workers whose times vary with coefficient of variation ``straggler_cv`` (expected normal order
  statistic, Blom's approximation), and the servers move all W workers' bytes per step.

``speedup(W) = examples/s with W workers / examples/s of one worker alone (no servers)``.
Everything is an assumption stated in :class:`ClusterModel`; ``calibrate`` fills the one-machine
numbers from measurements (bench/distributed.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

__all__ = ["ClusterModel", "throughput", "speedup", "scaling_table", "configs_reaching",
           "seed_image_model"]


@dataclass
class ClusterModel:
    compute_per_example: float  # seconds of one worker's compute per example
    batch_size: int
    bytes_per_step: float  # parameter bytes pulled (= gradient bytes pushed) per worker step
    worker_bandwidth: float  # bytes/s into or out of one worker
    ps_bandwidth: float  # bytes/s one parameter-server task can move
    step_overhead: float = 0.002  # seconds of fixed latency per step (the null step)
    cores: int | None = None  # CPUs shared by all workers (None: one machine/GPU per worker)
    straggler_cv: float = 0.1  # spread of worker step times (sync waits for the slow ones)
    imbalance: float = 1.0  # busiest PS's share of the bytes times ps (1.0: balanced)

    def worker_step(self, workers):
        compute = self.batch_size * self.compute_per_example
        transfer = 2 * self.bytes_per_step / self.worker_bandwidth
        latency = compute + transfer + self.step_overhead
        if not self.cores:
            return latency
        # one machine: the workers' compute and both ends of every copy share its cores
        cpu = compute + 2 * transfer + self.step_overhead
        return max(latency, workers * cpu / self.cores)

    def single_worker_examples_per_sec(self):
        """One worker training alone in one process: no parameter traffic."""
        return 1.0 / (self.compute_per_example + self.step_overhead / self.batch_size)


def _order_statistic(k, n):
    """Expected k-th smallest of n standard normals (Blom)."""
    if n == 1:
        return 0.0
    return NormalDist().inv_cdf((k - 0.375) / (n + 0.25))


def throughput(m: ClusterModel, workers, ps, mode="async", backup=0) -> float:
    """Examples per second of ``workers`` workers and ``ps`` parameter servers."""
    t = m.worker_step(workers)
    ps_rate = ps * m.ps_bandwidth / (2 * m.bytes_per_step * m.imbalance)  # worker steps/s
    if mode == "async":
        return min(workers / t, ps_rate) * m.batch_size
    n = workers - backup
    if n < 1:
        raise ValueError(f"backup={backup} leaves no gradient to aggregate of {workers}")
    wait = t * (1 + m.straggler_cv * max(0.0, _order_statistic(n, workers)))
    step = max(wait, workers / ps_rate)  # the servers move every worker's bytes
    return n * m.batch_size / step


def speedup(m: ClusterModel, workers, ps, mode="async", backup=0) -> float:
    return throughput(m, workers, ps, mode, backup) / m.single_worker_examples_per_sec()


def scaling_table(m: ClusterModel, workers=(1, 2, 5, 10, 25, 50, 100, 200),
                  ps_counts=(1, 2, 4, 8, 16, 32), mode="async", backup=0):
    """``{ps: [speedup at each worker count]}``."""
    return {p: [speedup(m, w, p, mode, min(backup, w - 1)) for w in workers] for p in ps_counts}


def configs_reaching(m: ClusterModel, target=30.5, workers=50,
                     ps_counts=(1, 2, 4, 8, 16, 32)):
    """The (mode, backup, ps, speedup) configurations reaching ``target`` at ``workers``."""
    found = []
    for mode, backup in (("async", 0), ("sync", 0), ("sync", math.ceil(workers * 0.04)),
                         ("sync", math.ceil(workers * 0.1))):
        for p in ps_counts:
            s = speedup(m, workers, p, mode, backup)
            if s >= target:
                found.append((mode, backup, p, s))
                break  # the fewest servers for this mode
    return found


def seed_image_model(**overrides) -> ClusterModel:
    """Assumptions for the seed's image model on 50 GPUs (Inception-class, 2016): 25 M float32
    parameters (100 MB), batch 32 at 1.3 s per step on one GPU (about 25 images/s), 10 Gbit/s
    links (1.25 GB/s) for workers and servers, 2 ms step overhead, 10% step-time spread."""
    base = ClusterModel(compute_per_example=1.3 / 32, batch_size=32, bytes_per_step=100e6,
                        worker_bandwidth=1.25e9, ps_bandwidth=1.25e9, step_overhead=0.002,
                        cores=None, straggler_cv=0.1)
    return replace(base, **overrides)
