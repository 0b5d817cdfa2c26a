"""Kernels of ops/script_ops.py: Python callbacks, printing, value checks."""

from __future__ import annotations

import sys

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.ops import string_array as ops_string_array
from tensorweave.framework.registry import register_kernel


def _as_python_arg(x):
    """What TF1's py_func passes: NumPy arrays, strings as ``bytes`` (a scalar string as one
    ``bytes`` object), scalars as NumPy scalars."""
    a = np.asarray(x)
    if a.dtype.kind == "U":
        a = np.array([s.encode() for s in a.reshape(-1).tolist()], dtype=object).reshape(
            a.shape)
    return a[()] if a.ndim == 0 else a


def _py_func(op, ctx):
    token = op.attrs["token"]
    func = getattr(op.graph, "_py_funcs", {}).get(token)
    touts = [t.as_numpy_dtype for t in op.attrs["Tout"]]

    def run(*xs):
        if func is None:
            raise errors.FailedPreconditionError(
                None, op, f"The Python function of {op.describe()} (token {token}) is not "
                "available in this process: a py_func's function is not part of a GraphDef. "
                "Build the graph with tw.py_func in the process that runs it.")
        try:
            result = func(*(_as_python_arg(x) for x in xs))
        except Exception as e:  # noqa: BLE001  (reported as the op's error, with its cause)
            name = getattr(func, "__name__", repr(func))
            raise errors.UnknownError(
                None, op, f"{type(e).__name__}: {e} (in the py_func {name!r} of "
                f"{op.describe()})") from e
        values = list(result) if isinstance(result, (list, tuple)) else [result]
        if len(touts) == 1 and not isinstance(result, (list, tuple)):
            values = [result]
        if len(values) != len(touts):
            raise errors.InvalidArgumentError(
                None, op, f"The py_func returned {len(values)} values but Tout lists "
                f"{len(touts)} types ({op.describe()})")
        out = []
        for k, (v, dt) in enumerate(zip(values, touts)):
            a = np.asarray(v)
            want = np.dtype(dt)
            if want.kind == "O":  # tw.string: bytes, as TF1 returns them
                out.append(ops_string_array(a))
                continue
            if a.dtype.kind in "USO" or not (
                    np.can_cast(a.dtype, want, casting="same_kind") or a.dtype.kind == "b"):
                raise errors.InvalidArgumentError(
                    None, op, f"The py_func's output {k} has dtype {a.dtype}, which does not "
                    f"convert to the declared {want.name} ({op.describe()})")
            if want.kind in "iu" and a.dtype.kind in "iu" and a.size and \
                    not np.can_cast(a.dtype, want, casting="safe"):
                info = np.iinfo(want)
                if a.min() < info.min or a.max() > info.max:
                    raise errors.InvalidArgumentError(
                        None, op, f"The py_func's output {k} has values outside the range of "
                        f"the declared {want.name} ({op.describe()})")
            out.append(a.astype(want, copy=False))
        return out[0] if len(out) == 1 else tuple(out)

    return run


register_kernel("PyFunc")(_py_func)
register_kernel("PyFuncStateless")(_py_func)


def _summarize(a, n):
    flat = np.asarray(a).reshape(-1)
    shown = [x.decode() if isinstance(x, bytes) else x for x in flat[:n].tolist()]
    text = " ".join(str(x) for x in shown)
    return f"[{text}{'...' if flat.size > n else ''}]"


@register_kernel("Print")
def _print(op, ctx):
    message, first_n, summarize = op.attrs["message"], op.attrs["first_n"], op.attrs["summarize"]
    # one count per op and session, whichever plans run the op (as TF's kernel keeps it)
    count = ctx.resources.setdefault(("Print.first_n", op.name), [0])

    def run(x, *data):
        if first_n < 0 or count[0] < first_n:
            count[0] += 1
            print(message + "".join(_summarize(d, summarize) for d in data), file=sys.stderr,
                  flush=True)
        return x

    return run


@register_kernel("CheckNumerics")
def _check_numerics(op, ctx):
    message = op.attrs["message"]

    def run(x):
        if not np.isfinite(x).all():
            what = "NaN" if np.isnan(x).any() else "Inf"
            raise errors.InvalidArgumentError(
                None, op, f"{message} : Tensor had {what} values ({op.describe()})")
        return x

    return run


@register_kernel("Assert")
def _assert(op, ctx):
    summarize = op.attrs["summarize"]

    def run(cond, *data):
        if not bool(np.all(cond)):
            shown = " ".join(_summarize(d, summarize) for d in data)
            raise errors.InvalidArgumentError(
                None, op, f"assertion failed: {shown} ({op.describe()})")

    return run
