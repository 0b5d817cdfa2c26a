"""The math family as one table: forward vs NumPy float64, gradients vs central differences,
second order for elementwise ops and matmul."""

import math

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case
from tensorweave.ops import math_ops


def pos(*shapes, lo=0.5, hi=2.0):
    return lambda r: [r.uniform(lo, hi, s) for s in shapes]


def apart(shape):
    """Two inputs whose elements differ (max/min gradients are undefined at ties)."""
    def make(r):
        a = r.standard_normal(shape)
        return [a, a + r.choice([-1.0, 1.0], shape) * r.uniform(0.2, 1.0, shape)]
    return make


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


CASES = [
    # binary arithmetic with broadcasting
    OpCase("add", tw.add, np.add, [(3, 4), (4,)], second_order=True),
    OpCase("subtract", tw.subtract, np.subtract, [(2, 3), (2, 1)], second_order=True),
    OpCase("multiply", tw.multiply, np.multiply, [(3, 1), (1, 4)], second_order=True),
    OpCase("divide", tw.divide, np.divide, [(3, 4), (4,)], make_inputs=lambda r: [
        r.standard_normal((3, 4)), r.uniform(1, 2, 4)], second_order=True),
    OpCase("pow", tw.pow, np.power, [(3,), (3,)], make_inputs=pos((3,), (3,)),
           second_order=True),
    OpCase("pow_operator", lambda x: x ** 3.0, lambda x: x ** 3, [(4,)], second_order=True),
    OpCase("maximum", tw.maximum, np.maximum, [(3, 4), (3, 4)], make_inputs=apart((3, 4))),
    OpCase("minimum", tw.minimum, np.minimum, [(3, 4), (3, 4)], make_inputs=apart((3, 4))),
    OpCase("squared_difference", tw.squared_difference, lambda x, y: (x - y) ** 2,
           [(2, 3), (3,)], second_order=True),
    OpCase("floordiv", tw.floordiv, np.floor_divide, [(5,), (5,)], grad=False,
           make_inputs=lambda r: [r.uniform(-5, 5, 5), r.uniform(1, 2, 5)]),
    OpCase("floormod", tw.floormod, np.mod, [(5,), (5,)], grad=False,
           make_inputs=lambda r: [r.uniform(-5, 5, 5), r.uniform(1, 2, 5)]),
    # unary
    OpCase("negative", tw.negative, np.negative, [(4,)], second_order=True),
    OpCase("abs", tw.abs, np.abs, [(5,)], make_inputs=lambda r: [
        r.uniform(0.2, 1, 5) * r.choice([-1, 1], 5)]),
    OpCase("square", tw.square, np.square, [(2, 3)], second_order=True),
    OpCase("sqrt", tw.sqrt, np.sqrt, [(4,)], make_inputs=pos((4,)), second_order=True),
    OpCase("rsqrt", tw.rsqrt, lambda x: 1 / np.sqrt(x), [(4,)], make_inputs=pos((4,)),
           second_order=True),
    OpCase("exp", tw.exp, np.exp, [(4,)], second_order=True),
    OpCase("log", tw.log, np.log, [(4,)], make_inputs=pos((4,)), second_order=True),
    OpCase("log1p", tw.log1p, np.log1p, [(4,)], make_inputs=pos((4,)), second_order=True),
    OpCase("tanh", tw.tanh, np.tanh, [(4,)], second_order=True),
    OpCase("sigmoid", tw.sigmoid, sigmoid, [(4,)], second_order=True),
    OpCase("sin", tw.sin, np.sin, [(4,)], second_order=True),
    OpCase("cos", tw.cos, np.cos, [(4,)], second_order=True),
    OpCase("reciprocal", tw.reciprocal, np.reciprocal, [(4,)], make_inputs=pos((4,)),
           second_order=True),
    OpCase("sign", tw.sign, np.sign, [(5,)], grad=False),
    OpCase("floor", tw.floor, np.floor, [(5,)], grad=False),
    OpCase("ceil", tw.ceil, np.ceil, [(5,)], grad=False),
    OpCase("round", tw.round, np.rint, [(5,)], grad=False),
    # selection and clipping
    OpCase("where", lambda c, x, y: tw.where(c > 0.0, x, y),
           lambda c, x, y: np.where(c > 0, x, y), [(3, 4), (3, 4), (4,)],
           grad_inputs=[1, 2]),
    OpCase("where_rows", lambda c, x, y: tw.where(c > 0.0, x, y),
           lambda c, x, y: np.where((c > 0)[:, None], x, y), [(3,), (3, 2), (3, 2)],
           grad_inputs=[1, 2]),
    OpCase("clip_by_value", lambda x: tw.clip_by_value(x, -0.5, 0.5),
           lambda x: np.clip(x, -0.5, 0.5), [(6,)],
           make_inputs=lambda r: [np.array([-1.0, -0.3, 0.1, 0.4, 0.7, 2.0])]),
    # matmul
    OpCase("matmul", tw.matmul, np.matmul, [(3, 4), (4, 2)], second_order=True),
    OpCase("matmul_ta", lambda a, b: tw.matmul(a, b, transpose_a=True), lambda a, b: a.T @ b,
           [(4, 3), (4, 2)], second_order=True),
    OpCase("matmul_tb", lambda a, b: tw.matmul(a, b, transpose_b=True), lambda a, b: a @ b.T,
           [(3, 4), (2, 4)]),
    OpCase("batch_matmul", tw.matmul, np.matmul, [(2, 3, 4), (2, 4, 5)], second_order=True),
    OpCase("batch_matmul_broadcast", tw.matmul, np.matmul, [(2, 3, 4), (4, 5)]),
    OpCase("batch_matmul_adj", lambda a, b: tw.matmul(a, b, adjoint_a=True, adjoint_b=True),
           lambda a, b: np.swapaxes(a, -1, -2) @ np.swapaxes(b, -1, -2), [(2, 4, 3), (2, 5, 4)]),
    OpCase("matmul_operator", lambda a, b: a @ b, np.matmul, [(2, 3), (3, 2)]),
    # reductions
    OpCase("reduce_sum_all", tw.reduce_sum, np.sum, [(3, 4)], second_order=True),
    OpCase("reduce_sum_neg_axis", lambda x: tw.reduce_sum(x, -1), lambda x: x.sum(-1),
           [(2, 3, 4)]),
    OpCase("reduce_mean_axes", lambda x: tw.reduce_mean(x, [0, 2], keepdims=True),
           lambda x: x.mean((0, 2), keepdims=True), [(2, 3, 4)]),
    OpCase("reduce_mean_dynamic", lambda x: tw.reduce_mean(x, 1), lambda x: x.mean(1),
           [(3, 4)], static_shapes=False),
    OpCase("reduce_max", lambda x: tw.reduce_max(x, 1), lambda x: x.max(1), [(3, 5)]),
    OpCase("reduce_min_keep", lambda x: tw.reduce_min(x, 0, keepdims=True),
           lambda x: x.min(0, keepdims=True), [(4, 3)]),
    OpCase("reduce_prod", lambda x: tw.reduce_prod(x, 1), lambda x: x.prod(1), [(3, 4)],
           make_inputs=pos((3, 4))),
    OpCase("reduce_logsumexp", lambda x: tw.reduce_logsumexp(x, 1),
           lambda x: np.log(np.exp(x).sum(1)), [(3, 5)], second_order=True),
    OpCase("reduce_logsumexp_all", tw.reduce_logsumexp, lambda x: np.log(np.exp(x).sum()),
           [(3, 5)]),
    OpCase("keep_dims_alias", lambda x: tw.reduce_sum(x, reduction_indices=[1], keep_dims=True),
           lambda x: x.sum(1, keepdims=True), [(2, 3)]),
    OpCase("cumsum", lambda x: tw.cumsum(x, 1), lambda x: np.cumsum(x, 1), [(2, 4)]),
    OpCase("cumsum_excl_rev", lambda x: tw.cumsum(x, 0, exclusive=True, reverse=True),
           lambda x: np.flip(np.concatenate([np.zeros((1, 3)),
                                             np.cumsum(np.flip(x, 0), 0)[:-1]]), 0), [(4, 3)]),
    OpCase("tensordot", lambda a, b: tw.tensordot(a, b, 1), lambda a, b: np.tensordot(a, b, 1),
           [(2, 3, 4), (4, 5)]),
    OpCase("add_n", lambda a, b, c: tw.add_n([a, b, c]), lambda a, b, c: a + b + c,
           [(2, 2), (2, 2), (2, 2)], second_order=True),
    OpCase("cast_roundtrip", lambda x: tw.cast(tw.cast(x, tw.float32), tw.float64),
           lambda x: x.astype(np.float32).astype(np.float64), [(4,)], grad=False),
    # more binary arithmetic, broadcasting both ways
    OpCase("truediv", tw.truediv, np.true_divide, [(2, 1), (3,)], make_inputs=lambda r: [
        r.standard_normal((2, 1)), r.uniform(1, 2, 3)], second_order=True),
    OpCase("realdiv", tw.realdiv, np.true_divide, [(3,), (3,)], make_inputs=pos((3,), (3,))),
    OpCase("div_no_nan", tw.div_no_nan, lambda x, y: np.where(y == 0, 0, x / np.where(
        y == 0, 1, y)), [(4,), (4,)], grad=False, make_inputs=lambda r: [
        r.standard_normal(4), np.array([0.0, 1.5, 0.0, -2.0])]),
    OpCase("div_no_nan_grad", tw.div_no_nan, np.true_divide, [(2, 3), (3,)],
           make_inputs=lambda r: [r.standard_normal((2, 3)), r.uniform(1, 2, 3)],
           second_order=True),
    OpCase("floormod_grad", tw.floormod, np.mod, [(2, 3), (3,)], make_inputs=lambda r: [
        np.array([[-4.3, 2.2, 5.7], [0.4, -1.1, 3.3]]), np.array([1.5, -2.5, 2.0])]),
    OpCase("truncatediv", tw.truncatediv, lambda x, y: np.trunc(x / y), [(5,), (5,)],
           grad=False, make_inputs=lambda r: [r.uniform(-5, 5, 5), r.uniform(1, 2, 5)]),
    OpCase("truncatemod", tw.truncatemod, np.fmod, [(5,), (5,)], grad=False,
           make_inputs=lambda r: [r.uniform(-5, 5, 5), r.uniform(-2, -1, 5)]),
    OpCase("atan2", tw.atan2, np.arctan2, [(3, 2), (2,)], second_order=True),
    OpCase("pow_broadcast", tw.pow, np.power, [(2, 3), ()], make_inputs=pos((2, 3), ())),
    OpCase("maximum_broadcast", tw.maximum, np.maximum, [(3, 4), (4,)], make_inputs=lambda r: [
        np.arange(12.0).reshape(3, 4) / 3 - 2, np.array([-1.1, 0.05, 0.7, 5.0])]),
    OpCase("minimum_scalar", lambda x: tw.minimum(x, 0.25), lambda x: np.minimum(x, 0.25),
           [(6,)], make_inputs=lambda r: [np.array([-1.0, 0.0, 0.2, 0.3, 1.0, 2.0])]),
    OpCase("squared_difference_rev", tw.squared_difference, lambda x, y: (x - y) ** 2,
           [(3,), (2, 1)]),
    OpCase("scalar_mul", lambda x: tw.scalar_mul(3.0, x), lambda x: 3 * x, [(2, 2)]),
    OpCase("accumulate_n", lambda a, b: tw.accumulate_n([a, b]), np.add, [(3,), (3,)]),
    # more unary
    OpCase("expm1", tw.expm1, np.expm1, [(4,)], second_order=True),
    OpCase("tan", tw.tan, np.tan, [(4,)], make_inputs=lambda r: [r.uniform(-1, 1, 4)],
           second_order=True),
    OpCase("asin", tw.asin, np.arcsin, [(4,)], make_inputs=lambda r: [r.uniform(-.8, .8, 4)],
           second_order=True),
    OpCase("acos", tw.acos, np.arccos, [(4,)], make_inputs=lambda r: [r.uniform(-.8, .8, 4)],
           second_order=True),
    OpCase("atan", tw.atan, np.arctan, [(4,)], second_order=True),
    OpCase("sinh", tw.sinh, np.sinh, [(4,)], second_order=True),
    OpCase("cosh", tw.cosh, np.cosh, [(4,)], second_order=True),
    OpCase("asinh", tw.asinh, np.arcsinh, [(4,)], second_order=True),
    OpCase("acosh", tw.acosh, np.arccosh, [(4,)], make_inputs=pos((4,), lo=1.5, hi=3.0),
           second_order=True),
    OpCase("atanh", tw.atanh, np.arctanh, [(4,)], make_inputs=lambda r: [r.uniform(-.8, .8, 4)],
           second_order=True),
    OpCase("erf", tw.erf, lambda x: np.vectorize(math.erf)(x), [(5,)], second_order=True),
    OpCase("log_sigmoid", tw.log_sigmoid, lambda x: -np.logaddexp(0, -x), [(5,)]),
    OpCase("rint", tw.rint, np.rint, [(5,)], grad=False),
    OpCase("abs_second", tw.abs, np.abs, [(5,)], second_order=True, make_inputs=lambda r: [
        r.uniform(0.2, 1, 5) * r.choice([-1, 1], 5)]),
    OpCase("sigmoid_large", tw.sigmoid, sigmoid, [(4,)], make_inputs=lambda r: [
        np.array([-40.0, -5.0, 5.0, 40.0])]),
    OpCase("tanh_third_order", lambda x: tw.gradients(tw.reduce_sum(tw.tanh(x)), [x])[0],
           lambda x: 1 - np.tanh(x) ** 2, [(4,)], second_order=True),
    OpCase("where_broadcast", lambda c, x, y: tw.where(c > 0.0, x, y),
           lambda c, x, y: np.where(c > 0, x, y), [(3, 1), (3, 4), ()], grad_inputs=[1, 2],
           second_order=True),
    # matmul variants
    OpCase("matmul_tt", lambda a, b: tw.matmul(a, b, transpose_a=True, transpose_b=True),
           lambda a, b: a.T @ b.T, [(4, 3), (2, 4)], second_order=True),
    OpCase("batch_matmul_broadcast_both", tw.matmul, np.matmul, [(2, 1, 3, 4), (3, 4, 2)]),
    OpCase("batch_matmul_rank2_left", tw.matmul, np.matmul, [(3, 4), (2, 4, 5)]),
    OpCase("batch_matmul_adj_second", lambda a, b: tw.matmul(a, b, adjoint_b=True),
           lambda a, b: a @ np.swapaxes(b, -1, -2), [(2, 3, 4), (2, 5, 4)], second_order=True),
    OpCase("tensordot_axes_pairs", lambda a, b: tw.tensordot(a, b, [[0, 2], [1, 0]]),
           lambda a, b: np.tensordot(a, b, [[0, 2], [1, 0]]), [(2, 3, 4), (4, 2, 5)]),
    # reductions
    OpCase("reduce_sum_keep_neg", lambda x: tw.reduce_sum(x, [-1, -3], keepdims=True),
           lambda x: x.sum((-1, -3), keepdims=True), [(2, 3, 4)], second_order=True),
    OpCase("reduce_mean_all", tw.reduce_mean, np.mean, [(3, 4)], second_order=True),
    OpCase("reduce_max_neg_axis", lambda x: tw.reduce_max(x, -2), lambda x: x.max(-2),
           [(2, 4, 3)]),
    OpCase("reduce_max_dynamic", lambda x: tw.reduce_max(x, 1), lambda x: x.max(1), [(3, 4)],
           static_shapes=False),
    OpCase("reduce_min_all", tw.reduce_min, np.min, [(3, 4)]),
    OpCase("reduce_prod_zeros", lambda x: tw.reduce_prod(x, 1), lambda x: x.prod(1), [(3, 4)],
           make_inputs=lambda r: [np.array([[1.5, 0.0, -2.0, 0.5], [0.0, 3.0, 0.0, 1.0],
                                            [0.7, 1.2, -0.9, 2.0]])]),
    # second order is exact up to one zero per reduced group
    OpCase("reduce_prod_one_zero", lambda x: tw.reduce_prod(x, 0), lambda x: x.prod(0), [(3, 2)],
           make_inputs=lambda r: [np.array([[1.5, 0.0], [-2.0, 0.5], [0.7, 1.2]])],
           second_order=True),
    OpCase("reduce_prod_all_dynamic", tw.reduce_prod, np.prod, [(2, 3)],
           make_inputs=pos((2, 3)), static_shapes=False),
    OpCase("reduce_logsumexp_keep_neg", lambda x: tw.reduce_logsumexp(x, -1, keepdims=True),
           lambda x: np.log(np.exp(x).sum(-1, keepdims=True)), [(2, 3)]),
    OpCase("reduce_logsumexp_large", lambda x: tw.reduce_logsumexp(x, 0),
           lambda x: x.max(0) + np.log(np.exp(x - x.max(0)).sum(0)), [(3, 2)],
           make_inputs=lambda r: [np.array([[1000.0, -1000.0], [999.0, -1001.0],
                                            [998.0, -999.5]])]),
    OpCase("reduce_logsumexp_dynamic", lambda x: tw.reduce_logsumexp(x, 1),
           lambda x: np.log(np.exp(x).sum(1)), [(2, 3)], static_shapes=False),
    OpCase("reduce_euclidean_norm", lambda x: tw.reduce_euclidean_norm(x, 1),
           lambda x: np.sqrt((x * x).sum(1)), [(3, 4)]),
    OpCase("cumprod", lambda x: tw.cumprod(x, 1), lambda x: np.cumprod(x, 1), [(2, 4)],
           make_inputs=pos((2, 4))),
    OpCase("cumprod_excl_rev", lambda x: tw.cumprod(x, 0, exclusive=True, reverse=True),
           lambda x: np.flip(np.concatenate([np.ones((1, 2)),
                                             np.cumprod(np.flip(x, 0), 0)[:-1]]), 0), [(3, 2)],
           make_inputs=pos((3, 2))),
    # einsum: linear in each operand, so gradients are einsums again
    OpCase("einsum_matmul", lambda a, b: tw.einsum("ij,jk->ik", a, b),
           lambda a, b: a @ b, [(2, 3), (3, 4)], second_order=True),
    OpCase("einsum_implicit_three", lambda a, b, c: tw.einsum("ij,jk,kl", a, b, c),
           lambda a, b, c: a @ b @ c, [(2, 3), (3, 4), (4, 2)], second_order=True),
    OpCase("einsum_sum_out", lambda x: tw.einsum("ijk->j", x), lambda x: x.sum((0, 2)),
           [(2, 3, 4)]),
    OpCase("einsum_total", lambda x: tw.einsum("ij->", x), np.sum, [(2, 3)]),
    OpCase("einsum_transpose", lambda x: tw.einsum("bij->bji", x),
           lambda x: np.swapaxes(x, 1, 2), [(2, 3, 4)]),
    OpCase("einsum_outer", lambda a, b: tw.einsum("i,j->ij", a, b), np.outer, [(3,), (2,)]),
    OpCase("einsum_letter_broadcast", lambda a, b: tw.einsum("ij,j->ij", a, b), np.multiply,
           [(3, 2), (1,)]),
    OpCase("einsum_ellipsis", lambda a, b: tw.einsum("...i,...i->...", a, b),
           lambda a, b: (a * b).sum(-1), [(2, 1, 4), (3, 4)]),
    OpCase("add_dynamic_broadcast", lambda x, y: x + y, np.add, [(2, 3), (2, 1)],
           static_shapes=False),
    OpCase("mul_dynamic_broadcast", lambda x, y: x * y, np.multiply, [(3,), (2, 3)],
           static_shapes=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_math_op(case):
    check_case(case)


BOOL_CASES = [
    ("equal", tw.equal, np.equal), ("not_equal", tw.not_equal, np.not_equal),
    ("less", tw.less, np.less), ("less_equal", tw.less_equal, np.less_equal),
    ("greater", tw.greater, np.greater), ("greater_equal", tw.greater_equal, np.greater_equal),
]


@pytest.mark.parametrize("name,fn,ref", BOOL_CASES, ids=[c[0] for c in BOOL_CASES])
def test_comparisons(name, fn, ref):
    a = np.array([[1, 2, 3], [3, 2, 1]], np.int32)
    b = np.array([2, 2, 2], np.int32)
    out = fn(tw.constant(a), tw.constant(b))
    assert out.dtype == tw.bool and out.shape.as_list() == [2, 3]
    with tw.Session() as s:
        np.testing.assert_array_equal(s.run(out), ref(a, b))


def test_logical_ops_and_operators():
    a = tw.constant([True, True, False, False])
    b = tw.constant([True, False, True, False])
    with tw.Session() as s:
        got = s.run([tw.logical_and(a, b), tw.logical_or(a, b), tw.logical_xor(a, b),
                     tw.logical_not(a), a & b, a | b, ~a])
    assert [g.tolist() for g in got] == [
        [True, False, False, False], [True, True, True, False], [False, True, True, False],
        [False, False, True, True], [True, False, False, False], [True, True, True, False],
        [False, False, True, True]]


def test_where_without_xy_gives_coordinates():
    c = tw.constant([[True, False], [False, True]])
    idx = tw.where(c)
    assert idx.dtype == tw.int64
    with tw.Session() as s:
        assert s.run(idx).tolist() == [[0, 0], [1, 1]]


def test_argmax_argmin():
    x = tw.constant([[1.0, 5.0, 3.0], [7.0, 0.0, 2.0]])
    am = tw.argmax(x, 1)
    assert am.dtype == tw.int64 and am.shape.as_list() == [2]
    with tw.Session() as s:
        assert s.run(am).tolist() == [1, 0]
        assert s.run(tw.argmin(x, axis=0, output_type=tw.int32)).tolist() == [0, 1, 1]
        assert s.run(tw.argmax(x, dimension=1)).tolist() == [1, 0]


def test_integer_truediv_casts_to_float():
    a, b = tw.constant([7, 8]), tw.constant([2, 4])
    q = a / b
    assert q.dtype == tw.float64
    with tw.Session() as s:
        np.testing.assert_array_equal(s.run(q), [3.5, 2.0])
        assert s.run(a // b).tolist() == [3, 2]
        assert s.run(a % b).tolist() == [1, 0]


def test_reductions_on_bools_and_counts():
    x = tw.constant([[True, False], [True, True]])
    with tw.Session() as s:
        assert s.run(tw.reduce_all(x, 1)).tolist() == [False, True]
        assert s.run(tw.reduce_any(x, 0)).tolist() == [True, True]
        assert s.run(tw.count_nonzero(tw.constant([0, 1, 2, 0]))) == 2


def test_mismatched_shapes_and_dtypes_fail_at_construction():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        tw.add(tw.zeros([2, 3]), tw.zeros([4]))
    with pytest.raises(TypeError, match="int32.*float32|float32.*int32"):
        tw.add(tw.zeros([2], tw.float32), tw.zeros([2], tw.int32))
    with pytest.raises(ValueError, match="Invalid reduction axis 2"):
        tw.reduce_sum(tw.zeros([2, 3]), 2)
    with pytest.raises(ValueError, match="Dimensions must be equal"):
        tw.matmul(tw.zeros([2, 3, 4]), tw.zeros([2, 5, 6]))


def test_python_scalars_take_the_tensor_dtype():
    x = tw.placeholder(tw.float32, [2])
    y = 2 * x + 1
    assert y.dtype == tw.float32
    with pytest.raises(TypeError):
        tw.placeholder(tw.int32, [2]) + 1.5


def test_cast_gradient_passes_through_float_casts_only():
    x = tw.placeholder(tw.float64, [3])
    g, = tw.gradients(tw.reduce_sum(tw.cast(x, tw.float32) * 2.0), [x])
    assert g.dtype == tw.float64
    with tw.Session() as s:
        np.testing.assert_array_equal(s.run(g, {x: [1.0, 2.0, 3.0]}), [2.0, 2.0, 2.0])
    assert tw.gradients(tw.cast(tw.cast(x, tw.int32), tw.float64), [x]) == [None]


def test_reduce_max_ties_share_the_gradient():
    x = tw.constant([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    g, = tw.gradients(tw.reduce_max(x, 1), [x])
    with tw.Session() as s:
        np.testing.assert_allclose(s.run(g), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_reduce_logsumexp_of_infinite_slices_has_no_nan():
    x = tw.constant([[-np.inf, -np.inf], [np.inf, 1.0], [0.0, 0.0]])
    with tw.Session() as s:
        got = s.run(tw.reduce_logsumexp(x, 1))
    assert got[0] == -np.inf and got[1] == np.inf
    np.testing.assert_allclose(got[2], np.log(2.0))


def test_float_only_ops_reject_integers_at_construction():
    with pytest.raises(TypeError, match="Sqrt needs a floating-point input, got int32"):
        tw.sqrt(tw.constant([4, 9]))
    with pytest.raises(TypeError, match="IsNan needs a floating-point input"):
        tw.is_nan(tw.constant([1]))
    # integer-friendly ops keep the integer dtype
    x = tw.constant([-3, 2], tw.int32)
    with tw.Session() as s:
        got = s.run([tw.abs(x), tw.square(x), tw.sign(x), tw.round(x), -x])
    assert [g.dtype for g in got] == [np.int32] * 5
    assert [g.tolist() for g in got] == [[3, 2], [9, 4], [-1, 1], [-3, 2], [3, -2]]


def test_elementwise_kernels_keep_float32():
    x = tw.constant(np.linspace(0.1, 0.9, 5).astype(np.float32))
    ops = [tw.sqrt, tw.rsqrt, tw.exp, tw.log, tw.tanh, tw.sigmoid, tw.erf, tw.reciprocal,
           tw.asin, tw.atanh, lambda v: tw.reduce_mean(v), lambda v: tw.div_no_nan(v, v),
           lambda v: math_ops.tanh_grad(v, v), lambda v: math_ops.sigmoid_grad(v, v),
           lambda v: math_ops.rsqrt_grad(v, v), lambda v: math_ops.sqrt_grad(v, v),
           lambda v: math_ops.reciprocal_grad(v, v), lambda v: tw.cumprod(v)]
    outs = [f(x) for f in ops]
    assert all(o.dtype == tw.float32 for o in outs)
    with tw.Session() as s:
        assert [r.dtype for r in s.run(outs)] == [np.float32] * len(outs)


def test_truediv_result_dtypes_follow_tf():
    assert (tw.constant([1], tw.int16) / tw.constant([2], tw.int16)).dtype == tw.float32
    assert (tw.constant([1], tw.int64) / tw.constant([2], tw.int64)).dtype == tw.float64
    assert tw.divide(tw.constant([1.0]), 2.0).dtype == tw.float32
    with tw.Session() as s:
        assert s.run(tw.div(tw.constant([7, -7]), 2)).tolist() == [3, -4]
        np.testing.assert_allclose(s.run(tw.div(tw.constant([7.0]), 2.0)), [3.5])
        assert s.run(tw.truncatediv(tw.constant([-7, 7]), tw.constant([2, -2]))).tolist() \
            == [-3, -3]


def test_reduction_names_axes_and_aliases():
    x = tw.placeholder(tw.float32, [2, 3, 4])
    assert tw.reduce_sum(x, 1, name="loss").name == "loss:0"
    assert tw.reduce_mean(x, axis=-1).shape.as_list() == [2, 3]
    assert tw.reduce_max(x, [-1, 0], keepdims=True).shape.as_list() == [1, 3, 1]
    assert tw.reduce_min(x, reduction_indices=[2], keep_dims=True).shape.as_list() == [2, 3, 1]
    with pytest.raises(ValueError, match="Invalid reduction axis -4"):
        tw.reduce_sum(x, -4)
    with pytest.raises(ValueError, match="only one of 'axis' and 'reduction_indices'"):
        tw.reduce_sum(x, 0, reduction_indices=1)
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        tw.argmax(x, 3)
    unknown = tw.placeholder(tw.float32)
    with tw.Session() as s:
        v = np.arange(6.0).reshape(2, 3)
        assert s.run(tw.reduce_sum(unknown), {unknown: v}) == 15.0
        assert s.run(tw.argmax(unknown, -1), {unknown: v}).tolist() == [2, 2]


def test_argmax_output_types():
    x = tw.constant([[1.0, 5.0], [7.0, 0.0]])
    assert tw.argmax(x, 1).dtype == tw.int64
    assert tw.argmin(x, 1, output_type=tw.int32).dtype == tw.int32
    with pytest.raises(TypeError, match="output_type must be int32 or int64"):
        tw.argmax(x, 1, output_type=tw.float32)


def test_where_and_clip_errors():
    with pytest.raises(ValueError, match="both x and y, or neither"):
        tw.where(tw.constant([True]), x=tw.constant([1.0]))
    with pytest.raises(ValueError, match=r"clip values broadcast t of shape \(3,\)"):
        tw.clip_by_value(tw.zeros([3]), tw.zeros([2, 3]), 1.0)
    with pytest.raises(ValueError, match=r"batch dimensions.*\(2, 3, 4\).*\(5, 4, 2\)"):
        tw.matmul(tw.zeros([2, 3, 4]), tw.zeros([5, 4, 2]))
    with pytest.raises(ValueError, match="expected shape"):
        tw.accumulate_n([tw.zeros([2]), tw.zeros([3])], shape=[2])


def test_gradient_ops_are_single_kernels():
    """Tanh/Sigmoid/Sqrt/Rsqrt/Reciprocal gradients are one TF-named op each."""
    x = tw.placeholder(tw.float32, [3])
    for f, t in [(tw.tanh, "TanhGrad"), (tw.sigmoid, "SigmoidGrad"), (tw.sqrt, "SqrtGrad"),
                 (tw.rsqrt, "RsqrtGrad"), (tw.reciprocal, "ReciprocalGrad")]:
        g, = tw.gradients(f(x), [x])
        assert g.op.type == t


def test_clip_by_value_gradient_passes_inside_only():
    x = tw.constant([-2.0, -0.5, 0.0, 0.5, 2.0])
    g, = tw.gradients(tw.reduce_sum(tw.clip_by_value(x, -1.0, 1.0)), [x])
    with tw.Session() as s:
        assert s.run(g).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_is_nan_inf_finite():
    x = tw.constant([0.0, np.nan, np.inf, -np.inf])
    with tw.Session() as s:
        nan, inf, fin = s.run([tw.is_nan(x), tw.is_inf(x), tw.is_finite(x)])
    assert nan.tolist() == [False, True, False, False]
    assert inf.tolist() == [False, False, True, True]
    assert fin.tolist() == [True, False, False, False]


def test_einsum_errors_name_the_problem():
    with pytest.raises(ValueError, match="names 2 operands, got 1"):
        tw.einsum("ij,jk->ik", tw.zeros([2, 3]))
    with pytest.raises(ValueError, match="subscript 'j' has sizes 3 and 4"):
        tw.einsum("ij,jk->ik", tw.zeros([2, 3]), tw.zeros([4, 5]))
    with pytest.raises(ValueError, match="appear in no input"):
        tw.einsum("ij->ik", tw.zeros([2, 3]))


def test_reduction_axis_may_be_an_int64_tensor():
    x = tw.constant([[1.0, 2.0], [3.0, 4.0]])
    with tw.Session() as s:
        assert s.run(tw.reduce_mean(x, axis=tw.constant(1, tw.int64))).tolist() == [1.5, 3.5]
