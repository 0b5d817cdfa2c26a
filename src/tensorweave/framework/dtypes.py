"""Data types: thin, hashable wrappers around NumPy dtypes with TensorFlow's names and enums."""

from __future__ import annotations

import numpy as np


class DType:
    """A tensor element type, e.g. ``tw.float32``. Compares equal to its NumPy dtype's name."""

    __slots__ = ("name", "as_numpy_dtype", "as_datatype_enum")

    def __init__(self, name: str, np_type, enum: int):
        self.name = name
        self.as_numpy_dtype = np.dtype(np_type) if np_type is not None else None
        self.as_datatype_enum = enum

    @property
    def base_dtype(self) -> DType:
        return self

    @property
    def is_floating(self) -> bool:
        return self.as_numpy_dtype is not None and self.as_numpy_dtype.kind == "f"

    @property
    def is_integer(self) -> bool:
        return self.as_numpy_dtype is not None and self.as_numpy_dtype.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.name == "bool"

    @property
    def is_complex(self) -> bool:
        return self.as_numpy_dtype is not None and self.as_numpy_dtype.kind == "c"

    @property
    def is_differentiable(self) -> bool:
        return self.is_floating or self.is_complex

    @property
    def size(self) -> int:
        return self.as_numpy_dtype.itemsize

    @property
    def min(self):
        return np.finfo(self.as_numpy_dtype).min if self.is_floating else np.iinfo(self.as_numpy_dtype).min

    @property
    def max(self):
        return np.finfo(self.as_numpy_dtype).max if self.is_floating else np.iinfo(self.as_numpy_dtype).max

    def __repr__(self) -> str:
        return f"tw.{self.name}"

    def __eq__(self, other) -> bool:
        if isinstance(other, DType):
            return self is other
        try:
            return self is as_dtype(other)
        except TypeError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self):  # unpickle to the one instance: dtypes compare by identity
        return (as_dtype, (self.name,))


# Enum values follow TensorFlow's types.proto so that GraphDefs interchange.
float16 = DType("float16", np.float16, 19)
float32 = DType("float32", np.float32, 1)
float64 = DType("float64", np.float64, 2)
int8 = DType("int8", np.int8, 6)
int16 = DType("int16", np.int16, 5)
int32 = DType("int32", np.int32, 3)
int64 = DType("int64", np.int64, 9)
uint8 = DType("uint8", np.uint8, 4)
uint16 = DType("uint16", np.uint16, 17)
bool_ = DType("bool", np.bool_, 10)
string = DType("string", np.object_, 7)
complex64 = DType("complex64", np.complex64, 8)
complex128 = DType("complex128", np.complex128, 18)
bfloat16 = DType("bfloat16", None, 14)
variant = DType("variant", np.object_, 21)  # opaque values (tensor lists, iterators)

half = float16
double = float64

_ALL = [float16, float32, float64, int8, int16, int32, int64, uint8, uint16, bool_, string,
        complex64, complex128, bfloat16, variant]
_BY_NAME = {d.name: d for d in _ALL}
_BY_NAME.update(half=float16, double=float64, float=float32, int=int32)
_BY_ENUM = {d.as_datatype_enum: d for d in _ALL}
_BY_NP = {d.as_numpy_dtype: d for d in _ALL if d.as_numpy_dtype is not None and d not in (variant,)}


def as_dtype(type_value) -> DType:
    """Converts a DType, NumPy dtype, Python type, name or TF enum to a :class:`DType`."""
    if isinstance(type_value, DType):
        return type_value
    if isinstance(type_value, str):
        if type_value in _BY_NAME:
            return _BY_NAME[type_value]
    elif isinstance(type_value, int) and not isinstance(type_value, bool):
        if type_value in _BY_ENUM:
            return _BY_ENUM[type_value]
    elif type_value is float:
        return float32
    elif type_value is int:
        return int32
    elif type_value is bool:
        return bool_
    elif type_value is str or type_value is bytes:
        return string
    try:
        npd = np.dtype(type_value)
    except TypeError:
        npd = None
    if npd is not None:
        if npd.kind in "SUO":
            return string
        if npd in _BY_NP:
            return _BY_NP[npd]
    raise TypeError(f"Cannot convert {type_value!r} to a tensorweave dtype; "
                    f"expected one of {sorted(_BY_NAME)}")


def from_numpy(arr_dtype: np.dtype) -> DType:
    return as_dtype(arr_dtype)
