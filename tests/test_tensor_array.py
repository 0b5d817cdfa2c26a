"""``tw.TensorArray``: TF1's write-per-iteration arrays, through ``tw.while_loop`` and its
gradients (compared with the same computation unrolled), and the array API."""

import numpy as np
import pytest

import tensorweave as tw

R = np.random.default_rng(0)
XS = R.standard_normal((5, 2, 3)).astype(np.float32)
W = (R.standard_normal((3, 3)) * 0.5).astype(np.float32)


pytestmark = pytest.mark.usefixtures("fresh_graph")


@pytest.mark.parametrize("element_shape", [None, [2, 3]])
def test_rnn_written_in_a_while_loop_equals_the_unrolled_one(element_shape):
    n = XS.shape[0]
    xs = tw.constant(XS)
    w = tw.Variable(W)
    h0 = tw.zeros([2, 3])
    ta = tw.TensorArray(tw.float32, size=n, element_shape=element_shape)

    def body(t, h, ta):
        h = tw.tanh(tw.matmul(h, w) + xs[t])
        return t + 1, h, ta.write(t, h)

    _, _, ta = tw.while_loop(lambda t, h, ta: t < n, body, [0, h0, ta])
    hs = ta.stack()
    assert hs.shape.as_list() == [5, 2, 3]
    (g,) = tw.gradients(tw.reduce_sum(hs * hs), [w])
    h, outs = h0, []
    for t in range(n):
        h = tw.tanh(tw.matmul(h, w) + xs[t])
        outs.append(h)
    ref = tw.stack(outs)
    (g_ref,) = tw.gradients(tw.reduce_sum(ref * ref), [w])
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        got, want, gg, gw = s.run([hs, ref, g, g_ref])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(gg, gw, rtol=1e-5, atol=1e-6)


def test_reading_an_unstacked_array_in_a_loop_and_its_gradient():
    xs = tw.constant(XS)
    inp = tw.TensorArray(tw.float32, size=5).unstack(xs)
    _, total = tw.while_loop(lambda t, acc: t < 5, lambda t, acc: (t + 1, acc + inp.read(t)),
                             [0, tw.zeros([2, 3])])
    (g,) = tw.gradients(tw.reduce_sum(total * total), [xs])
    with tw.Session() as s:
        tv, gv = s.run([total, g])
    np.testing.assert_allclose(tv, XS.sum(0), rtol=1e-6)
    np.testing.assert_allclose(gv, np.broadcast_to(2 * XS.sum(0), XS.shape), rtol=1e-5)


def test_the_array_api_outside_loops():
    ta = tw.TensorArray(tw.float32, size=4, element_shape=[2])
    ta = ta.write(0, [1.0, 2.0]).write(3, [7.0, 8.0])
    ta = ta.scatter([1, 2], [[3.0, 4.0], [5.0, 6.0]])
    ints = tw.TensorArray(tw.int32, size=3).unstack([[1, 2], [3, 4], [5, 6]])
    got = dict(stack=ta.stack(), read=ta.read(2), gather=ta.gather([3, 0]), concat=ta.concat(),
               size=ta.size(), iread=ints.read(1), igather=ints.gather([2, 2]))
    with tw.Session() as s:
        got = s.run(got)
    assert got["stack"].tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert got["read"].tolist() == [5, 6] and got["gather"].tolist() == [[7, 8], [1, 2]]
    assert got["concat"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8] and got["size"] == 4
    assert got["iread"].tolist() == [3, 4] and got["igather"].tolist() == [[5, 6], [5, 6]]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="size=.*dynamic_size"):
        tw.TensorArray(tw.float32)
    ta = tw.TensorArray(tw.float32, size=3, element_shape=[2])
    with pytest.raises(ValueError, match="not compatible"):
        ta.write(0, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="nothing was written"):
        tw.TensorArray(tw.float32, size=3).read(0)
    with pytest.raises(ValueError, match="has 2 rows but the array has size 3"):
        tw.TensorArray(tw.float32, size=3).unstack(tw.zeros([2, 4]))
    with pytest.raises(TypeError, match="must return a TensorArray"):
        tw.while_loop(lambda t, ta: t < 2, lambda t, ta: (t + 1, tw.zeros([3, 2])),
                      [0, tw.TensorArray(tw.float32, size=3, element_shape=[2])])


def test_dynamic_size_grows_to_the_largest_index_written():
    n = tw.placeholder(tw.int32, [])
    w = tw.Variable(W)
    ta = tw.TensorArray(tw.float32, size=0, dynamic_size=True)

    def body(t, h, ta):  # a decoder of run-time length n
        h = tw.tanh(tw.matmul(h, w) + 0.1)
        return t + 1, h, ta.write(t, h)

    _, _, ta = tw.while_loop(lambda t, h, ta: t < n, body, [0, tw.ones([2, 3]), ta])
    hs = ta.stack()
    assert hs.shape.as_list() == [None, 2, 3]
    (g,) = tw.gradients(tw.reduce_sum(hs), [w])
    sparse = tw.TensorArray(tw.float32, size=0, dynamic_size=True).write(3, [1.0, 2.0])
    with tw.Session() as s:
        s.run(tw.global_variables_initializer())
        h4, g4, size4 = s.run([hs, g, ta.size()], {n: 4})
        h2 = s.run(hs, {n: 2})
        got_sparse = s.run([sparse.stack(), sparse.size()])
    assert h4.shape == (4, 2, 3) and size4 == 4 and h2.shape == (2, 2, 3)
    np.testing.assert_allclose(h4[:2], h2)
    assert np.abs(g4).sum() > 0
    assert got_sparse[0].tolist() == [[0, 0], [0, 0], [0, 0], [1, 2]] and got_sparse[1] == 4


def _ta_program(lib, dynamic=False):
    """The same TF1 source for both libraries: an RNN written into a TensorArray."""
    g = lib.Graph()
    with g.as_default():
        xs = lib.constant(XS)
        w = lib.Variable(W)
        ta = lib.TensorArray(lib.float32, size=0 if dynamic else 5, dynamic_size=dynamic)

        def body(t, h, ta):
            h = lib.tanh(lib.matmul(h, w) + xs[t])
            return t + 1, h, ta.write(t, h)

        _, _, ta = lib.while_loop(lambda t, h, ta: t < 5, body, [0, lib.zeros([2, 3]), ta])
        hs = ta.stack()
        (gw,) = lib.gradients(lib.reduce_sum(hs * hs), [w])
        init = lib.global_variables_initializer()
    with lib.Session(graph=g) as s:
        s.run(init)
        return s.run([hs, gw])


def test_tensorflow_gives_the_same_numbers():
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow").compat.v1
    tf.disable_eager_execution()
    for dynamic in (False, True):
        ours, theirs = _ta_program(tw, dynamic), _ta_program(tf, dynamic)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
