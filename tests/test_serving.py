"""SavedModel export/load and the REST model server (TF Serving's API shape) on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import threading

import numpy as np
import pytest

pytest.importorskip("tensorboard.compat.proto.meta_graph_pb2")

import tensorweave as tw  # noqa: E402

W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10.0


def _export(base, version=None):
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        w = tw.Variable(W, name="w")
        probs = tw.nn.softmax(tw.matmul(x, w), name="probs")
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        return tw.saved_model.simple_save(sess, str(base), {"x": x}, {"probs": probs},
                                          version=version)


def _reference(x):
    z = np.asarray(x, np.float32) @ W
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _export_two_io(base):
    g = tw.Graph()
    with g.as_default():
        a = tw.placeholder(tw.float32, [None, 2], name="a")
        k = tw.placeholder(tw.int32, [None], name="k")
        s = tw.reduce_sum(a, 1) * tw.cast(k, tw.float32)
        top = tw.argmax(a, 1)
    with tw.Session(graph=g) as sess:
        return tw.saved_model.simple_save(sess, str(base), {"a": a, "k": k},
                                          {"scaled": s, "top": top})


# --- SavedModel ----------------------------------------------------------------------------------
def test_simple_save_writes_versions_and_load_picks_the_latest(tmp_path):
    p1 = _export(tmp_path / "m")
    p2 = _export(tmp_path / "m")
    assert [os.path.basename(p) for p in (p1, p2)] == ["1", "2"]
    assert sorted(os.listdir(p2)) == ["saved_model.pb", "variables"]
    assert not [d for d in os.listdir(tmp_path / "m") if d.startswith(".tmp")]
    with pytest.raises(FileExistsError):
        _export(tmp_path / "m" / "2")
    pred = tw.saved_model.load(str(tmp_path / "m"))
    assert pred.version == 2
    assert pred.describe()["inputs"] == {"x": {"dtype": "float32", "shape": [None, 3]}}
    x = np.random.RandomState(0).rand(4, 3).astype(np.float32)
    np.testing.assert_allclose(pred({"x": x})["probs"], _reference(x), rtol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        pred({})
    pred.close()
    assert os.path.basename(tw.saved_model.latest_version_dir(str(tmp_path / "m" / "1"))) == "1"


def test_saved_model_is_self_contained_with_variables(tmp_path):
    from tensorweave.saved_model import read_saved_model, read_variables
    path = _export(tmp_path / "m", version=7)
    assert os.path.basename(path) == "7"
    np.testing.assert_array_equal(read_variables(path)["w"], W)
    mg = read_saved_model(path).meta_graphs[0]
    assert list(mg.meta_info_def.tags) == ["serve"]
    assert {n.op for n in mg.graph_def.node} == {"Placeholder", "Const", "Identity", "MatMul",
                                                  "Softmax"}
    with tw.Graph().as_default() as g, tw.Session(graph=g) as sess:
        mg2 = tw.saved_model.loader.load(sess, ["serve"], path)
        sig = mg2.signature_def["serving_default"]
        out = sess.run(sig.outputs["probs"].name, {sig.inputs["x"].name: np.eye(3)})
    np.testing.assert_allclose(out, _reference(np.eye(3)), rtol=1e-6)
    with tw.Graph().as_default() as g, tw.Session(graph=g) as sess:
        with pytest.raises(RuntimeError, match="could not be found"):
            tw.saved_model.loader.load(sess, ["train"], path)


def test_tensorflow_loads_our_saved_model(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    path = _export(tmp_path / "m")
    with tf.compat.v1.Session(graph=tf.Graph()) as s:
        mg = tf.compat.v1.saved_model.loader.load(s, ["serve"], path)
        sig = mg.signature_def["serving_default"]
        out = s.run(sig.outputs["probs"].name, {sig.inputs["x"].name: np.eye(3)})
    np.testing.assert_allclose(out, _reference(np.eye(3)), rtol=1e-6)


# --- server --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tensorweave.serving import ModelServer
    path = _export(tmp_path_factory.mktemp("serve") / "clf")
    srv = ModelServer(path, model_name="clf", port=0, max_body_bytes=4096, max_rows=50,
                      batch_timeout_ms=20.0).start()
    yield srv
    srv.shutdown()


def _request(srv, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


def test_server_listens_on_loopback(server):
    assert server.httpd.server_address[0] == "127.0.0.1"


def test_predict_row_and_columnar_formats(server):
    x = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
    code, out = _request(server, "POST", "/v1/models/clf:predict", {"instances": x})
    assert code == 200
    np.testing.assert_allclose(out["predictions"], _reference(x), rtol=1e-5)
    code, out = _request(server, "POST", "/v1/models/clf:predict",
                         {"instances": [{"x": row} for row in x]})
    assert code == 200 and len(out["predictions"]) == 2
    code, out = _request(server, "POST", "/v1/models/clf:predict", {"inputs": {"x": x}})
    assert code == 200
    np.testing.assert_allclose(out["outputs"], _reference(x), rtol=1e-5)
    code, out = _request(server, "POST", "/v1/models/clf/versions/1:predict", {"inputs": x})
    assert code == 200


def test_status_and_metadata(server):
    code, out = _request(server, "GET", "/v1/models/clf")
    assert code == 200
    assert out["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK",
                                                         "error_message": ""}}
    code, out = _request(server, "GET", "/v1/models/clf/metadata")
    sig = out["metadata"]["signature_def"]["serving_default"]
    assert code == 200 and sig["outputs"]["probs"]["shape"] == [None, 2]
    assert _request(server, "GET", "/v1/models/other")[0] == 404


@pytest.mark.parametrize("body,raw,message", [
    (None, b"{not json", "malformed JSON"),
    (None, b"\xff\xfe", "malformed JSON"),
    ([1, 2], None, "JSON object"),
    ({"instances": [[1.0, 2.0]]}, None, "shape [1, 2] does not match"),
    ({"instances": [[1.0, 2.0, 3.0], [1.0]]}, None, "rectangular"),
    ({"instances": [["a", "b", "c"]]}, None, "expected numbers"),
    ({"instances": [[True, False, True]]}, None, "expected numbers"),
    ({"instances": []}, None, "non-empty"),
    ({"instances": [[1.0, 2.0, 3.0]] * 51}, None, "too many instances"),
    ({"instances": [{"y": [1.0, 2.0, 3.0]}]}, None, "expected ['x']"),
    ({"inputs": {"z": [[1, 2, 3]]}}, None, "keys ['x']"),
    ({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, None, "exactly one"),
    ({"instances": [[1, 2, 3]], "signature_name": "other"}, None, "signature_name"),
    (None, b'{"instances": [' + b"[1.0, 2.0, 3.0]," * 400 + b"[1, 2, 3]]}", "exceeds the limit"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_requests_get_400_and_the_server_keeps_serving(server, body, raw, message):
    code, out = _request(server, "POST", "/v1/models/clf:predict", body, raw)
    assert code == 400
    assert message in out["error"]
    code, out = _request(server, "POST", "/v1/models/clf:predict", {"instances": [[1, 2, 3]]})
    assert code == 200


def test_unknown_model_and_route_are_404(server):
    assert _request(server, "POST", "/v1/models/nope:predict", {"instances": [[1, 2, 3]]})[0] \
        == 404
    assert _request(server, "POST", "/v2/whatever", {"instances": [[1, 2, 3]]})[0] == 404
    assert _request(server, "POST", "/v1/models/clf/versions/9:predict",
                    {"instances": [[1, 2, 3]]})[0] == 404


def test_concurrent_requests_are_batched_and_answered_correctly(server):
    rng = np.random.RandomState(3)
    xs = [rng.rand(1 + i % 3, 3).round(3).tolist() for i in range(12)]
    results = [None] * len(xs)
    barrier = threading.Barrier(len(xs))

    def client(i):
        barrier.wait()
        results[i] = _request(server, "POST", "/v1/models/clf:predict", {"instances": xs[i]})

    before = server.batcher.batches
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for x, (code, out) in zip(xs, results):
        assert code == 200
        np.testing.assert_allclose(out["predictions"], _reference(x), rtol=1e-5)
    assert server.batcher.batches > before  # at least one run served several requests


def test_several_inputs_and_outputs_with_dtype_checks(tmp_path):
    from tensorweave.serving import ModelServer
    srv = ModelServer(_export_two_io(tmp_path / "two"), model_name="two", port=0).start()
    try:
        code, out = _request(srv, "POST", "/v1/models/two:predict",
                             {"instances": [{"a": [1.0, 3.0], "k": 2}, {"a": [5, 4], "k": 1}]})
        assert code == 200
        assert out["predictions"] == [{"scaled": 8.0, "top": 1}, {"scaled": 9.0, "top": 0}]
        code, out = _request(srv, "POST", "/v1/models/two:predict",
                             {"inputs": {"a": [[1.0, 3.0]], "k": [2]}})
        assert code == 200 and out["outputs"] == {"scaled": [8.0], "top": [1]}
        code, out = _request(srv, "POST", "/v1/models/two:predict",
                             {"instances": [{"a": [1.0, 3.0], "k": 2.5}]})
        assert code == 400 and "integers" in out["error"]
        code, out = _request(srv, "POST", "/v1/models/two:predict",
                             {"instances": [[1.0, 3.0]]})
        assert code == 400 and "several inputs" in out["error"]
    finally:
        srv.shutdown()


def test_cli_serve_and_inspect(tmp_path):
    from click.testing import CliRunner

    from tensorweave.cli import main
    path = _export(tmp_path / "m")
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["signatures"]["serving_default"]["inputs"] == {"x": "x:0"}
    assert info["variables"] == [{"name": "w", "shape": [3, 2], "dtype": "float32"}]
    assert info["ops"]["MatMul"] == 1 and info["unsupported_ops"] == []
    r = CliRunner().invoke(main, ["export", path, str(tmp_path / "g.pbtxt")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "g.pbtxt")])
    assert r.exit_code == 0 and "outputs: ['probs']" in r.output
    assert "inputs: [{'name': 'x:0', 'dtype': 'float32', 'shape': [None, 3]}]" in r.output
