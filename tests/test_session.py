"""Session.run: fetch structures, feeds, partial execution, plan caching, default sessions."""

import collections

import numpy as np
import pytest

import tensorweave as tw


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()
    yield


def test_nested_fetches_keep_their_structure():
    a = tw.constant(1.0, name="a")
    b = tw.constant([2.0, 3.0], name="b")
    Pair = collections.namedtuple("Pair", "x y")
    with tw.Session() as sess:
        out = sess.run({"first": [a, (b, a)], "pair": Pair(a, b), "name": "a:0"})
    assert out["first"][0] == 1.0
    assert isinstance(out["first"][1], tuple)
    np.testing.assert_array_equal(out["first"][1][0], [2.0, 3.0])
    assert isinstance(out["pair"], Pair) and out["pair"].x == 1.0
    assert out["name"] == 1.0


def test_fetching_an_op_returns_none_and_runs_it():
    v = tw.Variable(0.0)
    inc = tw.assign_add(v, 1.0).op
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(inc) is None
        assert sess.run([inc, "Variable/read:0"])[0] is None
        assert sess.run(v) == 2.0


def test_feed_intermediate_tensor_skips_its_producer():
    x = tw.placeholder(tw.float32, [], name="x")
    y = x * 2.0
    z = y + 1.0
    with tw.Session() as sess:
        # x is never fed: feeding y must prune x's subgraph entirely
        assert sess.run(z, {y: 10.0}) == 11.0


def test_partial_execution_runs_only_needed_ops():
    v = tw.Variable(0.0)
    inc = tw.assign_add(v, 1.0)
    other = tw.constant(5.0) + 1.0
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(other) == 6.0
        assert sess.run(v) == 0.0  # inc was not run
        sess.run(inc)
        assert sess.run(v) == 1.0


def test_plans_are_cached_per_signature():
    x = tw.placeholder(tw.float32, [2])
    y = x + 1.0
    with tw.Session() as sess:
        sess.run(y, {x: [1, 2]})
        sess.run(y, {x: [3, 4]})
        assert len(sess._plans) == 1
        sess.run([y, x], {x: [3, 4]})
        assert len(sess._plans) == 2


def test_control_dependencies_order_updates():
    v = tw.Variable(1.0)
    with tw.control_dependencies([tw.assign(v, 5.0)]):
        y = tw.identity(tw.constant(0.0))
    with tw.Session() as sess:
        sess.run(v.initializer)
        sess.run(y)
        assert sess.run(v) == 5.0


def test_default_session_eval_and_run():
    x = tw.placeholder(tw.float32, [])
    y = x * 3.0
    v = tw.Variable(2.0)
    with tw.Session():
        v.initializer.run()
        assert y.eval({x: 2.0}) == 6.0
        assert v.eval() == 2.0
        assert tw.get_default_session() is not None
    assert tw.get_default_session() is None
    sess = tw.Session()
    with sess.as_default():
        assert y.eval(feed_dict={x: 1.0}) == 3.0
    assert y.eval(feed_dict={x: 1.0}, session=sess) == 3.0
    sess.close()
    with pytest.raises(ValueError, match="default session"):
        y.eval({x: 1.0})


def test_interactive_session_installs_itself():
    c = tw.constant(4.0)
    sess = tw.InteractiveSession()
    try:
        assert c.eval() == 4.0
    finally:
        sess.close()
    assert tw.get_default_session() is None


def test_fetched_variable_values_are_copies():
    v = tw.Variable(np.zeros(3, np.float32))
    inc = tw.assign_add(v, np.ones(3, np.float32))
    with tw.Session() as sess:
        sess.run(v.initializer)
        before = sess.run(v)
        read = sess.run(v.value())
        sess.run(inc)
        np.testing.assert_array_equal(before, 0)
        np.testing.assert_array_equal(read, 0)


def test_graph_argument_and_closed_session():
    g = tw.Graph()
    with g.as_default():
        c = tw.constant(1.0)
    sess = tw.Session(graph=g)
    assert sess.run(c) == 1.0
    sess.close()
    with pytest.raises(RuntimeError, match="closed Session"):
        sess.run(c)


def test_names_and_scopes_are_unique():
    with tw.name_scope("layer"):
        a = tw.constant(1.0, name="c")
        b = tw.constant(1.0, name="c")
    with tw.name_scope("layer"):
        c = tw.constant(1.0, name="c")
    assert (a.name, b.name, c.name) == ("layer/c:0", "layer/c_1:0", "layer_1/c:0")
    with tw.name_scope("outer"):
        with tw.name_scope("abs/"):
            d = tw.constant(1.0, name="d")
    assert d.op.name == "abs/d"


def test_device_is_recorded():
    with tw.device("/job:ps/task:1"):
        with tw.device("/cpu:0"):
            a = tw.constant(1.0)
    assert a.device == "/job:ps/task:1/device:CPU:0"
    assert a.op.device == a.device


def test_collections():
    v = tw.Variable(1.0, name="v")
    u = tw.Variable(1.0, name="u", trainable=False)
    assert tw.global_variables() == [v, u]
    assert tw.trainable_variables() == [v]
    assert tw.get_collection(tw.GraphKeys.GLOBAL_VARIABLES, scope="u") == [u]


def test_finalize_refuses_new_ops():
    g = tw.Graph()
    with g.as_default():
        tw.constant(1.0)
        g.finalize()
        with pytest.raises(RuntimeError, match="finalized"):
            tw.constant(2.0)


def test_operation_and_tensor_properties():
    x = tw.placeholder(tw.float32, [None, 3], name="x")
    y = tw.matmul(x, tw.ones([3, 2]), name="mm")
    op = y.op
    assert op.type == "MatMul" and op.name == "mm"
    assert op.inputs[0] is x and op.outputs[0] is y
    assert op.get_attr("transpose_a") is False
    assert y.shape.as_list() == [None, 2] and y.dtype == tw.float32
    assert y.value_index == 0 and y.name == "mm:0"
    assert op in x.consumers()
    assert "test_session.py" in op.location
    assert tw.get_default_graph().get_tensor_by_name("mm:0") is y
    assert tw.get_default_graph().get_operation_by_name("mm") is op


def test_gradient_reaches_a_variable_through_every_read():
    v = tw.Variable(3.0)
    y = v.value() * v.read_value()  # two different reads of the same variable
    g, = tw.gradients(y, [v])
    with tw.Session() as sess:
        sess.run(v.initializer)
        assert sess.run(g) == 6.0


def test_close_wakes_a_blocked_dequeue_with_a_thread_pool():
    # regression: close() shut the inter-op pool down before closing the queue it waited on
    import threading

    q = tw.FIFOQueue(2, [tw.float32], shapes=[[]])
    d = q.dequeue()
    sess = tw.Session(config=tw.ConfigProto(inter_op_parallelism_threads=2))
    seen = []

    def blocked():
        try:
            sess.run(d)
        except tw.errors.OpError as e:
            seen.append(type(e).__name__)

    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    import time
    time.sleep(0.3)
    sess.close()
    t.join(10)
    assert not t.is_alive() and seen == ["CancelledError"]
