"""The op registry (DESIGN.md rule 1): one type name -> shape/dtype inference, kernels, gradient.

An op family declares itself in three places that share the type name::

    @register_op("Tanh")                      # ops/math_ops.py: inference, run at construction
    def _tanh_infer(op): return [(op.inputs[0].dtype, op.inputs[0].shape)]

    @register_kernel("Tanh")                  # kernels/cpu/math.py: a factory run once per plan
    def _tanh_kernel(op, ctx): return np.tanh

    @register_gradient("Tanh")                # gradients/math_grad.py: builds graph ops
    def _tanh_grad(op, grad): ...

Kernel factories receive the Operation and the session's runtime context and return a callable
that maps input arrays to one output array (or a tuple for ops with several outputs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class OpDef:
    type: str
    infer: Callable  # op -> list[(DType, TensorShape)], one pair per output
    stateful: bool = False  # never pruned by CSE/constant folding; may touch session state
    ref_inputs: tuple = ()  # input indices that name a variable instead of passing its value
    view_of: int | None = None  # output 0 may alias this input's buffer (no copy)
    kernels: dict = field(default_factory=dict)  # device type -> factory(op, ctx) -> fn
    host_memory: dict = field(default_factory=dict)  # device -> input indices kept on host
    gradient: Callable | None = None
    has_gradient: bool = False  # False: not registered (error); True with None fn: not differentiable


_OPS: dict[str, OpDef] = {}


def register_op(op_type: str, *, stateful=False, ref_inputs=(), view_of=None):
    """Declares ``op_type`` with its inference function (decorator)."""

    def deco(infer):
        if op_type in _OPS:
            raise KeyError(f"Op type {op_type!r} is registered twice")
        _OPS[op_type] = OpDef(op_type, infer, stateful, tuple(ref_inputs), view_of)
        return infer

    return deco


def get_op_def(op_type: str) -> OpDef:
    try:
        return _OPS[op_type]
    except KeyError:
        raise KeyError(f"Op type {op_type!r} is not registered; "
                       f"import the ops module that declares it") from None


def registered_ops() -> dict[str, OpDef]:
    return dict(_OPS)


def register_kernel(op_type: str, device: str = "CPU"):
    """Registers a kernel factory ``factory(op, ctx) -> callable`` for (op type, device type)."""

    def deco(factory):
        get_op_def(op_type).kernels[device] = factory
        return factory

    return deco


def register_simple_kernel(op_type: str, fn, device: str = "CPU"):
    """Registers an attr-free kernel: the callable itself runs each step."""
    get_op_def(op_type).kernels[device] = lambda op, ctx: fn


def register_host_memory(op_type: str, device: str, input_indices):
    """Declares inputs that ``device``'s kernel reads on the host (shapes, axes, sizes): the
    planner does not copy them to the device (TensorFlow's HostMemory)."""
    get_op_def(op_type).host_memory[device] = frozenset(input_indices)


def get_kernel_factory(op_type: str, device: str = "CPU"):
    return get_op_def(op_type).kernels.get(device)


class RegisterGradient:
    """Decorator registering ``fn(op, *output_grads) -> list of input grads`` for an op type."""

    def __init__(self, op_type: str):
        self.op_type = op_type

    def __call__(self, fn):
        d = get_op_def(self.op_type)
        d.gradient, d.has_gradient = fn, True
        return fn


register_gradient = RegisterGradient


def NotDifferentiable(op_type: str):  # noqa: N802  (TensorFlow's name)
    d = get_op_def(op_type)
    d.gradient, d.has_gradient = None, True


no_gradient = NotDifferentiable
