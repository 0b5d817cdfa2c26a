"""Every error the core promises: it says what, where, and what to do, and loses nothing."""

import numpy as np
import pytest

import tensorweave as tw


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()
    yield


def test_shape_mismatch_at_construction_names_both_shapes():
    a = tw.placeholder(tw.float32, [3, 4])
    b = tw.placeholder(tw.float32, [5, 2])
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 2\)"):
        tw.matmul(a, b)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 2\)"):
        _ = a + b


def test_missing_feed_names_placeholder_and_its_line():
    x = tw.placeholder(tw.float32, [None, 2], name="images")  # the line the error must name
    line = __import__("inspect").currentframe().f_lineno - 1
    y = x * 2.0
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError) as ei:
            sess.run(y)
    msg = str(ei.value)
    assert "images" in msg and f"test_errors.py:{line}" in msg
    assert ei.value.op is x.op


def test_uninitialized_variable_names_itself():
    v = tw.Variable(tw.zeros([2]), name="weights")
    with tw.Session() as sess:
        with pytest.raises(tw.errors.FailedPreconditionError, match="uninitialized value weights"):
            sess.run(v + 1.0)
        sess.run(v.initializer)  # the session is still usable
        np.testing.assert_array_equal(sess.run(v + 1.0), [1.0, 1.0])


def test_fetch_from_other_graph_says_so():
    g = tw.Graph()
    with g.as_default():
        c = tw.constant(1.0)
    with tw.Session() as sess:
        with pytest.raises(ValueError, match="another tw.Graph"):
            sess.run(c)


def test_bad_feed_shape_and_dtype_say_which():
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    n = tw.placeholder(tw.int32, [2], name="n")
    with tw.Session() as sess:
        with pytest.raises(ValueError, match=r"shape \(2, 4\).*'x:0'.*\(\?, 3\)"):
            sess.run(x, {x: np.zeros((2, 4))})
        with pytest.raises(TypeError, match="'n:0'.*int32"):
            sess.run(n, {n: [1.5, 2.0]})
        with pytest.raises(TypeError, match="'x:0'"):
            sess.run(x, {x: [["a", "b", "c"]]})
        # the session still works after bad feeds
        assert sess.run(n, {n: [1, 2]}).tolist() == [1, 2]


def test_runtime_kernel_error_names_op_and_line():
    x = tw.placeholder(tw.float32, None, name="x")
    y = tw.placeholder(tw.float32, None, name="y")
    z = tw.matmul(x, y, name="product")
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="product.*MatMul.*test_errors"):
            sess.run(z, {x: np.ones((2, 3)), y: np.ones((4, 5))})


def test_unknown_fetch_names():
    with tw.Session() as sess:
        with pytest.raises(KeyError, match="nope"):
            sess.run("nope:0")
        with pytest.raises(TypeError):
            sess.run(None)


def test_no_gradient_registered_is_a_clear_error():
    from tensorweave.framework.registry import register_op
    from tensorweave.ops.op_util import make
    if "TestNoGrad" not in tw.framework.registry._OPS:
        register_op("TestNoGrad")(lambda op: [(op.inputs[0].dtype, op.inputs[0].shape)])
    x = tw.placeholder(tw.float32, [2])
    y = make("TestNoGrad", [x], {})
    with pytest.raises(LookupError, match="No gradient defined.*TestNoGrad"):
        tw.gradients(y, [x])


def test_bool_of_tensor_refused():
    with pytest.raises(TypeError, match="Python bool"):
        bool(tw.constant(True))
