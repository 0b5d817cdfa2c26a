"""Generated elementwise kernels: a whole expression (one op's formula, a fused chain of ops, an
optimizer update) becomes ONE device kernel instead of one launch per NumPy-style operation.

A ``Program`` is a straight-line list of scalar statements over named inputs and outputs,
written in the syntax C++ and Python share (arithmetic, comparisons, calls, ``T(0.5)`` casts to
the element type), so the same text is both the body of a ``cupy.ElementwiseKernel`` (CUDA,
compiled once per text by NVRTC and cached) and, on the NumPy emulation (``emulate.py``), a
vectorized Python function evaluated in the same order, which is what the tests check against
the unfused kernels. ``EXPRESSIONS`` gives each fusable op type its formula, matching the GPU
kernel it replaces operation for operation (same association order, same constants).

Example::

    prog = Program(("a0",), ("o0",), (("o0", "=", "tanh(a0 * T(0.5)) * T(0.5) + T(0.5)"),))
    sigmoid = compile_program(backend, prog)     # sigmoid(x_device) -> device array
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Device helpers every generated kernel may call. NaN-propagating maximum/minimum, as the
# ufuncs they replace (CUDA's fmaxf would drop a NaN).
PREAMBLE = r"""
template <typename C, typename A>
__device__ __forceinline__ A where_(C c, A a, A b) { return c ? a : b; }
template <typename A>
__device__ __forceinline__ A maximum_(A a, A b) { return (a > b || a != a) ? a : b; }
template <typename A>
__device__ __forceinline__ A minimum_(A a, A b) { return (a < b || a != a) ? a : b; }
"""

# The same helpers for the NumPy evaluation (names as in PREAMBLE and CUDA's math library).
_PY_FUNCS = {
    "where_": np.where, "maximum_": np.maximum, "minimum_": np.minimum, "tanh": np.tanh,
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "log1p": np.log1p, "expm1": np.expm1,
    "fabs": np.fabs, "sin": np.sin, "cos": np.cos,
}

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Program:
    """``inputs``: read-only parameters; ``outputs``: results (fresh arrays of the broadcast
    shape of the inputs); ``inout``: arrays the caller passes that the body updates in place
    (after the inputs when called). ``body``: (target, op, expression) with op one of ``let``
    (a new temporary), ``=``, ``+=``, ``-=``, ``*=``. Outputs, in-place arrays and ``let``
    temporaries have the element type ``T``, taken from the first ``T`` input."""

    inputs: tuple
    outputs: tuple
    body: tuple
    inout: tuple = ()
    types: tuple = ()  # per input: "T" (the element type, the default) or "I" (an integer type)

    def input_type(self, k) -> str:
        return self.types[k] if k < len(self.types) else "T"

    def cuda_source(self) -> str:
        lines = []
        for target, op, expr in self.body:
            lines.append(f"T {target} = {expr};" if op == "let" else f"{target} {op} {expr};")
        return "\n".join(lines)

    def python_source(self) -> str:
        lines = [f"def _kernel({', '.join(self.inputs + self.inout)}):"]
        for target, op, expr in self.body:
            lines.append(f"    {target} {'=' if op == 'let' else op} {expr}")
        lines.append(f"    return ({''.join(o + ', ' for o in self.outputs)})")
        return "\n".join(lines) + "\n"


def const(value, dtype) -> str:
    """A literal of the element type holding exactly ``value`` as ``dtype`` rounds it."""
    return f"T({float(np.asarray(value, dtype=dtype))!r})"


# --- the formulas of the fusable ops -----------------------------------------------------------
def _bin(fmt):
    return lambda op, a, b: fmt.format(a=a, b=b)


def _un(fmt):
    return lambda op, a: fmt.format(a=a)


def _leaky(grad):
    def expr(op, *xs):
        alpha = const(op.attrs["alpha"], op.outputs[0].dtype.as_numpy_dtype)
        g, x = (xs[0], xs[1]) if grad else (xs[0], xs[0])
        return f"where_({x} > T(0), {g}, {g} * {alpha})"

    return expr


# op type -> fn(op, *input expressions) -> expression. Inputs are in the op's input order;
# gradient ops take TensorFlow's order ((y, dy) for SigmoidGrad, (dy, x) for ReluGrad).
EXPRESSIONS = {
    "AddV2": _bin("({a} + {b})"), "Add": _bin("({a} + {b})"), "Sub": _bin("({a} - {b})"),
    "Mul": _bin("({a} * {b})"), "RealDiv": _bin("({a} / {b})"),
    "Maximum": _bin("maximum_({a}, {b})"), "Minimum": _bin("minimum_({a}, {b})"),
    "SquaredDifference": _bin("(({a} - {b}) * ({a} - {b}))"),
    "BiasAdd": _bin("({a} + {b})"),
    "AddN": lambda op, *xs: "(" + " + ".join(xs) + ")",
    "Neg": _un("(-{a})"), "Square": _un("({a} * {a})"), "Abs": _un("fabs({a})"),
    "Tanh": _un("tanh({a})"), "Exp": _un("exp({a})"), "Log": _un("log({a})"),
    "Log1p": _un("log1p({a})"), "Expm1": _un("expm1({a})"), "Sqrt": _un("sqrt({a})"),
    "Reciprocal": _un("(T(1) / {a})"), "Rsqrt": _un("(T(1) / sqrt({a}))"),
    # 0.5 * tanh(x / 2) + 0.5 never overflows (the GPU kernel's formula)
    "Sigmoid": _un("(tanh({a} * T(0.5)) * T(0.5) + T(0.5))"),
    "Relu": _un("maximum_({a}, T(0))"),
    "Relu6": _un("minimum_(maximum_({a}, T(0)), T(6))"),
    "Elu": _un("where_({a} > T(0), {a}, expm1(minimum_({a}, T(0))))"),
    "Softsign": _un("({a} / (T(1) + fabs({a})))"),
    "SigmoidGrad": _bin("({b} * ({a} * (T(1) - {a})))"),
    "TanhGrad": _bin("({b} * (T(1) - {a} * {a}))"),
    "SqrtGrad": _bin("({b} * T(0.5) / {a})"),
    "RsqrtGrad": _bin("({b} * ({a} * {a} * {a}) * T(-0.5))"),
    "ReciprocalGrad": _bin("((-{b}) * ({a} * {a}))"),
    "ReluGrad": _bin("where_({b} > T(0), {a}, T(0))"),
    "Relu6Grad": _bin("where_(({b} > T(0)) & ({b} < T(6)), {a}, T(0))"),
    "EluGrad": _bin("where_({b} < T(0), {a} * ({b} + T(1)), {a})"),
    "SoftsignGrad": _bin("({a} / ((T(1) + fabs({b})) * (T(1) + fabs({b}))))"),
    "LeakyRelu": _leaky(False), "LeakyReluGrad": _leaky(True),
}


def expression_for(op):
    """The formula of ``op`` (fn of input expressions -> expression) when it can be evaluated
    per element in the op's own float type, else None."""
    fn = EXPRESSIONS.get(op.type)
    if fn is None or len(op.outputs) != 1:
        return None
    dt = op.outputs[0].dtype
    if np.dtype(dt.as_numpy_dtype) not in FLOAT_DTYPES or any(t.dtype != dt for t in op.inputs):
        return None
    if op.type == "BiasAdd":
        # a (C,) bias broadcasts along the last axis: exactly BiasAdd for NHWC or 2-D values
        xs, bs = op.inputs[0].shape, op.inputs[1].shape
        if xs.ndims is None or bs.ndims != 1 or not xs.ndims >= 2 or \
                (op.attrs.get("data_format", "NHWC") == "NCHW" and xs.ndims > 2):
            return None
        c, d = bs.as_list()[0], xs.as_list()[-1]
        if c is None or c != d:
            return None
    return lambda *xs: fn(op, *xs)


def single_op_program(op, n_inputs):
    """The one-statement program computing ``op`` (None when it has no formula here)."""
    fn = expression_for(op)
    if fn is None:
        return None
    names = tuple(f"a{i}" for i in range(n_inputs))
    return Program(names, ("o0",), (("o0", "=", fn(*names)),))


# --- compiling -----------------------------------------------------------------------------------
_COMPILED: dict = {}  # (backend kind, source, ...) -> compiled kernel
SOURCES: dict = {}  # CUDA body -> Program, every program compiled for a device (for tests)
FAILURES: list = []  # (CUDA body, error) of generated kernels that would not compile or launch


class KernelUnavailable(RuntimeError):
    """A generated kernel failed before it ever ran (NVRTC rejected it, or CuPy its argument
    types): callers run their unfused xp code instead. Recorded in ``FAILURES``."""


def compile_program(be, prog: Program):
    """A callable ``k(*inputs, *inout) -> tuple of outputs`` running ``prog`` as one kernel on
    ``be`` (a ``cupy.ElementwiseKernel`` on a GPU, NumPy on the emulation)."""
    src = prog.cuda_source()
    SOURCES[src] = prog
    if be.name == "cupy":
        key = ("cupy", src, prog.inputs, prog.outputs, prog.inout, prog.types)
        k = _COMPILED.get(key)
        if k is None:
            k = _COMPILED[key] = _cupy_kernel(be.xp, prog, src)
        return k
    return _emulated_kernel(prog)


def _kernel_name(src):
    import hashlib
    return "tw_ew_" + hashlib.sha1(src.encode()).hexdigest()[:16]


def _cupy_kernel(cupy, prog, src):
    params_in = ", ".join(f"{prog.input_type(k)} {n}" for k, n in enumerate(prog.inputs))
    params_out = ", ".join(f"T {n}" for n in prog.outputs + prog.inout)
    kernel = cupy.ElementwiseKernel(params_in, params_out, src, _kernel_name(src),
                                    preamble=PREAMBLE)
    n_out = len(prog.outputs)

    if prog.inout:
        def run(*args):
            kernel(*args)
            return ()
    elif n_out == 1:
        def run(*args):
            return (kernel(*args),)
    else:
        run = kernel  # returns the tuple of outputs
    return _Guarded(run, src)


class _Guarded:
    """Runs a CuPy kernel; until it has run once, a compile or type error marks it unusable
    (KernelUnavailable, so the caller falls back) instead of failing the step."""

    def __init__(self, run, src):
        self.src = src
        self._run = run
        self._proven = False
        self._broken = None

    def __call__(self, *args):
        if self._proven:
            return self._run(*args)
        if self._broken is not None:
            raise KernelUnavailable(self._broken)
        try:
            r = self._run(*args)
        except ValueError as e:  # shapes that do not broadcast: the unfused code says why
            raise KernelUnavailable(f"{type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001  (CompileException, TypeError, CUDA errors)
            self._broken = f"{type(e).__name__}: {e}"[:2000]
            FAILURES.append((self.src, self._broken))
            raise KernelUnavailable(self._broken) from e
        self._proven = True
        return r


def _emulated_kernel(prog):
    from tensorweave.kernels.gpu import emulate

    fns: dict = {}
    n_in, n_out = len(prog.inputs), len(prog.outputs)
    source = prog.python_source()

    t_at = next((k for k in range(n_in) if prog.input_type(k) == "T"), n_in)

    def run(*args):
        dt = args[t_at].dtype
        fn = fns.get(dt)
        if fn is None:
            env = dict(_PY_FUNCS, T=dt.type)
            exec(compile(source, f"<tensorweave-ew-{_kernel_name(source)}>", "exec"), env)  # noqa: S102
            fn = fns[dt] = env["_kernel"]
        full = np.broadcast_shapes(*(np.shape(a) for a in args[:n_in]))

        def body(*plain):
            with np.errstate(all="ignore"):  # as on a GPU: inf/nan results, no warnings
                outs = fn(*plain)
            return tuple(np.array(np.broadcast_to(o, full), dtype=dt) for o in outs[:n_out])

        return emulate.run_kernel(body, args)

    return run


# --- kernels and fusion for a backend ------------------------------------------------------------
def one_kernel(be, fallback):
    """Wraps the kernel factory ``fallback``: an op with a formula here (float32/float64) runs
    as one generated kernel; others (integer types, attrs it does not model) as before."""

    def factory(op, ctx):
        prog = single_op_program(op, len(op.inputs)) if op is not None else None
        if prog is None:
            return fallback(op, ctx)
        kernel = compile_program(be, prog)
        slow = fallback(op, ctx)

        def run(*xs):
            try:
                return kernel(*xs)[0]
            except KernelUnavailable:
                return slow(*xs)

        return run

    return factory


class Fuser:
    """What ``runtime/fusion.py`` needs from a device: each op's formula, and a compiler."""

    def __init__(self, be):
        self.backend = be

    def expression(self, op):
        return expression_for(op)

    def compile(self, prog):
        return compile_program(self.backend, prog)
