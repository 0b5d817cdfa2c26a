"""Ops that call back into Python or check values while the graph runs: ``tw.py_func`` /
``tw.numpy_function`` (a Python function as an op), ``tw.Print``, ``tw.check_numerics``,
``tw.Assert`` and the ``tw.assert_*`` comparisons.

Example::

    def tokenize(lines):                       # NumPy in, NumPy out, at run time
        return np.array([len(s.split()) for s in lines], np.int32)
    counts = tw.py_func(tokenize, [lines], tw.int32)
    counts.set_shape([None])                   # py_func outputs have unknown shapes
    with tw.control_dependencies([tw.assert_positive(counts, message="empty line")]):
        counts = tw.identity(counts)
"""

from __future__ import annotations

import itertools

from tensorweave.framework import dtypes, ops
from tensorweave.framework.common_shapes import no_outputs, unchanged
from tensorweave.framework.ops import convert_to_tensor
from tensorweave.framework.registry import register_op
from tensorweave.framework.tensor_shape import TensorShape
from tensorweave.ops.op_util import make, make_op

__all__ = ["py_func", "numpy_function", "Print", "check_numerics",
           "verify_tensor_all_finite", "Assert", "assert_equal", "assert_none_equal",
           "assert_less", "assert_less_equal", "assert_greater", "assert_greater_equal",
           "assert_positive", "assert_negative", "assert_non_negative", "assert_non_positive"]

_tokens = itertools.count()


def _py_func_infer(op):
    return [(dtypes.as_dtype(t), TensorShape(None)) for t in op.attrs["Tout"]]


register_op("PyFunc", stateful=True)(_py_func_infer)
register_op("PyFuncStateless")(_py_func_infer)


def py_func(func, inp, Tout, stateful=True, name=None):  # noqa: N803  (TF's name)
    """An op that runs ``func(*values of inp)`` in this Python process when the graph runs:
    NumPy arrays in, a value (or list of values, one per ``Tout`` dtype) out. ``Tout`` a
    single dtype gives one tensor, a list gives a list. The outputs' shapes are unknown until
    ``set_shape``; no gradient flows through. ``stateful=False`` lets the optimizer fold or
    merge identical calls. The function lives in this process's graph only: a GraphDef export
    names it by a token that another process cannot run."""
    if not callable(func):
        raise TypeError(f"py_func: func must be callable, got {func!r}")
    single = not isinstance(Tout, (list, tuple))
    touts = [dtypes.as_dtype(t) for t in ([Tout] if single else Tout)]
    inp = [convert_to_tensor(x) for x in (inp or [])]
    g = ops.get_default_graph()
    if not hasattr(g, "_py_funcs"):
        g._py_funcs = {}
    token = f"pyfunc_{next(_tokens)}"
    g._py_funcs[token] = func
    op = make_op("PyFunc" if stateful else "PyFuncStateless", inp,
                 {"token": token, "Tout": touts, "Tin": [t.dtype for t in inp]},
                 name=name or "PyFunc", graph=g)
    outs = list(op.outputs)
    if single:
        return outs[0]
    return outs


def numpy_function(func, inp, Tout, name=None):  # noqa: N803
    """``py_func`` under its TF 1.15 name (stateful)."""
    return py_func(func, inp, Tout, stateful=True, name=name)


# --- printing and checking ----------------------------------------------------------------------
register_op("Print", stateful=True)(unchanged)
register_op("CheckNumerics")(unchanged)
register_op("Assert", stateful=True)(no_outputs)


def Print(input_, data, message=None, first_n=None, summarize=None, name=None):  # noqa: N802
    """``input_`` unchanged; each time it is computed, prints ``message`` and the first
    ``summarize`` (default 3) elements of each tensor of ``data`` to stderr (only the first
    ``first_n`` times when given)."""
    x = convert_to_tensor(input_)
    data = [convert_to_tensor(d) for d in (data or [])]
    attrs = {"message": message or "", "first_n": -1 if first_n is None else int(first_n),
             "summarize": 3 if summarize is None else int(summarize)}
    return make("Print", [x] + data, attrs, name=name or "Print")


def check_numerics(tensor, message, name=None):
    """``tensor`` unchanged, or InvalidArgumentError at run time (with ``message``) when it
    holds a NaN or an infinity."""
    x = convert_to_tensor(tensor)
    if not x.dtype.is_floating:
        raise TypeError(f"check_numerics needs a floating-point tensor, got {x.dtype.name}")
    return make("CheckNumerics", [x], {"message": str(message)}, name=name or "CheckNumerics")


def verify_tensor_all_finite(t, msg, name=None):
    """:func:`check_numerics` under its TF1 name."""
    return check_numerics(t, msg, name=name)


def Assert(condition, data, summarize=None, name=None):  # noqa: N802
    """An op that fails with InvalidArgumentError ("assertion failed: ...", the first
    ``summarize`` elements of each of ``data``) when ``condition`` (a boolean scalar) is
    False. Run it, or make other ops depend on it with ``tw.control_dependencies``."""
    cond = convert_to_tensor(condition)
    if cond.dtype != dtypes.bool_:
        raise TypeError(f"Assert: condition must be a bool tensor, got {cond.dtype.name}")
    data = [convert_to_tensor(d) for d in (data or [])]
    return make_op("Assert", [cond] + data, {"summarize": 3 if summarize is None else
                                               int(summarize)}, name=name or "Assert")


def _assert_all(ufunc_name, what, default, x, y, data, summarize, message, name):
    """The Assert op of ``all(x <what> y)``; ``y`` None compares with 0."""
    import tensorweave as tw
    with ops.name_scope(name, default):
        x = convert_to_tensor(x)
        shown = [f"Condition x {what} {'0' if y is None else 'y'} did not hold element-wise:",
                 "x =", x]
        if y is not None:
            y = convert_to_tensor(y, dtype=x.dtype)
            shown += ["y =", y]
        cond = tw.reduce_all(getattr(tw, ufunc_name)(x, 0 if y is None else y))
        data = shown if data is None else list(data)
        return Assert(cond, data if message is None else [message] + data,
                      summarize=summarize)


def _binary(ufunc_name, what, default):
    def check(x, y, data=None, summarize=None, message=None, name=None):
        return _assert_all(ufunc_name, what, default, x, y, data, summarize, message, name)

    check.__name__ = check.__qualname__ = default
    check.__doc__ = f"An Assert op: fails at run time unless ``x {what} y`` for every element."
    return check


def _unary(ufunc_name, what, default):
    def check(x, data=None, summarize=None, message=None, name=None):
        return _assert_all(ufunc_name, what, default, x, None, data, summarize, message, name)

    check.__name__ = check.__qualname__ = default
    check.__doc__ = f"An Assert op: fails at run time unless ``x {what} 0`` for every element."
    return check


assert_equal = _binary("equal", "==", "assert_equal")
assert_none_equal = _binary("not_equal", "!=", "assert_none_equal")
assert_less = _binary("less", "<", "assert_less")
assert_less_equal = _binary("less_equal", "<=", "assert_less_equal")
assert_greater = _binary("greater", ">", "assert_greater")
assert_greater_equal = _binary("greater_equal", ">=", "assert_greater_equal")
assert_positive = _unary("greater", ">", "assert_positive")
assert_negative = _unary("less", "<", "assert_negative")
assert_non_negative = _unary("greater_equal", ">=", "assert_non_negative")
assert_non_positive = _unary("less_equal", "<=", "assert_non_positive")
