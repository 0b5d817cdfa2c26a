"""GPU kernels for math ops: elementwise tables, AddN, Cast, MatMul (cuBLAS through
``xp.matmul``), reductions, Select, ArgMax. Elementwise ops name the ufunc of the same name in
NumPy and CuPy, so the CPU kernel's function is the spec and the table is the whole kernel."""

from __future__ import annotations

from tensorweave.kernels.gpu.common import int_list, simple, to_int
from tensorweave.kernels.gpu.elementwise import one_kernel

# op type -> ufunc name shared by NumPy and CuPy (CPU simple kernels use np.<name>)
UNARY_UFUNCS = {
    "Neg": "negative", "Tanh": "tanh", "Abs": "absolute", "Sign": "sign", "Square": "square",
    "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Inv": "reciprocal", "Exp": "exp",
    "Expm1": "expm1", "Log": "log", "Log1p": "log1p", "Sin": "sin", "Cos": "cos", "Tan": "tan",
    "Asin": "arcsin", "Acos": "arccos", "Atan": "arctan", "Sinh": "sinh", "Cosh": "cosh",
    "Asinh": "arcsinh", "Acosh": "arccosh", "Atanh": "arctanh", "Floor": "floor",
    "Ceil": "ceil", "Round": "rint", "Rint": "rint", "IsNan": "isnan", "IsInf": "isinf",
    "IsFinite": "isfinite", "LogicalNot": "logical_not",
}
BINARY_UFUNCS = {
    "AddV2": "add", "Add": "add", "Sub": "subtract", "Mul": "multiply", "RealDiv": "true_divide",
    "Maximum": "maximum", "Minimum": "minimum", "Pow": "power", "FloorDiv": "floor_divide",
    "FloorMod": "remainder", "TruncateMod": "fmod", "Less": "less", "LessEqual": "less_equal",
    "Greater": "greater", "GreaterEqual": "greater_equal", "Equal": "equal",
    "NotEqual": "not_equal", "LogicalAnd": "logical_and", "LogicalOr": "logical_or",
    "Atan2": "arctan2",
}


def _composites(xp):
    """Elementwise ops with no single ufunc: op type -> fn(*inputs). Gradient helpers take
    TensorFlow's (y, dy) order."""

    def sigmoid(x):
        # 0.5 * tanh(x / 2) + 0.5 never overflows, unlike 1 / (1 + exp(-x))
        return xp.tanh(x * 0.5) * 0.5 + 0.5

    def rsqrt(x):
        return xp.reciprocal(xp.sqrt(x))

    def div_no_nan(x, y):
        zero = y == 0
        return xp.where(zero, xp.zeros((), x.dtype), x / xp.where(zero, xp.ones((), y.dtype), y))

    return {
        "Sigmoid": sigmoid,
        "Rsqrt": rsqrt,
        "SquaredDifference": lambda x, y: xp.square(x - y),
        "DivNoNan": div_no_nan,
        "SigmoidGrad": lambda y, dy: dy * (y * (1 - y)),
        "TanhGrad": lambda y, dy: dy * (1 - y * y),
        "SqrtGrad": lambda y, dy: dy * 0.5 / y,
        "RsqrtGrad": lambda y, dy: dy * (y * y * y) * -0.5,
        "ReciprocalGrad": lambda y, dy: -dy * (y * y),
        "InvGrad": lambda y, dy: -dy * (y * y),
        "SelectV2": xp.where,
    }


def kernels(be):
    xp = be.xp
    table = {}
    for op_type, name in {**UNARY_UFUNCS, **BINARY_UFUNCS}.items():
        table[op_type] = simple(getattr(xp, name))
    for op_type, fn in _composites(xp).items():
        table[op_type] = simple(fn)

    def add_n(op, ctx):
        def run(*xs):
            out = xp.add(xs[0], xs[1])
            for x in xs[2:]:
                xp.add(out, x, out=out)
            return out

        return run

    def cast(op, ctx):
        npd = op.attrs["DstT"].as_numpy_dtype
        return lambda x: x.astype(npd)

    def matmul(op, ctx):
        ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
        if not ta and not tb:
            return xp.matmul
        return lambda a, b: xp.matmul(a.T if ta else a, b.T if tb else b)

    def batch_matmul(op, ctx):
        ax, ay = op.attrs.get("adj_x", False), op.attrs.get("adj_y", False)

        def run(a, b):
            return xp.matmul(xp.swapaxes(a, -1, -2) if ax else a,
                             xp.swapaxes(b, -1, -2) if ay else b)

        return run

    def reduction(name):
        fn = getattr(xp, name)

        def factory(op, ctx):
            keep = op.attrs.get("keep_dims", False)

            def run(x, axes):
                ax = tuple(int_list(be, axes))
                if not ax:  # nothing to reduce: a copy, as np.sum(axis=()) gives
                    return x.copy()
                return fn(x, axis=ax, keepdims=keep).astype(x.dtype, copy=False)

            return run

        return factory

    def select(op, ctx):
        # TF1 Select: a vector condition picks whole rows of higher-rank branches
        def run(c, t, e):
            if c.ndim == 1 and t.ndim > 1:
                c = c.reshape(c.shape + (1,) * (t.ndim - 1))
            return xp.where(c, t, e)

        return run

    def arg(name):
        fn = getattr(xp, name)

        def factory(op, ctx):
            npd = op.attrs.get("output_type")
            npd = npd.as_numpy_dtype if npd is not None else xp.int64
            return lambda x, dim: fn(x, axis=to_int(be, dim)).astype(npd)

        return factory

    # several xp operations each: one generated kernel instead (float32/float64)
    for op_type in (*_composites(xp), "AddN"):
        if op_type in table and op_type not in ("DivNoNan", "SelectV2"):
            table[op_type] = one_kernel(be, table[op_type])
    table.update({
        "AddN": one_kernel(be, add_n), "Cast": cast, "MatMul": matmul, "BatchMatMul": batch_matmul,
        "BatchMatMulV2": batch_matmul, "Sum": reduction("sum"), "Mean": reduction("mean"),
        "Max": reduction("max"), "Min": reduction("min"), "Prod": reduction("prod"),
        "All": reduction("all"), "Any": reduction("any"), "Select": select,
        "ArgMax": arg("argmax"), "ArgMin": arg("argmin"),
    })
    return table
