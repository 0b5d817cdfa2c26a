"""``tw.linalg``: TensorFlow's ``tf.linalg`` namespace for the linear algebra tensorweave has
(matrix products, identity matrices, band and diagonal parts, traces, norms, einsum). Imported on first use."""

from tensorweave.framework.ops import convert_to_tensor, name_scope
from tensorweave.ops.array_ops import _last_two, eye, matrix_diag_part, matrix_set_diag, transpose
from tensorweave.ops.array_ops import matrix_band_part as band_part
from tensorweave.ops.array_ops import matrix_diag as diag
from tensorweave.ops.math_ops import einsum, matmul, norm, tensordot, trace
from tensorweave.ops.nn_ops import l2_normalize

__all__ = ["matmul", "eye", "norm", "einsum", "tensordot", "l2_normalize", "matrix_transpose",
           "adjoint", "band_part", "diag", "diag_part", "set_diag", "trace"]

diag_part = matrix_diag_part
set_diag = matrix_set_diag


def matrix_transpose(a, name="matrix_transpose", conjugate=False):
    """Swaps the last two axes (of a batch of matrices)."""
    with name_scope(name, "matrix_transpose"):
        a = convert_to_tensor(a)
        _last_two(a, "matrix_transpose")  # a known rank >= 2, or a ValueError saying so
        rank = a.shape.ndims
        return transpose(a, list(range(rank - 2)) + [rank - 1, rank - 2])


def adjoint(matrix, name=None):
    """The conjugate transpose; for the real dtypes tensorweave runs, the transpose."""
    return matrix_transpose(matrix, name=name or "adjoint")
