"""One-shot GPU check: which GPU kernels agree with the CPU kernels, and how fast training
steps run against PyTorch on the same GPU. Writes a markdown report.

    python bench/gpu_check.py --out results-gpu.md              # on a machine with a GPU
    python bench/gpu_check.py --out /tmp/r.md --emulate         # NumPy emulation, to test it

Sections (each time-boxed; an error is recorded and the next section runs):
1. environment: GPU name, CuPy / NumPy / PyTorch versions; ``tensorweave.kernels.gpu.load()``.
2. timings: ``bench/gpu_bench.py``'s MLP, LSTM and CNN training steps (median of --steps after
   --warmup, device synchronized each step) on the GPU with elementwise fusion on (the default)
   and off, on the CPU and in PyTorch, and the kernel launches per step counted on the emulation.
3. fusion: a small fused LSTM training step against the CPU; generated kernels that failed to
   compile or launch (those ran unfused).
4. ops: every OpCase of the op-family test tables built once under ``tw.device("/gpu:0")``
   (soft placement on) and once on the CPU, in float32, forward outputs and input gradients
   compared (max |gpu - cpu| / max(1, max |cpu|) <= 1e-4); then every optimizer (dense and
   sparse gradients) and a variable/scatter graph the same way. Result per op type: pass if
   every case that ran it on the GPU agreed (with the time the timings left).
The report is rewritten after every section, so a run cut short still leaves one.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import signal
import sys
import time
import traceback

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(_ROOT, "src"), os.path.join(_ROOT, "tests"), os.path.join(_ROOT, "bench")):
    if _p not in sys.path:
        sys.path.insert(0, _p)


TABLE_MODULES = ["test_core_smoke", "test_array_ops", "test_math_ops", "test_nn_ops",
                 "test_conv_ops"]
_T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


class SectionTimeout(Exception):
    pass


class time_box:  # noqa: N801  (used as a statement: ``with time_box(60):``)
    """Raises SectionTimeout in the main thread after ``seconds`` (a real-time timer); nests:
    an inner box never outlives the outer one, and the outer timer resumes after it."""

    def __init__(self, seconds):
        self.seconds = max(1.0, float(seconds))

    def __enter__(self):
        def fire(signum, frame):
            raise SectionTimeout(f"section exceeded {self.seconds:.0f}s")

        self.outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
        self.start = time.monotonic()
        self.old = signal.signal(signal.SIGALRM, fire)
        delay = self.seconds if not self.outer_left else min(self.seconds, self.outer_left)
        signal.setitimer(signal.ITIMER_REAL, delay)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        if self.outer_left:
            left = self.outer_left - (time.monotonic() - self.start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.01))
        return False


class Report:
    def __init__(self, path):
        self.path = path
        self.parts = collections.OrderedDict()

    def set(self, key, text):
        self.parts[key] = text
        self.write()

    def write(self):
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(self.parts.values()))
        os.replace(tmp, self.path)


# --- 1. environment -----------------------------------------------------------------------------
def environment(emulate):
    rows = [("python", platform.python_version()), ("numpy", np.__version__)]
    info = {"device": None, "sync": lambda: None, "label": "GPU", "ok": False}
    try:
        import cupy
        rows.append(("cupy", cupy.__version__))
        try:
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
            rows.append(("GPU", name.decode() if isinstance(name, bytes) else str(name)))
            rows.append(("CUDA runtime", str(cupy.cuda.runtime.runtimeGetVersion())))
        except Exception as e:  # noqa: BLE001
            rows.append(("GPU", f"none ({type(e).__name__}: {e})"))
    except Exception as e:  # noqa: BLE001
        rows.append(("cupy", f"not importable ({type(e).__name__}: {e})"))
    try:
        import torch
        cuda = torch.cuda.is_available()
        rows.append(("torch", f"{torch.__version__} (CUDA {'available' if cuda else 'not available'})"))
        info["torch"] = cuda
    except Exception as e:  # noqa: BLE001
        rows.append(("torch", f"not installed ({type(e).__name__})"))
        info["torch"] = False
    import gpu_bench
    try:
        info["device"], info["sync"], info["label"] = gpu_bench.setup_device(emulate)
        info["ok"] = True
        from tensorweave.kernels import gpu
        n = len(gpu.registered_op_types()) if not emulate else "emulated"
        rows.append(("tensorweave GPU kernels", f"loaded ({n} op types), device {info['device']}"))
    except Exception as e:  # noqa: BLE001
        rows.append(("tensorweave GPU kernels", f"NOT loaded: {e}"))
    if emulate:
        info["torch"] = False
        rows.append(("mode", "--emulate: GPU kernel code on the NumPy emulation; timings are "
                             "not GPU timings and PyTorch is not run"))
    for k, v in rows:
        log(f"{k}: {v}")
    md = ["# tensorweave GPU check", "", "| what | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    return info, "\n".join(md) + "\n"


# --- 2. ops ---------------------------------------------------------------------------------------
def check_ops(device, deadline):
    from tensorweave.framework.registry import registered_ops
    from tensorweave.kernels.gpu import crosscheck

    dev_type = device.split(":")[-2].split("/")[-1] if "device:" in device else "GPU"
    with_kernel = sorted(t for t, d in registered_ops().items() if dev_type in d.kernels)
    cases = crosscheck.collect_op_cases(TABLE_MODULES)
    log(f"ops: {len(cases)} table cases, {len(with_kernel)} op types with a {dev_type} kernel")
    per_op = collections.defaultdict(lambda: {"pass": [], "fail": [], "err": 0.0})
    failures, skipped, fallback = [], [], collections.Counter()
    for i, case in enumerate(cases):
        if time.monotonic() > deadline:
            skipped.append(f"{case.name} (time budget)")
            continue
        try:
            with time_box(30):
                r = crosscheck.compare_case(case, device, tol=1e-4, dtype=np.float32)
        except Exception as e:  # noqa: BLE001
            failures.append((case.name, f"{type(e).__name__}: {e}", set()))
            continue
        if r.message.startswith(("build failed", "reference failed")):
            skipped.append(f"{case.name} ({r.message[:100]})")
            continue
        for t in r.device_ops:
            slot = per_op[t]
            slot["pass" if r.ok else "fail"].append(case.name)
            slot["err"] = max(slot["err"], r.max_rel_err if np.isfinite(r.max_rel_err) else 1e9)
        fallback.update(r.cpu_ops)
        if not r.ok:
            failures.append((case.name, r.message, r.device_ops))
            log(f"  FAIL {case.name}: {r.message}")
        if i % 25 == 0:
            log(f"  case {i + 1}/{len(cases)} {case.name}: {'ok' if r.ok else 'FAIL'} "
                f"({r.seconds * 1e3:.0f} ms)")
    extra = check_stateful(device, deadline, per_op, failures)
    return with_kernel, per_op, failures, skipped, fallback, len(cases), extra


def check_stateful(device, deadline, per_op, failures):
    """Optimizers (dense and sparse) and assign/scatter, through tests/test_gpu.py's graphs."""
    notes = []
    try:
        import test_gpu
    except Exception as e:  # noqa: BLE001
        return [f"optimizer checks not run: cannot import tests/test_gpu.py ({e})"]
    from tensorweave.kernels.gpu import crosscheck
    for name in sorted(test_gpu.OPTIMIZERS):
        for sparse in (False, True):
            label = f"optimizer {name} ({'sparse' if sparse else 'dense'})"
            if time.monotonic() > deadline:
                notes.append(f"{label}: skipped (time budget)")
                continue
            try:
                with time_box(30):
                    want, _, _ = test_gpu.train_steps(None, test_gpu.OPTIMIZERS[name], sparse,
                                                      dtype=np.float32)
                    got, (on_dev, _), _ = test_gpu.train_steps(
                        device, test_gpu.OPTIMIZERS[name], sparse, dtype=np.float32)
                err = max(crosscheck.rel_err(a, b) for a, b in zip(got, want))
                ok = err <= 1e-4
            except Exception as e:  # noqa: BLE001
                ok, err, on_dev = False, float("inf"), set()
                failures.append((label, f"{type(e).__name__}: {str(e)[:200]}", set()))
            for t in on_dev:
                per_op[t]["pass" if ok else "fail"].append(label)
                per_op[t]["err"] = max(per_op[t]["err"], err if np.isfinite(err) else 1e9)
            if not ok and np.isfinite(err):
                failures.append((label, f"variables differ: rel err {err:.3g}", on_dev))
            log(f"  {label}: {'ok' if ok else 'FAIL'} (rel err {err:.2g})")
    return notes


def ops_markdown(device, result, elapsed):
    with_kernel, per_op, failures, skipped, fallback, n_cases, notes = result
    passed = sorted(t for t in with_kernel if per_op[t]["pass"] and not per_op[t]["fail"])
    failed = sorted(t for t in with_kernel if per_op[t]["fail"])
    uncovered = sorted(t for t in with_kernel if not per_op[t]["pass"] and not per_op[t]["fail"])
    md = ["", f"## Ops on {device} vs CPU kernels (float32, tolerance 1e-4)", "",
          f"{n_cases} table cases, {elapsed:.0f}s. Op types with a GPU kernel: {len(with_kernel)}; "
          f"**pass {len(passed)}**, **fail {len(failed)}**, not exercised by any case "
          f"{len(uncovered)}.", "",
          "| op type | result | cases run on the GPU | max rel err |", "|---|---|---|---|"]
    for t in failed + passed:
        s = per_op[t]
        res = "FAIL" if s["fail"] else "pass"
        n = len(s["pass"]) + len(s["fail"])
        md.append(f"| {t} | {res} | {n} | {s['err']:.1e} |")
    if uncovered:
        md += ["", "Not exercised by any case: " + ", ".join(uncovered)]
    if failures:
        md += ["", "### Failures", ""]
        md += [f"- **{name}**: {msg} (GPU ops: {', '.join(sorted(ops)) or '-'})"
               for name, msg, ops in failures]
    if fallback:
        md += ["", "Soft-placed on the CPU (no GPU kernel) in these cases: " +
               ", ".join(f"{t} ({n})" for t, n in sorted(fallback.items()))]
    if skipped:
        md += ["", f"Cases not run ({len(skipped)}): " + "; ".join(skipped[:40]) +
               (" ..." if len(skipped) > 40 else "")]
    md += [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


# --- generated kernels and fusion ------------------------------------------------------------------
def check_fusion(device):
    """A small unrolled LSTM training step (tests/test_gpu_fusion.py) with fused plans on
    ``device`` against the CPU, and what was generated: kernels compiled, kernels that failed
    (and so ran unfused)."""
    from tensorweave.kernels.gpu import elementwise
    md = ["", "## Generated kernels and elementwise fusion", ""]
    try:
        import test_gpu_fusion as tf
        build, feeds = tf.lstm_cell_graph(dtype=np.float32)
        got, plan, _ = tf.run_graph(build, feeds, device=device, steps=3)
        want, _, _ = tf.run_graph(build, feeds, device=None, steps=3)
        err = max(float(np.max(np.abs(np.asarray(a, np.float64) - b)) /
                        max(1.0, float(np.max(np.abs(b))))) for a, b in zip(got, want)
                  if b is not None)
        st = plan.rewrite_stats
        md.append(f"- small LSTM training step, fused plan on {device} vs CPU: max rel err "
                  f"{err:.1e} ({'pass' if err <= 1e-4 else 'FAIL'}); "
                  f"{st.get('elementwise_fused_ops')} ops in {st.get('elementwise_kernels')} "
                  "fused kernels")
    except Exception as e:  # noqa: BLE001
        md.append(f"- small LSTM check failed: {type(e).__name__}: {str(e)[:300]}")
    md.append(f"- distinct generated kernel bodies so far: {len(elementwise.SOURCES)}; failed "
              f"to compile or launch (ran unfused instead): {len(elementwise.FAILURES)}")
    for src, why in elementwise.FAILURES[:5]:
        md.append(f"  - `{src[:200]}`: {why[:400]}")
    log(md[-1] if not elementwise.FAILURES else f"{len(elementwise.FAILURES)} kernel failures")
    return "\n".join(md) + "\n"


# --- main ---------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description="tensorweave GPU kernel check and timings")
    ap.add_argument("--out", default="results-gpu.md", help="markdown report path")
    ap.add_argument("--emulate", action="store_true",
                    help="run the GPU kernel code on the NumPy emulation (no GPU needed)")
    ap.add_argument("--budget", type=float, default=220.0,
                    help="seconds for the whole run (sections shrink to fit)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--skip-ops", action="store_true")
    ap.add_argument("--skip-timings", action="store_true")
    args = ap.parse_args(argv)
    end = _T0 + args.budget
    report = Report(args.out)
    status = 0

    info, md = environment(args.emulate)
    report.set("env", md)
    if not info["ok"]:
        report.set("stop", "\nGPU kernels did not load: nothing else was run.\n")
        log("GPU kernels did not load; report written")
        return 1

    if not args.skip_timings:
        import gpu_bench
        t0 = time.monotonic()
        left = end - t0
        steps, warmup = args.steps, args.warmup
        if left < 60:  # shrink the timed loops rather than skip them
            steps, warmup = max(5, steps // 5), max(2, warmup // 5)
        header = (f"\n## Training steps (median of {steps} steps after {warmup} warm-up, device "
                  "synchronized each step; float32, TF32 off; batch fed from host memory). "
                  "Fused: the default GraphOptions (elementwise fusion on); unfused: "
                  "GraphOptions(fusion=False). Launches: device kernels per training step "
                  "counted on the NumPy emulation of the same kernel code\n\n")
        try:
            # about 2/3 of the budget; the fusion check and the op checks get the rest
            with time_box(max(10, 0.7 * left)):
                rows = gpu_bench.run_all(info["device"], info["sync"], steps, warmup,
                                         torch_ok=info.get("torch", False), log=log,
                                         deadline=t0 + 0.6 * left)
            torch_label = "PyTorch" if info.get("torch") else "PyTorch (not available)"
            report.set("timing", header + gpu_bench.markdown(rows, info["label"], torch_label))
        except Exception as e:  # noqa: BLE001
            report.set("timing", header + f"section failed: {type(e).__name__}: {e}\n")
            log(f"timing section failed: {e}")
            status = status or 3
        log(f"timing section done in {time.monotonic() - t0:.0f}s")

    try:
        with time_box(30):
            report.set("fusion", check_fusion(info["device"]))
    except Exception as e:  # noqa: BLE001
        report.set("fusion", f"\n## Generated kernels\n\nsection failed: {e}\n")

    if not args.skip_ops:
        t0 = time.monotonic()
        ops_deadline = end - 15  # what the timings left
        try:
            with time_box(max(10, end - t0 - 20)):
                result = check_ops(info["device"], ops_deadline)
            report.set("ops", ops_markdown(info["device"], result, time.monotonic() - t0))
            if any(result[1][t]["fail"] for t in result[0]):
                status = 2
        except Exception as e:  # noqa: BLE001
            report.set("ops", f"\n## Ops\n\nsection failed: {type(e).__name__}: {e}\n\n```\n"
                              f"{traceback.format_exc()[-2000:]}\n```\n")
            log(f"ops section failed: {e}")
            status = 2
        log(f"ops section done in {time.monotonic() - t0:.0f}s")

    report.set("end", f"\nTotal {time.monotonic() - _T0:.0f}s.\n")
    log(f"report written to {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
