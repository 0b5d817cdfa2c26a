"""Runs one graph-building function on a device and on the CPU and compares the results: the
forward outputs and the gradients of ``sum(out * cotangent)`` with respect to every float input.
The CPU (NumPy) kernels are the reference (DESIGN.md rule 2). Used by ``tests/test_gpu.py`` and
``bench/gpu_check.py`` with the op tables (``OpCase`` lists) of the op-family test files.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CaseResult:
    name: str
    ok: bool
    max_rel_err: float = 0.0
    device_ops: set = field(default_factory=set)  # op types that ran on the device
    cpu_ops: set = field(default_factory=set)  # op types soft-placed on the CPU
    dtype: str = ""
    message: str = ""
    seconds: float = 0.0


def collect_op_cases(module_names):
    """Every list of OpCase-like objects (``build``, ``ref``, ``shapes``) at the top level of
    the given modules, plus ``_fwd_cases()`` where a module builds its table in a function."""
    cases, seen = [], set()
    for name in module_names:
        try:
            mod = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  (a family still being written)
            print(f"  (cannot import {name}: {type(e).__name__}: {e})")
            continue
        pools = [v for v in vars(mod).values() if isinstance(v, list)]
        fwd = getattr(mod, "_fwd_cases", None)
        if callable(fwd):
            try:
                pools.append(list(fwd()))
            except Exception:  # noqa: BLE001
                pass
        for pool in pools:
            for c in pool:
                if all(hasattr(c, a) for a in ("build", "ref", "shapes", "name")) \
                        and (name, c.name) not in seen:
                    seen.add((name, c.name))
                    cases.append(c)
    return cases


def case_inputs(case, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    if case.make_inputs is not None:
        arrays = [np.asarray(a) for a in case.make_inputs(rng)]
    else:
        arrays = [rng.standard_normal(s) for s in case.shapes]
    return [a.astype(dtype) if a.dtype == np.float64 else a for a in arrays]


def _build(tw, case, arrays, device, out_shapes):
    """The case's outputs and, when ``out_shapes`` is given, the gradients of
    sum(out * cotangent) w.r.t. the float inputs, all under ``device``."""
    g = tw.Graph()
    with g.as_default():
        phs = [tw.placeholder(tw.as_dtype(a.dtype), a.shape if case.static_shapes else None)
               for a in arrays]
        with g.device(device) if device else _null():
            out = case.build(*phs)
            outs = [tw.convert_to_tensor(o) for o in
                    (list(out) if isinstance(out, (list, tuple)) else [out])]
            fetch = list(outs)
            idx = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
            if case.grad_inputs is not None:
                idx = list(case.grad_inputs)
            if out_shapes is not None and idx and all(o.dtype.is_floating for o in outs):
                rng = np.random.default_rng(1)
                terms = [tw.reduce_sum(o * tw.constant(
                    rng.standard_normal(shp).astype(o.dtype.as_numpy_dtype)))
                    for o, shp in zip(outs, out_shapes)]
                loss = tw.add_n(terms) if len(terms) > 1 else terms[0]
                fetch += [tw.convert_to_tensor(t)
                          for t in tw.gradients(loss, [phs[i] for i in idx]) if t is not None]
    return g, phs, fetch


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _placed(sess):
    dev, cpu = set(), set()
    for plan in getattr(sess, "_plans", {}).values():
        for st in plan.steps:
            if st.const is not None or st.transfer:
                continue
            (cpu if st.device == "CPU" else dev).add(st.op.type)
    return dev, cpu


def rel_err(got, want) -> float:
    """max |got - want| / max(1, max |want|): relative for large values, absolute below 1."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return float("inf")
    if want.size == 0:
        return 0.0
    if want.dtype.kind not in "fc":
        return 0.0 if np.array_equal(got, want) else float("inf")
    g64, w64 = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(g64) & np.isnan(w64)
    diff = np.where(both_nan, 0.0, np.abs(g64 - w64))
    if np.isnan(diff).any():
        return float("inf")
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(w64), w64, 0.0)))))
    return float(np.max(diff)) / scale


def compare_case(case, device, tol=1e-4, dtype=np.float32, grads=True) -> CaseResult:
    """Builds ``case`` under ``tw.device(device)`` (soft placement on) and on the CPU, runs
    both, and compares every output and gradient. Falls back to float64 inputs when the case
    cannot be built in float32 (e.g. it makes float64 constants)."""
    import tensorweave as tw

    t0 = time.perf_counter()
    res = CaseResult(case.name, False)
    for dt in ((dtype, np.float64) if dtype != np.float64 else (np.float64,)):
        arrays = case_inputs(case, dtype=dt)
        try:
            g0, ph0, f0 = _build(tw, case, arrays, None, None)
            with tw.Session(graph=g0) as s:
                shapes = [np.shape(v) for v in s.run(f0, dict(zip(ph0, arrays)))]
        except Exception as e:  # noqa: BLE001
            res.message = f"reference failed on the CPU: {type(e).__name__}: {str(e)[:200]}"
            continue
        note = ""
        try:
            shapes = shapes if grads and case.grad else None
            try:
                g_cpu, ph_cpu, f_cpu = _build(tw, case, arrays, None, shapes)
            except Exception as e:  # noqa: BLE001  (a gradient still missing: forward only)
                if shapes is None:
                    raise
                note = f"forward only ({type(e).__name__} building gradients)"
                shapes = None
                g_cpu, ph_cpu, f_cpu = _build(tw, case, arrays, None, shapes)
            g_dev, ph_dev, f_dev = _build(tw, case, arrays, device, shapes)
        except Exception as e:  # noqa: BLE001
            res.message = f"build failed in {np.dtype(dt).name}: {type(e).__name__}: {e}"
            continue
        res.dtype, res.message = np.dtype(dt).name, note
        break
    else:
        res.seconds = time.perf_counter() - t0
        return res
    try:
        with tw.Session(graph=g_cpu) as s:
            want = s.run(f_cpu, dict(zip(ph_cpu, arrays)))
    except Exception as e:  # noqa: BLE001  (no CPU reference: nothing to compare with)
        res.message = f"reference failed on the CPU: {type(e).__name__}: {str(e)[:200]}"
        res.seconds = time.perf_counter() - t0
        return res
    try:
        cfg = tw.ConfigProto(allow_soft_placement=True)
        with tw.Session(graph=g_dev, config=cfg) as s:
            got = s.run(f_dev, dict(zip(ph_dev, arrays)))
            res.device_ops, res.cpu_ops = _placed(s)
    except Exception as e:  # noqa: BLE001
        res.message = f"run failed: {type(e).__name__}: {str(e)[:300]}"
        res.seconds = time.perf_counter() - t0
        return res
    errs = [rel_err(a, b) for a, b in zip(got, want)]
    bad_types = [type(a).__name__ for a in got if a is not None and type(a) is not np.ndarray
                 and not isinstance(a, np.generic)]
    res.max_rel_err = max(errs, default=0.0)
    res.ok = res.max_rel_err <= tol and not bad_types
    if bad_types:
        res.message = f"fetches came back as {bad_types}, not NumPy"
    elif not res.ok:
        worst = int(np.argmax(errs))
        res.message = (f"fetch {worst} (an output of {f_dev[worst].op.type}) differs: "
                       f"rel err {errs[worst]:.3g}")
    res.seconds = time.perf_counter() - t0
    return res
