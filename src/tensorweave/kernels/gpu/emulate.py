"""A strict NumPy stand-in for CuPy, so GPU kernel code runs (and is tested) without a GPU.

Arrays "on the device" are ``DeviceArray`` (an ndarray subclass). Like CuPy's arrays they refuse
to be mixed with host ``np.ndarray``s in arithmetic, in ``xp`` functions, and as index or value
in item assignment, and like CuPy's reductions a full reduction returns a 0-d array rather than
a NumPy scalar. Calling a ``np.*`` function on a device array raises: kernels must use ``xp``.
When CuPy itself imports (it does without a GPU), every ``xp`` name a kernel uses must exist in
CuPy and, where CuPy's signature is inspectable, the call's arguments must bind to it.
"""

from __future__ import annotations

import collections
import functools
import inspect

import numpy as np

# What the emulated device was asked to do, for counting the kernel launches a GPU step would
# make (``bench/gpu_bench.py``): "launch" is one device kernel (a ufunc, a reduction, a copy, an
# xp call that writes memory), "h2d"/"d2h" are host<->device copies. Views cost nothing.
COUNTS: collections.Counter = collections.Counter()

# xp functions that return views or metadata (no kernel on a GPU).
_NO_KERNEL = {"reshape", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze",
              "broadcast_to", "split", "array_split", "asarray", "atleast_1d", "atleast_2d",
              "empty", "empty_like", "result_type", "can_cast", "shape", "ndim", "size",
              "broadcast_shapes", "iinfo", "finfo", "dtype"}


def reset_counts():
    """Zeroes ``COUNTS`` (call before the step to be counted)."""
    COUNTS.clear()


class HostDeviceMixError(TypeError):
    """A host array met a device array where CuPy would refuse it."""


class DeviceArray(np.ndarray):
    """An array living on the emulated device."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _reject_host(inputs, f"{ufunc.__name__}.{method}")
        out = kwargs.get("out")
        if out is not None:
            _reject_host(out, f"{ufunc.__name__} out=")
            kwargs["out"] = tuple(_plain(o) for o in out)
        COUNTS["launch"] += 1
        args = [_plain(a) for a in inputs]
        if method == "at":
            args[1] = _plain_index(args[1])
        r = getattr(ufunc, method)(*args, **kwargs)
        if out is not None and method != "at":
            return out[0] if len(out) == 1 else out
        return _wrap(r)

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ in _INSPECTION:  # printing and shape queries, as CuPy allows
            return func(*_deep_plain(args), **kwargs)
        raise HostDeviceMixError(
            f"np.{func.__name__} called on a device array: use the backend's xp instead")

    def __getitem__(self, key):
        _reject_host(key if isinstance(key, tuple) else (key,), "index")
        if any(isinstance(k, np.ndarray) for k in (key if isinstance(key, tuple) else (key,))):
            COUNTS["launch"] += 1  # advanced indexing gathers into a new array
        r = np.ndarray.__getitem__(self.view(np.ndarray), _plain_index(key))
        return _wrap(r)

    def __setitem__(self, key, value):
        _reject_host(key if isinstance(key, tuple) else (key,), "index")
        _reject_host((value,), "assigned value")
        COUNTS["launch"] += 1
        np.ndarray.__setitem__(self.view(np.ndarray), _plain_index(key), _plain(value))

    def copy(self, order="C"):
        COUNTS["launch"] += 1
        return np.ndarray.copy(self, order)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if copy or np.dtype(dtype) != self.dtype:
            COUNTS["launch"] += 1
        return np.ndarray.astype(self, dtype, order, casting, subok, copy)


_INSPECTION = {"array_repr", "array_str", "array2string", "shape", "ndim", "size"}


def _is_host(a):
    return type(a) is np.ndarray


def _reject_host(items, where):
    for a in items:
        if _is_host(a):
            raise HostDeviceMixError(f"a host numpy array reached a device operation ({where}); "
                                     "CuPy refuses this: copy it with xp.asarray first")
        if isinstance(a, (list, tuple)):
            _reject_host(a, where)


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


def _plain_index(key):
    if isinstance(key, tuple):
        return tuple(_plain(k) for k in key)
    return _plain(key)


def _wrap(r):
    if isinstance(r, np.ndarray):
        return r.view(DeviceArray)
    if isinstance(r, np.generic):  # CuPy reductions give 0-d arrays, never scalars
        return np.asarray(r).view(DeviceArray)
    if isinstance(r, (list, tuple)):
        return type(r)(_wrap(x) for x in r)
    return r


def _deep_plain(a):
    if isinstance(a, (list, tuple)):
        return type(a)(_deep_plain(x) for x in a)
    return _plain(a)


try:  # the real module, to check names and signatures against (imports without a GPU)
    import cupy as _cupy
except Exception:  # noqa: BLE001  (any import failure: emulate without the name check)
    _cupy = None


def _check_cupy(name, args, kwargs):
    if _cupy is None:
        return
    fn = getattr(_cupy, name, None)
    if fn is None:
        raise AttributeError(f"cupy has no {name!r}: the kernel would fail on a GPU")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"cupy.{name} would reject these arguments: {e}") from None


# Functions allowed to take host arrays: they are the explicit host->device copies.
_COPY_IN = {"asarray", "array"}


class _UFunc:
    def __init__(self, name, uf):
        self.__name__ = name
        self._uf = uf

    def __call__(self, *args, **kwargs):
        _check_cupy(self.__name__, (), {})
        COUNTS["launch"] += 1
        _reject_host(args, self.__name__)
        _reject_host(kwargs.get("out", ()) if isinstance(kwargs.get("out"), tuple)
                     else (kwargs.get("out"),), f"{self.__name__} out=")
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = _plain(out) if not isinstance(out, tuple) else \
                tuple(_plain(o) for o in out)
        r = self._uf(*[_plain(a) for a in args], **kwargs)
        if out is not None:
            return out
        return _wrap(r)

    def at(self, a, indices, b=None):
        _reject_host((a, indices, b), f"{self.__name__}.at")
        if not isinstance(a, DeviceArray):
            raise HostDeviceMixError(f"{self.__name__}.at needs a device array to update")
        args = (_plain(a), _plain_index(indices)) + (() if b is None else (_plain(b),))
        COUNTS["launch"] += 1
        self._uf.at(*args)


class _Module:
    """``xp``: NumPy's namespace with CuPy's host/device rules."""

    def __getattr__(self, name):
        obj = getattr(np, name)
        if isinstance(obj, np.ufunc):
            return _UFunc(name, obj)
        if name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                    "uint8", "uint16", "uint32", "uint64", "bool_", "complex64",
                    "complex128", "dtype", "newaxis", "inf", "nan", "pi", "e", "ndarray"):
            return obj
        if not callable(obj):
            return obj

        @functools.wraps(obj)
        def call(*args, **kwargs):
            _check_cupy(name, args, kwargs)
            if name not in _COPY_IN:
                _reject_host(args, f"xp.{name}")
                _reject_host(tuple(kwargs.values()), f"xp.{name}")
                if name not in _NO_KERNEL and not (
                        name == "ascontiguousarray" and args[0].flags.c_contiguous):
                    COUNTS["launch"] += 1
            elif not isinstance(args[0], DeviceArray):
                COUNTS["h2d"] += 1
            return _wrap(obj(*_deep_plain(args), **{k: _deep_plain(v)
                                                      for k, v in kwargs.items()}))

        return call


xp = _Module()


def to_device(x):
    """Host -> device copy (``cupy.asarray``)."""
    COUNTS["h2d"] += 1
    return np.array(x, copy=True).view(DeviceArray)


def to_host(a):
    """Device -> host copy (``cupy.asnumpy``)."""
    if isinstance(a, DeviceArray):
        COUNTS["d2h"] += 1
        return np.array(a.view(np.ndarray), copy=True)
    return np.asarray(a)


def as_strided(x, shape, strides):
    if not isinstance(x, DeviceArray):
        raise HostDeviceMixError("as_strided needs a device array")
    v = np.lib.stride_tricks.as_strided(x.view(np.ndarray), shape, strides, writeable=False)
    return v.view(DeviceArray)


def run_kernel(body, args):
    """Runs ``body`` (NumPy on plain arrays, returning a tuple) as one emulated device kernel:
    every argument must be on the device; results come back as device arrays."""
    _reject_host(args, "kernel argument")
    for a in args:
        if not isinstance(a, DeviceArray):
            raise HostDeviceMixError(f"a kernel argument of type {type(a).__name__} is not "
                                     "a device array")
    COUNTS["launch"] += 1
    return tuple(_wrap(r) for r in body(*[_plain(a) for a in args]))
