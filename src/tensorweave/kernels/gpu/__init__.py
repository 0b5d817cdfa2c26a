"""GPU kernels (CuPy), keyed by (op type, "GPU") in the op registry (DESIGN.md rule 2).

Nothing here imports CuPy at ``import tensorweave`` time. The runtime calls ``load()`` the first
time a graph asks for a GPU; it imports CuPy, checks that a device answers, registers every GPU
kernel and the CPU<->GPU copies the planner inserts, and returns True; without CuPy or a GPU it
returns False, registers nothing, and ``unavailable_reason()`` says why.

Kernels are written once against an array backend (``backend.py``: ``xp`` plus host/device
copies), one module per op family mirroring ``kernels/cpu/``. ``register_all(backend, device)``
registers them for any backend, which is how tests run the same kernel code on a NumPy stand-in
for CuPy (``emulate.py``) on machines without a GPU. Random ops have no GPU kernels: with
``allow_soft_placement`` they run on the CPU.

Example::

    with tw.device("/gpu:0"):
        y = tw.matmul(a, b)                  # runs through cuBLAS, fetched back as NumPy
"""

from __future__ import annotations

import importlib

# Kernel modules, each with ``kernels(backend) -> {op type: factory(op, ctx)}``.
_MODULES = ("math", "array", "nn", "conv", "state")

# Inputs a GPU kernel reads on the host (shapes, axes, sizes; TF's HostMemory inputs): the
# planner may leave these on the CPU instead of copying them to the device. Every GPU kernel
# accepts either a host or a device array there.
HOST_INPUTS = {
    **{t: (1,) for t in ("Sum", "Mean", "Max", "Min", "Prod", "All", "Any", "ArgMax", "ArgMin",
                         "Reshape", "Transpose", "BroadcastTo", "Tile", "ExpandDims", "ReverseV2",
                         "Pad", "MirrorPad", "MirrorPadGrad", "Conv2DBackpropFilter",
                         "DepthwiseConv2dNativeBackpropFilter")},
    "Split": (0,), "SplitV": (1, 2), "Slice": (1, 2), "StridedSlice": (1, 2, 3),
    "StridedSliceGrad": (0, 1, 2, 3), "GatherV2": (2,), "PadV2": (1, 2), "Fill": (0,),
    "UnsortedSegmentSum": (2,), "ScatterNd": (2,), "OneHot": (1,), "Range": (0, 1, 2),
    "Conv2DBackpropInput": (0,), "DepthwiseConv2dNativeBackpropInput": (0,),
    "AvgPoolGrad": (0,), "BroadcastGradientArgs": (0, 1), "InvertPermutation": (0,),
}

_state: dict = {"loaded": None, "reason": None, "backend": None, "registered": ()}


def kernel_tables(backend) -> dict:
    """{op type: factory} for every GPU kernel this package implements, on ``backend``."""
    table = {}
    for m in _MODULES:
        table.update(importlib.import_module(f"{__name__}.{m}").kernels(backend))
    return table


def register_all(backend, device: str = "GPU"):
    """Registers every kernel whose op type is declared, for ``device``; returns
    (registered op types, op types with a kernel here but not declared by any op family)."""
    from tensorweave.framework.registry import register_kernel, registered_ops

    declared = registered_ops()
    done, missing = [], []
    for op_type, factory in kernel_tables(backend).items():
        if op_type in declared and factory is not None:
            register_kernel(op_type, device=device)(factory)
            done.append(op_type)
        else:
            missing.append(op_type)
    return sorted(done), sorted(missing)


def load() -> bool:
    """Imports CuPy and registers the GPU kernels and copies; False (nothing registered) when
    CuPy or a CUDA device is missing. Safe to call repeatedly."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    try:
        from tensorweave.kernels.gpu.backend import cupy_backend
        backend = cupy_backend()
        n = backend.xp.cuda.runtime.getDeviceCount()
        if n < 1:
            raise RuntimeError("no CUDA device")
        backend.synchronize()
    except Exception as e:  # noqa: BLE001  (ImportError, CUDA driver/runtime errors)
        _state.update(loaded=False, reason=f"{type(e).__name__}: {e}")
        return False
    _state["registered"], _ = register_all(backend, "GPU")
    install_transfers(backend, "GPU")
    _state.update(loaded=True, backend=backend)
    return True


def install_transfers(backend, device: str):
    """Registers the planner's host<->``device`` copies for ``backend``, the inputs its
    kernels read on the host, and elementwise fusion for ``device``'s plans."""
    from tensorweave.framework.registry import _OPS, register_host_memory
    from tensorweave.runtime import plan
    for op_type, idx in HOST_INPUTS.items():
        if op_type in _OPS:
            register_host_memory(op_type, device, idx)
    plan.TRANSFERS[("CPU", device)] = backend.to_device
    plan.TRANSFERS[(device, "CPU")] = backend.to_host
    from tensorweave.kernels.gpu.elementwise import Fuser
    from tensorweave.runtime.fusion import register_fuser
    register_fuser(device, Fuser(backend))


def unavailable_reason():
    """Why ``load()`` returned False (None if it has not, or succeeded)."""
    return _state["reason"]


def current_backend():
    """The CuPy backend once ``load()`` succeeded, else None. (Not named ``backend``: the
    ``backend`` submodule would shadow it on this package.)"""
    return _state["backend"]


def registered_op_types() -> tuple:
    """Op types with a GPU kernel registered by ``load()``."""
    return tuple(_state["registered"])
