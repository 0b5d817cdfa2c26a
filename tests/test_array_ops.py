"""Array ops: an OpCase table through the shared harness, plus slicing shapes, sparse gather
gradients and construction-time errors."""

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case


def _ints(*arrays):
    """make_inputs for a float input followed by fixed integer inputs."""
    shape, rest = arrays[0], arrays[1:]
    return lambda r: [r.standard_normal(shape)] + [np.asarray(a) for a in rest]


def _split3(x):
    a, b, c = tw.split(x, 3, axis=1)
    return tw.concat([c * 2.0, a, b * b], 1)


def _splitv(x):
    a, b = tw.split(x, [1, -1], axis=-1)
    return b * tw.tanh(a)


def _unstack(x):
    a, b, c = tw.unstack(x, axis=1)
    return a * b + c


def _ref_unstack(x):
    return x[:, 0] * x[:, 1] + x[:, 2]


def _gather_axis1_ref(p, i):
    return np.take(p, i, axis=1)


def _mirror(x, mode):
    return np.pad(x, [[1, 2], [2, 0]], mode=mode)


CASES = [
    # layout
    OpCase("transpose_perm", lambda x: tw.transpose(x, [2, 0, 1]),
           lambda x: x.transpose(2, 0, 1), [(2, 3, 4)]),
    OpCase("transpose_default", tw.transpose, np.transpose, [(2, 3, 4)]),
    OpCase("transpose_dynamic_rank", tw.transpose, np.transpose, [(2, 3)], static_shapes=False),
    OpCase("transpose_tanh_2nd", lambda x: tw.tanh(tw.transpose(x, [1, 0])),
           lambda x: np.tanh(x.T), [(2, 3)], second_order=True),
    OpCase("reshape_minus1", lambda x: tw.reshape(x, [-1, 2]), lambda x: x.reshape(-1, 2),
           [(3, 4)]),
    OpCase("reshape_dynamic", lambda x: tw.reshape(x, tw.shape(x)[::-1]),
           lambda x: x.reshape(x.shape[::-1]), [(3, 4)], static_shapes=False),
    OpCase("expand_dims", lambda x: tw.expand_dims(x, -1), lambda x: x[..., None], [(2, 3)]),
    OpCase("squeeze_all", tw.squeeze, np.squeeze, [(1, 3, 1, 2)]),
    OpCase("squeeze_axis", lambda x: tw.squeeze(x, [2]), lambda x: x.squeeze(2), [(1, 3, 1)]),
    OpCase("squeeze_dynamic", lambda x: tw.squeeze(x, axis=0), lambda x: x[0], [(1, 3)],
           static_shapes=False),
    OpCase("reverse", lambda x: tw.reverse(x, [0, -1]), lambda x: x[::-1, :, ::-1],
           [(2, 3, 4)]),
    OpCase("broadcast_to", lambda x: tw.broadcast_to(x, [2, 3, 4]),
           lambda x: np.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
    # joining and splitting
    OpCase("concat_axis1", lambda x, y: tw.concat([x, y], 1),
           lambda x, y: np.concatenate([x, y], 1), [(2, 3), (2, 2)]),
    OpCase("concat_neg_axis_3", lambda x, y, z: tw.concat([x, y, z], -1),
           lambda x, y, z: np.concatenate([x, y, z], -1), [(2, 1), (2, 2), (2, 3)]),
    OpCase("concat_dynamic", lambda x, y: tw.concat([x, y], 0),
           lambda x, y: np.concatenate([x, y], 0), [(1, 3), (2, 3)], static_shapes=False),
    OpCase("concat_tanh_2nd", lambda x, y: tw.tanh(tw.concat([x, y], 0)),
           lambda x, y: np.tanh(np.concatenate([x, y], 0)), [(1, 2), (2, 2)],
           second_order=True),
    OpCase("split_num", _split3, lambda x: np.concatenate(
        [x[:, 4:] * 2, x[:, :2], x[:, 2:4] ** 2], 1), [(2, 6)]),
    OpCase("split_sizes", _splitv, lambda x: x[:, 1:] * np.tanh(x[:, :1]), [(3, 4)]),
    OpCase("split_sizes_dynamic", _splitv, lambda x: x[:, 1:] * np.tanh(x[:, :1]), [(3, 4)],
           static_shapes=False),
    OpCase("stack_axis1", lambda x, y: tw.stack([x, y], axis=1),
           lambda x, y: np.stack([x, y], 1), [(2, 3), (2, 3)]),
    OpCase("stack_neg_axis", lambda x, y: tw.stack([x, y], axis=-1),
           lambda x, y: np.stack([x, y], -1), [(2, 3), (2, 3)]),
    OpCase("unstack", _unstack, _ref_unstack, [(2, 3, 2)]),
    # slicing
    OpCase("slice", lambda x: tw.slice(x, [1, 0], [2, -1]), lambda x: x[1:3, :], [(4, 3)]),
    OpCase("slice_dynamic", lambda x: tw.slice(x, [0, 1], [-1, 2]), lambda x: x[:, 1:3],
           [(3, 4)], static_shapes=False),
    OpCase("getitem_basic", lambda x: x[1:, 0], lambda x: x[1:, 0], [(3, 4)]),
    OpCase("getitem_strided", lambda x: x[::-2, 1::2], lambda x: x[::-2, 1::2], [(5, 6)]),
    OpCase("getitem_ellipsis_newaxis", lambda x: x[..., None, -1], lambda x: x[..., None, -1],
           [(2, 3, 4)]),
    OpCase("getitem_negative_bounds", lambda x: x[-3:-1, :-2], lambda x: x[-3:-1, :-2],
           [(4, 5)]),
    OpCase("getitem_dynamic", lambda x: x[1:, ::-1], lambda x: x[1:, ::-1], [(3, 4)],
           static_shapes=False),
    OpCase("getitem_tensor_index", lambda x, i: x[:, i], lambda x, i: x[:, i], [(3, 4), ()],
           make_inputs=_ints((3, 4), 2), grad_inputs=[0]),
    OpCase("getitem_tensor_index_negative", lambda x, i: x[i], lambda x, i: x[i],
           [(3, 4), ()], make_inputs=_ints((3, 4), -1), grad_inputs=[0]),
    OpCase("getitem_tanh_2nd", lambda x: tw.tanh(x[1:, ::2]), lambda x: np.tanh(x[1:, ::2]),
           [(3, 4)], second_order=True),
    OpCase("strided_slice_masks", lambda x: tw.strided_slice(
        x, [0, 1, 0], [0, 3, 0], [1, 1, 1], begin_mask=1, end_mask=5, shrink_axis_mask=0),
        lambda x: x[:, 1:3, :], [(2, 4, 3)]),
    # gather and scatter
    OpCase("gather_rows", lambda p, i: tw.gather(p, i), lambda p, i: p[i], [(5, 3), (4,)],
           make_inputs=_ints((5, 3), [4, 0, 4, 2]), grad_inputs=[0]),
    OpCase("gather_2d_indices", lambda p, i: tw.gather(p, i), lambda p, i: p[i],
           [(4, 2), (2, 3)], make_inputs=_ints((4, 2), [[0, 1, 1], [3, 3, 0]]),
           grad_inputs=[0]),
    OpCase("gather_axis1", lambda p, i: tw.gather(p, i, axis=1), _gather_axis1_ref,
           [(2, 4, 3), (3,)], make_inputs=_ints((2, 4, 3), [3, 1, 3]), grad_inputs=[0]),
    OpCase("gather_axis1_2d", lambda p, i: tw.gather(p, i, axis=1), _gather_axis1_ref,
           [(2, 4), (2, 2)], make_inputs=_ints((2, 4), [[0, 1], [1, 3]]), grad_inputs=[0]),
    OpCase("gather_tanh_2nd", lambda p, i: tw.tanh(tw.gather(p, i)),
           lambda p, i: np.tanh(p[i]), [(4, 2), (3,)], make_inputs=_ints((4, 2), [1, 1, 3]),
           grad_inputs=[0], second_order=True),
    OpCase("gather_dynamic", lambda p, i: tw.gather(p, i), lambda p, i: p[i],
           [(4, 2, 2), (2, 2)], make_inputs=_ints((4, 2, 2), [[3, 0], [3, 3]]),
           grad_inputs=[0], static_shapes=False),
    OpCase("gather_nd", lambda p, i: tw.gather_nd(p, i), lambda p, i: p[i[:, 0], i[:, 1]],
           [(3, 4, 2), (3, 2)], make_inputs=_ints((3, 4, 2), [[0, 1], [2, 3], [0, 1]]),
           grad_inputs=[0]),
    OpCase("scatter_nd", lambda u, i: tw.scatter_nd(i, u, [4, 2]),
           lambda u, i: np.add.at(z := np.zeros((4, 2)), i[:, 0], u) or z, [(3, 2), (3, 1)],
           make_inputs=_ints((3, 2), [[1], [3], [1]]), grad_inputs=[0]),
    OpCase("unsorted_segment_sum", lambda d, s: tw.unsorted_segment_sum(d, s, 3),
           lambda d, s: np.stack([d[s == k].sum(0) for k in range(3)]), [(4, 2), (4,)],
           make_inputs=_ints((4, 2), [2, 0, 2, 1]), grad_inputs=[0]),
    OpCase("dynamic_stitch", lambda a, b: tw.dynamic_stitch([[0, 2], [1]], [a, b]),
           lambda a, b: np.stack([a[0], b[0], a[1]]), [(2, 3), (1, 3)]),
    OpCase("boolean_mask", lambda x, m: tw.boolean_mask(x, m), lambda x, m: x[m],
           [(4, 2), (4,)], make_inputs=_ints((4, 2), [True, False, True, True]),
           grad_inputs=[0]),
    OpCase("boolean_mask_2d_mask", lambda x, m: tw.boolean_mask(x, m), lambda x, m: x[m],
           [(2, 3, 2), (2, 3)], make_inputs=_ints((2, 3, 2), np.array([[1, 0, 1], [0, 0, 1]], bool)),
           grad_inputs=[0]),
    OpCase("boolean_mask_axis1", lambda x, m: tw.boolean_mask(x, m, axis=1),
           lambda x, m: x[:, m], [(2, 3), (3,)], make_inputs=_ints((2, 3), [False, True, True]),
           grad_inputs=[0]),
    # padding and tiling
    OpCase("pad", lambda x: tw.pad(x, [[1, 0], [2, 3]]),
           lambda x: np.pad(x, [[1, 0], [2, 3]]), [(2, 3)]),
    OpCase("pad_value", lambda x: tw.pad(x, [[0, 2]], constant_values=1.5),
           lambda x: np.pad(x, [[0, 2]], constant_values=1.5), [(3,)]),
    OpCase("pad_dynamic", lambda x: tw.pad(x, [[1, 1], [0, 2]]),
           lambda x: np.pad(x, [[1, 1], [0, 2]]), [(2, 2)], static_shapes=False),
    OpCase("pad_tanh_2nd", lambda x: tw.tanh(tw.pad(x, [[1, 1]])),
           lambda x: np.tanh(np.pad(x, [[1, 1]])), [(3,)], second_order=True),
    OpCase("mirror_pad_reflect", lambda x: tw.pad(x, [[1, 2], [2, 0]], mode="REFLECT"),
           lambda x: _mirror(x, "reflect"), [(4, 3)]),
    OpCase("mirror_pad_symmetric", lambda x: tw.pad(x, [[1, 2], [2, 0]], mode="SYMMETRIC"),
           lambda x: _mirror(x, "symmetric"), [(3, 2)]),
    OpCase("mirror_pad_2nd", lambda x: tw.tanh(tw.pad(x, [[2, 1]], mode="REFLECT")),
           lambda x: np.tanh(np.pad(x, [[2, 1]], mode="reflect")), [(4,)], second_order=True),
    OpCase("tile", lambda x: tw.tile(x, [2, 3]), lambda x: np.tile(x, [2, 3]), [(2, 3)]),
    OpCase("tile_dynamic", lambda x: tw.tile(x, [3, 1, 2]), lambda x: np.tile(x, [3, 1, 2]),
           [(1, 2, 2)], static_shapes=False),
    OpCase("fill_value", lambda v: tw.fill([2, 3], v), lambda v: np.full((2, 3), v), [()]),
    # second order through the structural ops (their gradients are graph ops too)
    OpCase("stack_unstack_2nd", lambda x, y: tw.tanh(tw.stack(tw.unstack(x) + [y], axis=1)),
           lambda x, y: np.tanh(np.stack(list(x) + [y], 1)), [(2, 3), (3,)],
           second_order=True),
    OpCase("split_slice_2nd", lambda x: tw.tanh(tw.slice(tw.split(x, 2)[1], [0, 1], [1, 2])),
           lambda x: np.tanh(x[2:3, 1:3]), [(4, 3)], second_order=True),
    OpCase("tile_squeeze_2nd", lambda x: tw.tanh(tw.squeeze(tw.tile(tw.expand_dims(x, 0),
                                                                     [1, 2, 1]))),
           lambda x: np.tanh(np.tile(x, [2, 1])), [(2, 3)], second_order=True),
    OpCase("reverse_broadcast_2nd", lambda x: tw.tanh(tw.reverse(tw.broadcast_to(x, [2, 3]),
                                                                 [1])),
           lambda x: np.tanh(np.broadcast_to(x, (2, 3))[:, ::-1]), [(3,)], second_order=True),
    # generators and integer-valued ops (forward only)
    OpCase("range_float", lambda: tw.range(1.0, 2.0, 0.25), lambda: np.arange(1.0, 2.0, 0.25),
           [], grad=False),
    OpCase("range_limit_tensor", lambda n: tw.range(n), lambda n: np.arange(n), [()],
           make_inputs=lambda r: [np.array(5)], grad=False),
    OpCase("one_hot", lambda i: tw.one_hot(i, 4, dtype=tw.float64), lambda i: np.eye(4)[i],
           [(3,)], make_inputs=lambda r: [np.array([0, 3, 1])], grad=False),
    OpCase("one_hot_axis0_values", lambda i: tw.one_hot(i, 3, 5.0, -1.0, axis=0),
           lambda i: np.array([[-1.0, -1], [-1, -1], [5, -1]]), [(2,)],
           make_inputs=lambda r: [np.array([2, -1])], grad=False),
    OpCase("sequence_mask", lambda n: tw.sequence_mask(n, 4, dtype=tw.float64),
           lambda n: (np.arange(4) < n[:, None]).astype(float), [(3,)],
           make_inputs=lambda r: [np.array([0, 2, 4])], grad=False, extra={"needs": "less"}),
    OpCase("sequence_mask_default_maxlen", lambda n: tw.sequence_mask(n, dtype=tw.float64),
           lambda n: (np.arange(3) < n[..., None]).astype(float), [(2, 2)],
           make_inputs=lambda r: [np.array([[1, 3], [0, 2]])], grad=False,
           extra={"needs": "less"}),
    OpCase("shape_size_rank", lambda x: tw.concat(
        [tw.shape(x), tw.shape_n([x, x])[1], [tw.size(x), tw.rank(x)]], 0),
        lambda x: np.array([2, 3, 2, 3, 6, 2]), [(2, 3)], grad=False),
    OpCase("invert_permutation", lambda p: tw.invert_permutation(p), np.argsort, [(4,)],
           make_inputs=lambda r: [np.array([2, 0, 3, 1])], grad=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_op(case):
    from tensorweave.ops import math_ops
    need = case.extra.get("needs")
    if need and not hasattr(math_ops, need):
        pytest.skip(f"waits for math_ops.{need} (math family)")
    check_case(case)


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()
    yield


# --- Tensor.__getitem__ static shapes ------------------------------------------------------
_X = (None, 4, 5)
_GETITEM_SHAPES = [
    (lambda x, t: x[:, t, :], [None, 5]),
    (lambda x, t: x[1:], [None, 4, 5]),
    (lambda x, t: x[..., 0], [None, 4]),
    (lambda x, t: x[:, tw.newaxis], [None, 1, 4, 5]),
    (lambda x, t: x[::-1], [None, 4, 5]),
    (lambda x, t: x[-1], [4, 5]),
    (lambda x, t: x[t], [4, 5]),
    (lambda x, t: x[:, 1:3], [None, 2, 5]),
    (lambda x, t: x[:, ::-2, -2:], [None, 2, 2]),
    (lambda x, t: x[0, ..., tw.newaxis, 1:10], [4, 1, 4]),
    (lambda x, t: x[:, -5:-1:3], [None, 1, 5]),
    (lambda x, t: x[:, t:, 2], [None, None]),
    (lambda x, t: x[..., tw.newaxis, :], [None, 4, 1, 5]),
    (lambda x, t: x[:, :, 4:1], [None, 4, 0]),
]


@pytest.mark.parametrize("k", range(len(_GETITEM_SHAPES)))
def test_getitem_static_shape(k):
    x = tw.placeholder(tw.float32, _X)
    t = tw.placeholder(tw.int32, [])
    fn, want = _GETITEM_SHAPES[k]
    y = fn(x, t)
    assert y.shape.as_list() == want
    assert y.op.type == "StridedSlice"
    xv = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    with tw.Session() as sess:
        got = sess.run(y, {x: xv, t: 1})
    np.testing.assert_array_equal(got, fn(xv, 1))


def test_getitem_unknown_rank_and_bad_indices():
    x = tw.placeholder(tw.float32)
    assert x[1:].shape.ndims is None
    y = tw.placeholder(tw.float32, [3, 4])
    with pytest.raises(ValueError, match="out of bounds"):
        y[3]
    with pytest.raises(ValueError, match="out of bounds"):
        y[:, -5]
    with pytest.raises(TypeError, match="valid indices"):
        y[[0, 1]]
    with pytest.raises(TypeError, match="scalar int32 or int64"):
        y[tw.constant([1, 2])]
    with pytest.raises(ValueError, match="Index out of range"):
        y[0, 0, 0]


def test_getitem_tensor_index_runtime_out_of_range():
    x = tw.placeholder(tw.float32, [3])
    i = tw.placeholder(tw.int32, [])
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError):
            sess.run(x[i], {x: np.zeros(3), i: 3})


def test_strided_slice_attrs_follow_tf():
    x = tw.placeholder(tw.float32, [2, 3, 4])
    y = x[tw.newaxis, 1, ..., ::2]
    a = y.op.attrs
    assert (a["new_axis_mask"], a["shrink_axis_mask"], a["ellipsis_mask"]) == (1, 2, 4)
    assert (a["begin_mask"], a["end_mask"]) == (8, 8)
    assert y.shape.as_list() == [1, 3, 2]
    (g,) = tw.gradients(tw.reduce_sum(y), [x])
    assert g.op.type == "StridedSliceGrad"


# --- gather's sparse gradient ---------------------------------------------------------------
def test_gather_gradient_is_indexed_slices_and_densifies():
    p = tw.placeholder(tw.float64, [5, 2])
    y = tw.gather(p, [3, 1, 3])
    (g,) = tw.gradients(tw.reduce_sum(y * tw.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                                                      dtype=tw.float64)), [p])
    assert isinstance(g, tw.IndexedSlices)
    assert g.indices.dtype == tw.int32
    dense = tw.convert_to_tensor(g)
    with tw.Session() as sess:
        vals, idx, shape, got = sess.run([g.values, g.indices, g.dense_shape, dense],
                                         {p: np.ones((5, 2))})
    assert idx.tolist() == [3, 1, 3] and shape.tolist() == [5, 2]
    assert vals.shape == (3, 2)
    want = np.zeros((5, 2))
    want[3] = [6.0, 8.0]
    want[1] = [3.0, 4.0]
    np.testing.assert_allclose(got, want)


def test_gather_gradient_sums_with_dense_contribution():
    p = tw.placeholder(tw.float64, [3])
    loss = tw.reduce_sum(tw.gather(p, [0, 0, 2])) + tw.reduce_sum(p * p)
    (g,) = tw.gradients(loss, [p])
    with tw.Session() as sess:
        got = sess.run(tw.convert_to_tensor(g), {p: np.array([1.0, 2.0, 3.0])})
    np.testing.assert_allclose(got, [4.0, 4.0, 7.0])


def test_gather_out_of_range_fails_at_run_time():
    p = tw.constant([1.0, 2.0])
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="not in \\[0, 2\\)"):
            sess.run(tw.gather(p, [2]))
        with pytest.raises(tw.errors.InvalidArgumentError):
            sess.run(tw.gather(p, [-1]))


# --- construction-time errors and shapes ----------------------------------------------------
def test_reshape_minus_one_and_bad_reshape():
    x = tw.placeholder(tw.float32, [3, 4])
    assert tw.reshape(x, [-1, 6]).shape.as_list() == [2, 6]
    assert tw.reshape(tw.placeholder(tw.float32, [None, 4]), [-1, 2]).shape.as_list() \
        == [None, 2]
    with pytest.raises(ValueError, match=r"\(3, 4\).*\[5, 2\]"):
        tw.reshape(x, [5, 2])
    with pytest.raises(ValueError, match=r"\(3, 4\).*\[-1, 5\]"):
        tw.reshape(x, [-1, 5])


def test_concat_shape_mismatch_names_both_shapes():
    a = tw.placeholder(tw.float32, [2, 3])
    b = tw.placeholder(tw.float32, [4, 2])
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        tw.concat([a, b], 1)
    with pytest.raises(ValueError, match="same rank"):
        tw.concat([a, tw.placeholder(tw.float32, [2])], 0)
    assert tw.concat([a, tw.placeholder(tw.float32, [None, 3])], 0).shape.as_list() \
        == [None, 3]
    assert tw.concat([a, tw.placeholder(tw.float32, [5, 3])], -2).shape.as_list() == [7, 3]


def test_other_construction_errors():
    x = tw.placeholder(tw.float32, [2, 6])
    with pytest.raises(ValueError, match="divisible"):
        tw.split(x, 4, axis=1)
    with pytest.raises(ValueError, match="sum to"):
        tw.split(x, [2, 2], axis=1)
    with pytest.raises(ValueError, match="squeeze"):
        tw.squeeze(x, [0])
    with pytest.raises(ValueError, match="Shapes of all inputs"):
        tw.stack([x, tw.placeholder(tw.float32, [3, 6])])
    with pytest.raises(ValueError, match="exceeds"):
        tw.slice(x, [1, 0], [2, 6])
    with pytest.raises(ValueError, match="paddings"):
        tw.pad(x, [[1, 1]])
    with pytest.raises(ValueError, match="multiples"):
        tw.tile(x, [2])
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        tw.unstack(x, axis=3)


def test_static_shapes_of_builders():
    x = tw.placeholder(tw.float32, [None, 3, 1])
    assert tw.transpose(x).shape.as_list() == [1, 3, None]
    assert tw.squeeze(x).shape.ndims is None  # an unknown dim might be 1
    assert tw.squeeze(x, axis=[-1]).shape.as_list() == [None, 3]
    assert tw.expand_dims(x, 0).shape.as_list() == [1, None, 3, 1]
    assert tw.tile(x, [2, 2, 4]).shape.as_list() == [None, 6, 4]
    assert tw.pad(x, [[1, 1], [0, 2], [0, 0]]).shape.as_list() == [None, 5, 1]
    assert [t.shape.as_list() for t in tw.split(x, [1, -1], axis=1)] == [[None, 1, 1],
                                                                          [None, 2, 1]]
    assert [t.shape.as_list() for t in tw.unstack(x, axis=1)] == [[None, 1]] * 3
    assert tw.stack([x, x], axis=-1).shape.as_list() == [None, 3, 1, 2]
    assert tw.gather(x, [0, 1], axis=1).shape.as_list() == [None, 2, 1]
    assert tw.one_hot([[1, 2]], 5).shape.as_list() == [1, 2, 5]
    assert tw.one_hot([1, 2], 5, axis=0).shape.as_list() == [5, 2]
    assert tw.range(2, 11, 3).shape.as_list() == [3]
    assert tw.slice(x, [0, 1, 0], [-1, -1, 1]).shape.as_list() == [None, 2, 1]
    assert tw.boolean_mask(x, tw.placeholder(tw.bool, [None, 3])).shape.as_list() == [None, 1]


def test_range_dtype_inference_follows_tf1():
    assert tw.range(5).dtype == tw.int32
    assert tw.range(0, 5, 0.5).dtype == tw.float32
    assert tw.range(tw.constant(3, dtype=tw.int64)).dtype == tw.int64
    assert tw.range(tw.constant(1.0, dtype=tw.float64), 3).dtype == tw.float64
    assert tw.range(4, dtype=tw.float64).dtype == tw.float64
    with tw.Session() as sess:
        np.testing.assert_array_equal(sess.run(tw.range(3, 0, -1)), [3, 2, 1])
        assert sess.run(tw.range(0, 5, 0.5)).dtype == np.float32


def test_chained_view_kernels_leave_inputs_intact():
    x = tw.placeholder(tw.float64, [2, 3])
    y = tw.concat([tw.reverse(x[:, ::-1], [0]), tw.transpose(x)[:2]], 1)
    y = tw.squeeze(tw.expand_dims(tw.unstack(tw.stack([y, y]))[1], 0))
    xv = np.arange(6.0).reshape(2, 3)
    keep = xv.copy()
    with tw.Session() as sess:
        got = sess.run(y, {x: xv})
    np.testing.assert_array_equal(got, np.concatenate([xv[::-1, ::-1], xv.T[:2]], 1))
    np.testing.assert_array_equal(xv, keep)


def test_unsorted_segment_sum_drops_negative_ids():
    d = tw.constant([[1.0], [2.0], [4.0]])
    with tw.Session() as sess:
        got = sess.run(tw.unsorted_segment_sum(d, [1, -1, 1], 2))
    np.testing.assert_array_equal(got, [[0.0], [5.0]])


def test_unsorted_segment_sum_gradient_with_negative_ids():
    from tensorweave.ops import math_ops
    if not (hasattr(math_ops, "maximum") and hasattr(math_ops, "greater_equal")):
        pytest.skip("waits for math_ops.maximum/greater_equal (math family)")
    d = tw.placeholder(tw.float64, [3, 2])
    ids = tw.placeholder(tw.int32, [3])
    y = tw.unsorted_segment_sum(d, ids, 2)
    (g,) = tw.gradients(tw.reduce_sum(y * tw.constant([[1.0, 2.0], [3.0, 4.0]],
                                                      dtype=tw.float64)), [d])
    with tw.Session() as sess:
        got = sess.run(g, {d: np.ones((3, 2)), ids: [1, -3, 0]})
    np.testing.assert_array_equal(got, [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]])


def test_gradient_helpers_used_by_math_grad():
    from tensorweave.ops import array_ops
    r0, r1 = array_ops.broadcast_gradient_args([2, 1, 3], [4, 3])
    rs = array_ops.reduced_shape([2, 3, 4], [0, -1])
    with tw.Session() as sess:
        a, b, c = sess.run([r0, r1, rs])
    assert a.tolist() == [1] and b.tolist() == [0] and c.tolist() == [1, 3, 1]


def test_second_order_through_gather_and_concat():
    x = tw.placeholder(tw.float64, [3])
    y = tw.reduce_sum(tw.tanh(tw.concat([tw.gather(x, [2, 0]), x[1:]], 0)))
    (g,) = tw.gradients(y, [x])
    (h,) = tw.gradients(tw.reduce_sum(tw.convert_to_tensor(g)), [x])
    xv = np.array([0.1, -0.4, 0.7])
    with tw.Session() as sess:
        got = sess.run(tw.convert_to_tensor(h), {x: xv})
    # d2/dx2 of tanh is -2 tanh sech^2; x0 used once, x1 once, x2 twice
    d2 = -2 * np.tanh(xv) / np.cosh(xv) ** 2
    np.testing.assert_allclose(got, d2 * np.array([1, 1, 2]))


def test_static_shapes_see_through_shape_slices():
    x = tw.placeholder(tw.float32, [None, 3, 4])
    assert tw.reshape(x, [tw.shape(x)[0], -1]).shape.as_list() == [None, 12]
    assert tw.reshape(x, tw.stack([-1, tw.shape(x)[2]])).shape.as_list() == [None, 4]
    assert tw.reshape(x, [tw.shape(x)[0], tw.shape(x)[1], 2, -1]).shape.as_list() == \
        [None, 3, 2, 2]
    other = tw.placeholder(tw.float32, [None])
    assert tw.reshape(x, [tw.shape(other)[0], -1]).shape.as_list() == [None, None]
    assert tw.zeros([tw.shape(x)[0], tw.shape(x)[-1]]).shape.as_list() == [None, 4]
    assert tw.one_hot([0, 1], tw.shape(x)[1]).shape.as_list() == [2, 3]
    with pytest.raises(ValueError, match=r"\(\?, 3, 4\).*not divisible by 5"):
        tw.reshape(x, [tw.shape(x)[0], 5, -1])
    p = tw.placeholder(tw.float64, [5, 2])
    (g,) = tw.gradients(tw.reduce_sum(tw.gather(p, [1])), [p])
    assert tw.convert_to_tensor(g).shape.as_list() == [5, 2]
