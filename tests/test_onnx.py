"""tw.onnx.export: the inference graphs of test_graph_def.MODELS run in onnxruntime with the
outputs tensorweave computes."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tensorboard.compat.proto.graph_pb2")

import tensorweave as tw  # noqa: E402
from test_graph_def import MODELS, run_model  # noqa: E402


def _run_onnx(path, feeds):
    so = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return so, so.run(None, {t.op.name: v for t, v in feeds.items()})


@pytest.mark.parametrize("model", MODELS, ids=str)
def test_onnxruntime_matches_tensorweave(tmp_path, model):
    _, sess, feeds, outs, ref = run_model(model)
    path = tmp_path / f"{model.name}.onnx"
    m = tw.onnx.export(sess, outs, path)
    sess.close()
    onnx.checker.check_model(onnx.load(str(path)))
    assert not [i for i in m.graph.initializer if not any(i.name in n.input
                                                          for n in m.graph.node)]
    so, got = _run_onnx(path, feeds)
    # graph inputs are the placeholders, named after their ops, in creation order
    assert [i.name for i in so.get_inputs()] == [t.op.name for t in
                                                 sorted(feeds, key=lambda t: t.op._id)]
    for a, b in zip(got, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dynamic_batch_dimension(tmp_path):
    _, sess, feeds, outs, _ = run_model(MODELS[0])  # mlp, x: [None, 6]
    tw.onnx.export(sess, {"probs": outs[0]}, tmp_path / "m.onnx")
    x = np.random.RandomState(5).rand(11, 6).astype(np.float32)
    want = sess.run(outs[0], {next(iter(feeds)): x})
    sess.close()
    so = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert so.get_outputs()[0].name == "probs"
    np.testing.assert_allclose(so.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)


def test_unsupported_ops_are_listed_in_one_error(tmp_path):
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        y = tw.cumsum(tw.nn.relu(x), axis=1) + tw.log1p(tw.abs(x))
    with tw.Session(graph=g) as sess:
        with pytest.raises(ValueError, match="Cumsum, Log1p"):
            tw.onnx.export(sess, [y], tmp_path / "m.onnx")


def test_placeholders_outside_inputs_are_reported(tmp_path):
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [2], name="x")
        z = tw.placeholder(tw.float32, [2], name="z")
        y = x * z
    with tw.Session(graph=g) as sess:
        with pytest.raises(ValueError, match=r"\['z'\]"):
            tw.onnx.export(sess, [y], tmp_path / "m.onnx", inputs=[x])


def test_training_mode_batch_norm_is_refused(tmp_path):
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 2, 2, 3], name="x")
        y, _, _ = tw.nn.fused_batch_norm(x, tw.ones([3]), tw.zeros([3]), is_training=True)
    with tw.Session(graph=g) as sess:
        with pytest.raises(ValueError, match="training mode"):
            tw.onnx.export(sess, [y], tmp_path / "m.onnx")


def test_cli_export_saved_model_to_onnx(tmp_path):
    from click.testing import CliRunner

    from tensorweave.cli import main
    _, sess, feeds, outs, ref = run_model(MODELS[1])  # cnn
    x = next(iter(feeds))
    tw.saved_model.simple_save(sess, str(tmp_path / "cnn"), {"images": x}, {"out": outs[0]})
    sess.close()
    r = CliRunner().invoke(main, ["export", str(tmp_path / "cnn"), str(tmp_path / "cnn.onnx")])
    assert r.exit_code == 0, r.output
    so = ort.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
    got = so.run(None, {"images": feeds[x]})[0]
    np.testing.assert_allclose(got, ref[0], rtol=1e-5, atol=1e-5)
