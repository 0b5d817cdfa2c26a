"""GraphDef interchange: attr and tensor conversion, ours -> GraphDef -> ours, freezing, and
(when TensorFlow is installed) our graphs running in TensorFlow and TensorFlow's here.

``MODELS`` is the table of inference graphs that test_onnx.py reuses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("tensorboard.compat.proto.graph_pb2")

import tensorweave as tw  # noqa: E402
from tensorweave.framework import graph_def as gdef  # noqa: E402


@dataclass
class Model:
    name: str
    build: object  # () -> (feeds {placeholder: array}, [output tensors])
    tf_ok: bool = True  # TensorFlow's CPU kernels cover it (NCHW-free, etc.)

    def __str__(self):
        return self.name


def _rng():
    return np.random.RandomState(0)


def _var(shape, name):
    return tw.Variable(_rng().standard_normal(shape).astype(np.float32) * 0.5, name=name)


def mlp():
    x = tw.placeholder(tw.float32, [None, 6], name="x")
    h = tw.nn.relu(tw.nn.bias_add(tw.matmul(x, _var([6, 5], "w1")), _var([5], "b1")))
    logits = tw.matmul(h, _var([4, 5], "w2"), transpose_b=True)
    probs = tw.nn.softmax(logits, name="probs")
    return {x: _rng().standard_normal((3, 6)).astype(np.float32)}, [probs]


def cnn():
    x = tw.placeholder(tw.float32, [None, 8, 8, 2], name="images")
    with tw.name_scope("conv1"):
        c = tw.nn.relu(tw.nn.conv2d(x, _var([3, 3, 2, 4], "filter"), [1, 2, 2, 1], "SAME"))
    p = tw.nn.max_pool(c, [1, 2, 2, 1], [1, 1, 1, 1], "SAME")
    a = tw.nn.avg_pool(c, [1, 3, 3, 1], [1, 1, 1, 1], "VALID")
    c2 = tw.nn.conv2d(p, _var([2, 2, 4, 3], "f2"), [1, 1, 1, 1], "VALID")
    flat = tw.concat([tw.reshape(c2, [-1, 27]), tw.reshape(a, [-1, 16])], 1)
    out = tw.nn.tanh(tw.matmul(flat, _var([43, 5], "dense")), name="out")
    return {x: _rng().standard_normal((2, 8, 8, 2)).astype(np.float32)}, [out]


def elementwise():
    x = tw.placeholder(tw.float32, [None, 4], name="x")
    y = tw.placeholder(tw.float32, [None, 4], name="y")
    a = tw.sigmoid(x) * 2.0 - tw.tanh(y) / (tw.exp(-tw.abs(x)) + 1.0)
    b = tw.maximum(a, tw.square(y)) + tw.rsqrt(tw.square(x) + 1.0)
    c = tw.squared_difference(b, tw.minimum(x, y))
    m = tw.reduce_mean(c, axis=1, keepdims=True) + tw.reduce_sum(c, axis=[0, 1])
    s = tw.stack([tw.reduce_max(c, 1), tw.squeeze(tw.expand_dims(m, 2), [2])[:, 0]], axis=1)
    t = tw.transpose(tw.concat([c, m, s], axis=1))
    out = tw.add_n([tw.reduce_sum(tw.nn.log_softmax(tw.transpose(t)), 1, keepdims=True),
                    tw.nn.relu6(c * 3.0)[:, 1:2],
                    tw.nn.leaky_relu(m, alpha=0.1)], name="out")
    r = _rng()
    return {x: r.standard_normal((3, 4)).astype(np.float32),
            y: r.standard_normal((3, 4)).astype(np.float32)}, [out]


def batch_norm_inference():
    x = tw.placeholder(tw.float32, [None, 4, 4, 3], name="x")
    r = _rng()
    y, _, _ = tw.nn.fused_batch_norm(
        x, _var([3], "gamma"), _var([3], "beta"), mean=tw.constant(r.rand(3).astype(np.float32)),
        variance=tw.constant(r.rand(3).astype(np.float32) + 0.5), epsilon=1e-3,
        is_training=False)
    out = tw.nn.relu(y, name="out")
    return {x: r.standard_normal((2, 4, 4, 3)).astype(np.float32)}, [out]


def depthwise_pad():
    x = tw.placeholder(tw.float32, [None, 5, 5, 2], name="x")
    p = tw.pad(x, [[0, 0], [1, 1], [2, 0], [0, 0]])
    d = tw.nn.depthwise_conv2d(p, _var([3, 3, 2, 2], "dw"), [1, 1, 1, 1], "SAME")
    out = tw.identity(tw.nn.elu(d), name="out")
    return {x: _rng().standard_normal((2, 5, 5, 2)).astype(np.float32)}, [out]


def gather_argmax():
    x = tw.placeholder(tw.float32, [None, 5], name="x")
    ids = tw.placeholder(tw.int32, [None], name="ids")
    table = _var([7, 5], "table")
    e = tw.gather(table, ids) + x
    best = tw.argmax(e, axis=1, name="best")
    score = tw.cast(best, tw.float32) + tw.reduce_sum(tw.tile(e, [1, 2]), 1)
    return {x: _rng().standard_normal((4, 5)).astype(np.float32),
            ids: np.array([0, 6, 3, 3], np.int32)}, [best, tw.identity(score, name="score")]


MODELS = [Model("mlp", mlp), Model("cnn", cnn), Model("elementwise", elementwise),
          Model("batch_norm_inference", batch_norm_inference),
          Model("depthwise_pad", depthwise_pad), Model("gather_argmax", gather_argmax)]


def run_model(model):
    """(graph, session, feeds, outputs, reference values); the caller closes the session."""
    g = tw.Graph()
    with g.as_default():
        feeds, outs = model.build()
        init = tw.global_variables_initializer()
    sess = tw.Session(graph=g)
    sess.run(init)
    return g, sess, feeds, outs, sess.run(outs, feeds)


def frozen(sess, outs, feeds):
    names = sorted({t.op.name for t in outs} | {t.op.name for t in feeds})
    return gdef.convert_variables_to_constants(sess, sess.graph.as_graph_def(), names)


# --- values <-> protos ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    np.arange(6, dtype=np.float32).reshape(2, 3), np.array(3.5, np.float64),
    np.array([[1, -2]], np.int64), np.array([True, False]), np.array([1.5, -2], np.float16),
    np.array([7, 8], np.uint8), np.array([1 + 2j], np.complex64),
    np.array([b"ab", b"\xff"], dtype=object), np.zeros((0, 3), np.int32)], ids=repr)
def test_tensor_proto_round_trip(value):
    back = gdef.tensor_proto_to_ndarray(gdef.ndarray_to_tensor_proto(value))
    assert back.shape == value.shape and back.dtype == value.dtype
    assert np.array_equal(back, value)


def test_tensor_proto_short_value_list_repeats_last_value():
    from tensorboard.compat.proto import tensor_pb2
    p = tensor_pb2.TensorProto(dtype=1, float_val=[1.0, 2.0])
    p.tensor_shape.dim.add(size=4)
    assert gdef.tensor_proto_to_ndarray(p).tolist() == [1.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize("value", [tw.float32, tw.int64, tw.TensorShape([None, 3]),
                                   tw.TensorShape(None), True, 7, 2.5, "SAME", [1, 2, 2, 1],
                                   [tw.float32, tw.int32], [], ["a", "b"], [0.5, 1.5]],
                         ids=repr)
def test_attr_value_round_trip(value):
    back = gdef.attr_value_to_python(gdef.python_to_attr_value(value))
    if isinstance(value, tw.TensorShape):
        assert back.as_list() == value.as_list() if value.ndims is not None \
            else back.ndims is None
    else:
        assert back == value and type(back) is type(value)


# --- ours -> GraphDef -> ours ---------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS, ids=str)
def test_round_trip_gives_same_outputs(model):
    g, sess, feeds, outs, ref = run_model(model)
    gd = g.as_graph_def()
    sess.close()
    g2 = tw.Graph()
    with g2.as_default():
        tw.import_graph_def(gd.SerializeToString(), name="")
        init = g2.get_operation_by_name("init")
        with tw.Session(graph=g2) as s2:
            s2.run(init)
            got = s2.run([t.name for t in outs], {t.name: v for t, v in feeds.items()})
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    # names, devices and attrs survive
    ops2 = {op.name: op for op in g2.get_operations()}
    for op in g.get_operations():
        assert ops2[op.name].type == op.type
        assert set(op.attrs) <= set(ops2[op.name].attrs)


@pytest.mark.parametrize("model", MODELS, ids=str)
def test_frozen_graph_runs_without_variables(model):
    _, sess, feeds, outs, ref = run_model(model)
    fz = frozen(sess, outs, feeds)
    sess.close()
    assert not [n.name for n in fz.node if n.op == "VariableV2"]
    with tw.Graph().as_default():
        got_t = tw.import_graph_def(fz, return_elements=[t.name for t in outs])
        with tw.Session() as s2:
            got = s2.run(got_t, {"import/" + t.name: v for t, v in feeds.items()})
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_export_adds_tensorflow_type_attrs_and_shapes():
    g = tw.Graph()
    with g.as_default(), tw.device("/cpu:0"):
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        with tw.name_scope("layer"):
            y = tw.reshape(tw.concat([x, x], axis=1), tw.constant([-1], tw.int64))
    nodes = {n.name: n for n in g.as_graph_def(add_shapes=True).node}
    concat = nodes[[n for n in nodes if n.startswith("layer/concat")][0]]
    assert concat.attr["T"].type == 1 and concat.attr["N"].i == 2
    assert concat.attr["Tidx"].type == 3
    reshape = nodes[y.op.name]
    assert reshape.attr["T"].type == 1 and reshape.attr["Tshape"].type == 9  # int64 shape
    assert [d.size for d in concat.attr["_output_shapes"].list.shape[0].dim] == [-1, 6]
    assert "CPU:0" in nodes["x"].device


def test_import_input_map_and_return_elements():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None], name="x")
        tw.multiply(x, 2.0, name="y")
    gd = g.as_graph_def()
    with tw.Graph().as_default():
        z = tw.constant([1.0, 2.0])
        y, op = tw.import_graph_def(gd, input_map={"x:0": z}, return_elements=["y:0", "y"],
                                    name="net")
        assert y.name == "net/y:0" and op is y.op
        with tw.Session() as sess:
            assert sess.run(y).tolist() == [2.0, 4.0]
        y2, = tw.import_graph_def(gd, input_map={"x": z}, return_elements=["y:0"])
        assert y2.name == "import/y:0"
        with pytest.raises(ValueError, match="input_map key 'nope:0'"):
            tw.import_graph_def(gd, input_map={"nope:0": z})


def test_unsupported_ops_are_listed_in_one_error():
    from tensorboard.compat.proto import graph_pb2
    gd = graph_pb2.GraphDef()
    gd.node.add(name="a", op="Placeholder").attr["dtype"].type = 1
    gd.node.add(name="b", op="FancyOp", input=["a"])
    gd.node.add(name="c", op="OtherOp", input=["b"])
    gd.node.add(name="d", op="FancyOp", input=["c"])
    with tw.Graph().as_default():
        with pytest.raises(ValueError, match="FancyOp, OtherOp") as e:
            tw.import_graph_def(gd)
        assert "Placeholder" not in str(e.value)


def test_unordered_graph_def_imports_and_cycles_are_reported():
    from tensorboard.compat.proto import graph_pb2
    g = tw.Graph()
    with g.as_default():
        a = tw.constant(3.0, name="a")
        tw.identity(tw.square(a, name="sq"), name="out")
    gd = g.as_graph_def()
    shuffled = graph_pb2.GraphDef()
    shuffled.node.extend(reversed(gd.node))
    with tw.Graph().as_default():
        out, = tw.import_graph_def(shuffled, return_elements=["out:0"])
        with tw.Session() as sess:
            assert sess.run(out) == 9.0
    shuffled.node[0].input.append("out")  # out -> ... -> out
    shuffled.node[-1].input.append("^out")
    with tw.Graph().as_default(), pytest.raises(ValueError, match="cycle"):
        tw.import_graph_def(shuffled)


def test_write_graph_text_and_binary(tmp_path):
    g = tw.Graph()
    with g.as_default():
        tw.add(tw.placeholder(tw.float32, name="x"), 1.0, name="y")
    p_txt = tw.train.write_graph(g, str(tmp_path), "g.pbtxt")
    p_bin = tw.train.write_graph(g.as_graph_def(), str(tmp_path / "sub"), "g.pb", as_text=False)
    assert 'op: "AddV2"' in open(p_txt).read()
    for p in (p_txt, p_bin):
        assert [n.name for n in gdef.read_graph_def(p).node] == [op.name for op in
                                                                 g.get_operations()]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_session_graph_def_property():
    g = tw.Graph()
    with g.as_default():
        tw.constant(1.0, name="c")
    with tw.Session(graph=g) as sess:
        assert [n.name for n in sess.graph_def.node] == ["c"]


def test_remove_training_nodes_keeps_outputs():
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [2], name="x")
        tw.identity(tw.identity(x) * 2.0, name="y")
    gd = gdef.remove_training_nodes(g.as_graph_def(), protected_nodes=["y"])
    assert [n.op for n in gd.node].count("Identity") == 1
    with tw.Graph().as_default():
        y2, = tw.import_graph_def(gd, return_elements=["y:0"], name="")
        with tw.Session() as sess:
            assert sess.run(y2, {"x:0": [1.0, 2.0]}).tolist() == [2.0, 4.0]


# --- with TensorFlow (optional) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("model", [m for m in MODELS if m.tf_ok], ids=str)
def test_our_frozen_graph_runs_in_tensorflow(tf, model):
    _, sess, feeds, outs, ref = run_model(model)
    fz = frozen(sess, outs, feeds)
    sess.close()
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(tf.compat.v1.GraphDef.FromString(fz.SerializeToString()), name="")
        with tf.compat.v1.Session(graph=g) as s:
            got = s.run([t.name for t in outs], {t.name: v for t, v in feeds.items()})
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_tensorflow_frozen_graph_runs_here(tf):
    v1 = tf.compat.v1
    rng = np.random.RandomState(1)
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 5], name="in")
        w1 = v1.get_variable("w1", [5, 8], use_resource=False)
        b1 = v1.get_variable("b1", [8], use_resource=False,
                             initializer=v1.constant_initializer(0.1))
        h = tf.add(tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w1), b1)), 1.0)
        h = tf.reshape(h, [-1, 2, 4, 1])
        k = v1.get_variable("k", [2, 2, 1, 3], use_resource=False)
        h = tf.nn.max_pool2d(tf.nn.conv2d(h, k, [1, 1, 1, 1], "SAME"), 2, 1, "VALID")
        h = tf.reshape(h, [-1, 9])
        out = tf.nn.softmax(tf.concat([h, tf.tanh(h) * 2.0], axis=1), name="out")
        xv = rng.rand(3, 5).astype(np.float32)
        with v1.Session(graph=g) as s:
            s.run(v1.global_variables_initializer())
            ref = s.run(out, {x: xv})
            fz = v1.graph_util.convert_variables_to_constants(s, g.as_graph_def(), ["out"])
    with tw.Graph().as_default():
        o, = tw.import_graph_def(fz.SerializeToString(), return_elements=["out:0"])
        with tw.Session() as sess:
            got = sess.run(o, {"import/in:0": xv})
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_tensorflow_graph_with_unknown_ops_lists_them(tf):
    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(tf.math.lgamma(x) + tf.math.digamma(x), name="y")
    with tw.Graph().as_default():
        with pytest.raises(ValueError, match="Digamma, Lgamma"):
            tw.import_graph_def(g.as_graph_def().SerializeToString())


def test_tf_op_table_covers_every_registered_op_tensorflow_knows(tf):
    from tensorflow.python.framework import op_def_registry

    from tensorweave.framework.registry import registered_ops
    from tensorweave.framework.tf_op_table import TF_OPS
    stale = sorted(t for t in registered_ops()
                   if t not in TF_OPS and op_def_registry.get(t) is not None)
    assert not stale, f"run scripts/gen_tf_op_table.py: the table lacks {stale}"
