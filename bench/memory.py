"""Peak memory of one framework's LSTM training step, measured in a fresh process.

    python -m bench.memory tensorweave [--threads 1] [--steps 5]

Prints one JSON line. Method: build the model, run warm-up steps (plans compiled, optimizer
slots and allocator pools in place), read ``VmRSS``, reset the kernel's peak-RSS counter by
writing "5" to ``/proc/self/clear_refs``, run ``--steps`` steps, read ``VmHWM``. The step's
peak is ``VmHWM - VmRSS`` (bytes the step needed above what the process already held). For
tensorweave, a second pass under ``tracemalloc`` (which sees NumPy's allocations) gives the
peak of Python-visible allocations during one step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(framework, workload="lstm", steps=5, warmup=3, threads=1):
    """{'framework', 'rss_before_mb', 'hwm_mb', 'step_peak_mb', ...} for ``workload``."""
    from bench import workloads

    workloads.set_threads(framework, threads)
    case = workloads.build(framework, workload, threads=threads)
    for _ in range(warmup):
        case.step()
    rss = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    after_reset = _status_kb("VmHWM")
    for _ in range(steps):
        case.step()
    hwm = _status_kb("VmHWM")
    out = {"framework": framework, "workload": workload, "steps": steps, "threads": threads,
           "rss_before_mb": rss / 1024, "hwm_after_reset_mb": after_reset / 1024,
           "hwm_mb": hwm / 1024, "step_peak_mb": (hwm - rss) / 1024}
    if framework == "tensorweave":
        import tracemalloc
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        case.step()
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_peak_mb"] = (peak - base) / 2**20
        out["tracemalloc_retained_mb"] = (cur - base) / 2**20
    case.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("framework")
    ap.add_argument("--workload", default="lstm")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "src"))
    print(json.dumps(measure(args.framework, args.workload, args.steps, threads=args.threads)))


if __name__ == "__main__":
    main()
