"""Edge cases of the TF1 additions where a first version differed from TensorFlow (each found
by review and checked against TensorFlow 2.21's tf.compat.v1; each failed before its fix)."""

import numpy as np
import pytest

import tensorweave as tw

INF = np.inf


pytestmark = pytest.mark.usefixtures("fresh_graph")


def _run(fetches, feed=None):
    with tw.Session() as s:
        return s.run(fetches, feed)


def test_tensor_array_reads_exactly_and_checks_indices():
    ta = tw.TensorArray(tw.float32, size=3, element_shape=[2])
    ta = ta.write(0, [1.0, 2.0]).write(1, [INF, 0.0])
    got = _run([ta.read(0), ta.gather([0, 1]), ta.scatter([2], [[INF, -INF]]).read(0)])
    assert got[0].tolist() == [1.0, 2.0]  # was [nan, 2]: one-hot products turned inf into nan
    assert got[1].tolist() == [[1.0, 2.0], [INF, 0.0]] and got[2].tolist() == [1.0, 2.0]
    i = tw.placeholder(tw.int32, [])
    for op in (ta.read(i), ta.write(i, [0.0, 0.0]).stack()):
        with pytest.raises(tw.errors.InvalidArgumentError, match="index out of range"):
            _run(op, {i: 3})
        with pytest.raises(tw.errors.InvalidArgumentError, match="index out of range"):
            _run(op, {i: -1})


def test_diagonal_ops_keep_infinities_where_they_are():
    got = _run([tw.matrix_diag([INF, 1.0]), tw.trace([[1.0, INF], [0.0, 2.0]]),
                tw.matrix_set_diag([[INF, 1.0], [2.0, 3.0]], [5.0, 6.0]),
                tw.matrix_diag_part([[1.0, INF], [0.0, 2.0]])])
    assert got[0].tolist() == [[INF, 0.0], [0.0, 1.0]] and got[1] == 3.0
    assert got[2].tolist() == [[5.0, 1.0], [2.0, 6.0]] and got[3].tolist() == [1.0, 2.0]


def test_counting_ops_check_their_inputs():
    with pytest.raises(tw.errors.InvalidArgumentError, match="out of bound"):
        _run(tw.confusion_matrix([0], [3], num_classes=3))
    with pytest.raises(tw.errors.InvalidArgumentError, match="negative"):
        _run(tw.confusion_matrix([0], [-1]))
    cm = _run(tw.confusion_matrix([0, 1], [1, 1], num_classes=2, weights=[0.6, 1.2]))
    assert cm.dtype == np.int32 and cm.tolist() == [[0, 0], [0, 1]]  # weights cast, as TF1
    got = _run([tw.unsorted_segment_mean(tw.ones([2, 2, 3]), [[0, 1], [1, 1]], 2),
                tw.segment_sum(tw.zeros([0, 2]), tw.zeros([0], tw.int32)),
                tw.unique([np.nan, 1.0, np.nan])[0]])
    assert got[0].shape == (2, 3) and got[1].shape == (0, 2)
    assert np.isnan(got[2]).sum() == 2  # each NaN is its own value, as in TF1
    with pytest.raises(tw.errors.InvalidArgumentError, match="seq_lengths must not exceed"):
        _run(tw.reverse_sequence(tw.zeros([2, 3]), [2, 4], seq_axis=1))


def test_image_adjustments_on_integer_images_match_tf1():
    img = np.array([[[100], [200]]], np.uint8)
    got = _run([tw.image.adjust_brightness(img, 0.2), tw.image.adjust_contrast(img, 0.5),
                tw.image.convert_image_dtype(img, tw.uint16),
                tw.image.convert_image_dtype(np.array([2 ** 23], np.int32), tw.uint8),
                tw.image.rgb_to_grayscale(np.full((1, 1, 3), 100, np.uint8)),
                tw.image.resize_nearest_neighbor(np.arange(3.0).reshape(1, 3, 1, 1), [5, 1],
                                                 align_corners=True)[0, :, 0, 0]])
    assert got[0].ravel().tolist() == [151, 251] and got[1].ravel().tolist() == [125, 175]
    assert got[2].ravel().tolist() == [25600, 51200] and got[3].tolist() == [1]
    assert got[4].item() == 100 and got[5].tolist() == [0, 1, 1, 2, 2]


def test_metrics_squeeze_labels_shaped_batch_by_one():
    acc, update = tw.metrics.accuracy(tw.constant([[1], [0], [2]]),
                                      tw.argmax(tw.constant(np.eye(3)[[1, 2, 2]]), 1))
    with tw.Session() as s:
        s.run(tw.local_variables_initializer())
        assert abs(s.run(update) - 2 / 3) < 1e-6


def test_py_func_outputs_must_fit_tout():
    x = tw.constant([1.0])
    with pytest.raises(tw.errors.InvalidArgumentError, match="does not convert"):
        _run(tw.py_func(lambda a: np.array(["a"]), [x], tw.float32))
    with pytest.raises(tw.errors.InvalidArgumentError, match="outside the range"):
        _run(tw.py_func(lambda a: np.array([2 ** 40]), [x], tw.int32))
    assert _run(tw.py_func(lambda a: np.array([7]), [x], tw.int32)).tolist() == [7]
    assert _run(tw.py_func(lambda a: "ok", [x], tw.string)) == b"ok"


def test_loss_weights_broadcast_only_as_tf1_allows():
    with pytest.raises(ValueError, match="can not be broadcast"):
        tw.losses.mean_squared_error(tw.zeros([2, 2]), tw.ones([2, 2]), weights=[1.0, 0.0])
    loss = tw.losses.mean_squared_error(tw.zeros([2, 2]), tw.ones([2, 2]),
                                        weights=[[1.0], [0.0]])
    assert _run(loss) == 1.0


def test_numeric_scalar_fetches_are_numpy_scalars_as_in_tensorflow():
    """TF1's Session.run gives a scalar as np.float32/np.int64 (hashable: a dict key, a set
    member); it was a 0-d array. Arrays stay arrays; a fetch of unknown rank that turns out 0-d
    is a scalar too."""
    step = tw.Variable(7, dtype=tw.int64)
    p = tw.placeholder(tw.float32)
    with tw.Session() as s:
        s.run(step.initializer)
        a, b, c, d, e = s.run([tw.constant(3.0), step, tw.constant([1.0]), p * 2, "Const:0"],
                              {p: np.float32(1.5)})
        assert type(a) is np.float32 and type(b) is np.int64 and type(d) is np.float32
        assert type(c) is np.ndarray and c.shape == (1,)
        assert {b: "seen"}[7] == "seen" and e == 3.0
        assert type(s.run(step)) is np.int64 and type(step.eval(session=s)) is np.int64
        assert type(s.run({"x": tw.constant(True)})["x"]) is np.bool_
