"""The array backend GPU kernels are written against: an array module ``xp`` plus the few
operations that differ between a device and the host (copies, host reads, strided views).

``cupy_backend()`` is the real GPU; ``emulated_backend()`` runs the same kernel code on NumPy
with arrays that refuse to mix with host arrays the way CuPy's do (``emulate.py``), so the
kernels are tested on machines without a GPU.

Host reads are the one per-step cost a GPU kernel cannot hide: an axis, a shape or a split size
must be known on the host to launch the next kernel, and reading one back from the device waits
for the device. The planner copies every input of a GPU step to the device, constants included,
so ``to_device`` remembers small read-only constants (the Const values the plan binds once) and
``host`` finds the host value a device copy came from without waiting for the device.
"""

from __future__ import annotations

import numpy as np

# Constants up to this size are copied to the device once and remembered (id -> device copy).
_CONST_MAX_BYTES = 4096
_CONST_MAX_ENTRIES = 16384


class Backend:
    """Device array module ``xp`` with host<->device copies.

    ``xp``: the array module kernels call (``cupy`` or the NumPy emulator).
    ``device_put(np_array) -> device array``; ``device_get(device array) -> np.ndarray``.
    """

    def __init__(self, name, xp, device_put, device_get, as_strided, synchronize):
        self.name = name
        self.xp = xp
        self._put = device_put
        self._get = device_get
        self._as_strided = as_strided
        self.synchronize = synchronize
        self._consts: dict = {}  # id(host array) -> (host array, device copy)
        self._host_of: dict = {}  # id(device copy) -> (device copy, host array)
        self._small: dict = {}  # (dtype, shape, bytes) -> device copy, for host-made results

    # --- copies between host and device -------------------------------------------------------
    def to_device(self, x):
        """Host -> device (the planner's CPU->device transfer). Small read-only arrays that own
        their data (plan constants) are copied once; everything else every time."""
        if type(x) is np.ndarray and not x.flags.writeable and x.flags.owndata \
                and x.nbytes <= _CONST_MAX_BYTES:
            hit = self._consts.get(id(x))
            if hit is not None and hit[0] is x:
                return hit[1]
            d = self._put(x)
            self._remember(x, d)
            self._consts[id(x)] = (x, d)
            return d
        if isinstance(x, np.ndarray) or np.isscalar(x) or isinstance(x, np.generic):
            return self._put(np.asarray(x))
        return x  # already on the device

    def to_host(self, a) -> np.ndarray:
        """Device -> host (the planner's device->CPU transfer, and fetches)."""
        if isinstance(a, np.ndarray) and type(a) is np.ndarray:
            return a
        if a is None or isinstance(a, (np.generic, bool, int, float)):
            return a
        return self._get(a)

    def host(self, a) -> np.ndarray:
        """The host value of a (small) kernel input: an axis, a shape, a size list."""
        if type(a) is np.ndarray or isinstance(a, (np.generic, int, float)):
            return np.asarray(a)
        hit = self._host_of.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        return self._get(a)

    def small(self, value, dtype=None):
        """A device copy of a small host-computed result (a shape, a permutation), remembered by
        value so a result that is the same every step is copied once."""
        arr = np.asarray(value, dtype=dtype)
        if arr.nbytes > _CONST_MAX_BYTES:
            return self._put(arr)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        d = self._small.get(key)
        if d is None:
            arr = arr.copy()
            arr.setflags(write=False)
            d = self._put(arr)
            self._remember(arr, d)
            if len(self._small) >= _CONST_MAX_ENTRIES:
                self._small.clear()
            self._small[key] = d
        return d

    def _remember(self, host_arr, dev):
        if len(self._host_of) >= 2 * _CONST_MAX_ENTRIES:
            self._host_of.clear()
            self._consts.clear()
            self._small.clear()
        self._host_of[id(dev)] = (dev, host_arr)

    def as_strided(self, x, shape, strides):
        """A read-only strided view (im2col windows); strides in bytes."""
        return self._as_strided(x, shape, strides)


def cupy_backend():
    """The CuPy backend (imports cupy; raises ImportError without it)."""
    import cupy
    from cupy.lib.stride_tricks import as_strided

    def synchronize():
        cupy.cuda.get_current_stream().synchronize()

    return Backend("cupy", cupy, cupy.asarray, cupy.asnumpy, as_strided, synchronize)


def emulated_backend():
    """NumPy standing in for CuPy, strict about host/device mixing (for tests without a GPU)."""
    from tensorweave.kernels.gpu import emulate
    return Backend("emulated", emulate.xp, emulate.to_device, emulate.to_host,
                   emulate.as_strided, lambda: None)
