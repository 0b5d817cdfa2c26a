"""A model server with TensorFlow Serving's REST API, over a SavedModel directory.

    POST /v1/models/NAME:predict            {"instances": [...]} (rows) or {"inputs": ...} (columns)
    POST /v1/models/NAME/versions/V:predict the same, checking the loaded version
    GET  /v1/models/NAME                    version status
    GET  /v1/models/NAME/metadata           the serving signature

Requests are parsed and checked on the HTTP threads (``ThreadingHTTPServer``); a single
batcher thread collects the requests that arrive within ``batch_timeout_ms`` (up to
``max_batch_size`` rows), concatenates compatible ones along the batch dimension, runs one
``Session.run`` and splits the results. Bad requests get a 400 with ``{"error": "..."}``; the
server keeps serving.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

__all__ = ["ModelServer", "BadRequest"]

_PREDICT = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?:predict$")
_STATUS = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                     r"(?P<meta>/metadata)?$")


class BadRequest(ValueError):
    """A request the client must fix (HTTP 400)."""


class _NotFound(Exception):
    pass


# --- request decoding ------------------------------------------------------------------------------
def _to_array(value, dtype, shape, what):
    """``value`` as an array of the placeholder's dtype, checked against its static shape."""
    try:
        arr = np.asarray(value)
    except ValueError as e:  # numpy refuses some ragged nestings outright
        raise BadRequest(f"{what}: not a rectangular array ({e})") from None
    if arr.dtype == object:
        raise BadRequest(f"{what}: not a rectangular array of numbers (ragged nesting or mixed "
                         "types)")
    npd = dtype.as_numpy_dtype
    if dtype.is_floating:
        if arr.dtype.kind not in "iuf" and arr.size:
            raise BadRequest(f"{what}: expected numbers for a {dtype.name} input, got "
                             f"{_kind_name(arr)}")
    elif dtype.is_integer:
        if arr.dtype.kind == "f" and arr.size:
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise BadRequest(f"{what}: expected integers for a {dtype.name} input, got "
                                 "fractional numbers")
        elif arr.dtype.kind not in "iu" and arr.size:
            raise BadRequest(f"{what}: expected integers for a {dtype.name} input, got "
                             f"{_kind_name(arr)}")
        info = np.iinfo(npd)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise BadRequest(f"{what}: value out of range for {dtype.name}")
    elif dtype.is_bool:
        if arr.dtype.kind != "b" and arr.size:
            raise BadRequest(f"{what}: expected true/false for a bool input, got "
                             f"{_kind_name(arr)}")
    elif dtype.name == "string":
        if arr.dtype.kind not in "US" and arr.size:
            raise BadRequest(f"{what}: expected strings, got {_kind_name(arr)}")
        return arr.astype(object)
    want = shape.as_list() if shape.ndims is not None else None
    if want is not None:
        if arr.ndim != len(want) or any(w is not None and w != a
                                        for w, a in zip(want, arr.shape)):
            raise BadRequest(f"{what}: shape {list(arr.shape)} does not match the expected "
                             f"{['?' if w is None else w for w in want]}")
    return arr.astype(npd)


def _kind_name(arr):
    return {"b": "booleans", "U": "strings", "S": "strings", "i": "integers",
            "f": "numbers"}.get(arr.dtype.kind, arr.dtype.name)


def decode_request(body: dict, specs: dict, max_rows: int):
    """(feeds, row format?) from a predict request body; BadRequest when malformed."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with 'instances' or 'inputs'")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("the request must have exactly one of 'instances' (row format) or "
                         "'inputs' (columnar format)")
    sig = body.get("signature_name", "serving_default")
    if sig != "serving_default":
        raise BadRequest(f"unknown signature_name {sig!r}; this model has 'serving_default'")
    names = list(specs)
    if "instances" in body:
        inst = body["instances"]
        if not isinstance(inst, list) or not inst:
            raise BadRequest("'instances' must be a non-empty list")
        if len(inst) > max_rows:
            raise BadRequest(f"too many instances: {len(inst)} > the limit {max_rows}")
        if all(isinstance(r, dict) for r in inst):
            cols = {}
            for i, r in enumerate(inst):
                if set(r) != set(names):
                    raise BadRequest(f"instance {i} has keys {sorted(r)}; expected "
                                     f"{sorted(names)}")
            cols = {k: [r[k] for r in inst] for k in names}
        elif any(isinstance(r, dict) for r in inst):
            raise BadRequest("'instances' mixes objects and plain values")
        elif len(names) == 1:
            cols = {names[0]: inst}
        else:
            raise BadRequest(f"this model has several inputs {sorted(names)}: each instance "
                             "must be an object naming them")
        feeds = {}
        for k in names:
            dt, shape = specs[k]
            feeds[k] = _to_array(cols[k], dt, shape, f"input {k!r}")
        return feeds, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) == set(names):
        cols = inputs
    elif len(names) == 1 and not isinstance(inputs, dict):
        cols = {names[0]: inputs}
    else:
        got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
        raise BadRequest(f"'inputs' must be an object with keys {sorted(names)}; got {got}")
    feeds = {k: _to_array(cols[k], *specs[k], f"input {k!r}") for k in names}
    rows = {v.shape[0] if v.ndim else 1 for v in feeds.values()}
    if max(rows) > max_rows:
        raise BadRequest(f"too many rows: {max(rows)} > the limit {max_rows}")
    return feeds, False


def _jsonable(v):
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return [_jsonable(x) for x in v] if v.ndim else _jsonable(v.item())
        return v.tolist()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def encode_response(outputs: dict, rows: bool) -> dict:
    if rows:
        keys = list(outputs)
        n = len(next(iter(outputs.values())))
        if len(keys) == 1:
            return {"predictions": _jsonable(outputs[keys[0]])}
        return {"predictions": [{k: _jsonable(outputs[k][i]) for k in keys} for i in range(n)]}
    if len(outputs) == 1:
        return {"outputs": _jsonable(next(iter(outputs.values())))}
    return {"outputs": {k: _jsonable(v) for k, v in outputs.items()}}


# --- batching ------------------------------------------------------------------------------------
class _Job:
    __slots__ = ("feeds", "rows", "done", "result", "error")

    def __init__(self, feeds, rows):
        self.feeds, self.rows = feeds, rows
        self.done = threading.Event()
        self.result = self.error = None


class Batcher:
    """Collects concurrent requests for a few milliseconds and runs them as one batch."""

    def __init__(self, predictor, max_batch_size=64, batch_timeout_ms=2.0):
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_ms / 1000.0
        ins = list(predictor.inputs.values())
        outs = list(predictor.outputs.values())
        # rows can be stacked only when every input and output has a free batch dimension
        self.batchable = all(t.shape.ndims and t.shape[0].value is None for t in ins + outs)
        self._q: queue.Queue = queue.Queue()
        self._stop = False
        self.batches = 0
        self.batched_rows = 0
        self._thread = threading.Thread(target=self._loop, name="tw-serving-batcher",
                                        daemon=True)
        self._thread.start()

    def submit(self, feeds, timeout=60.0):
        n = next(iter(feeds.values())).shape[0] if self.batchable else 1
        job = _Job(feeds, n)
        self._q.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError("the model did not answer in time")
        if job.error is not None:
            raise job.error
        return job.result

    def close(self):
        self._stop = True
        self._q.put(None)
        self._thread.join(timeout=5)

    def _loop(self):
        while not self._stop:
            job = self._q.get()
            if job is None:
                break
            jobs, rows = [job], job.rows
            deadline = time.perf_counter() + self.timeout
            while self.batchable and rows < self.max_batch_size:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    nxt = self._q.get(timeout=left)
                except queue.Empty:
                    break
                if nxt is None:
                    self._stop = True
                    break
                jobs.append(nxt)
                rows += nxt.rows
            self._run(jobs)

    def _run(self, jobs):
        groups: dict = {}
        for j in jobs:  # rows stack only when the per-row shapes agree
            key = tuple((k, v.shape[1:]) for k, v in sorted(j.feeds.items()))
            groups.setdefault(key, []).append(j)
        for group in groups.values():
            try:
                self._run_group(group)
            except Exception as e:  # noqa: BLE001  (isolate the failing request)
                if len(group) == 1:
                    group[0].error = BadRequest(f"the model failed on this input: {e}")
                    group[0].done.set()
                else:
                    for j in group:
                        try:
                            self._run_group([j])
                        except Exception as e1:  # noqa: BLE001
                            j.error = BadRequest(f"the model failed on this input: {e1}")
                            j.done.set()

    def _run_group(self, group):
        if len(group) == 1:
            out = self.predictor(group[0].feeds)
            group[0].result = out
            group[0].done.set()
            return
        feeds = {k: np.concatenate([j.feeds[k] for j in group]) for k in group[0].feeds}
        out = self.predictor(feeds)
        total = sum(j.rows for j in group)
        for k, v in out.items():
            if np.ndim(v) == 0 or v.shape[0] != total:
                raise RuntimeError(f"output {k!r} has no batch dimension of {total} rows")
        self.batches += 1
        self.batched_rows += total
        start = 0
        for j in group:
            j.result = {k: v[start:start + j.rows] for k, v in out.items()}
            start += j.rows
            j.done.set()


# --- HTTP ------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tensorweave-serving"

    def log_message(self, fmt, *args):
        if self.server.model_server.verbose:
            super().log_message(fmt, *args)

    def _send(self, code, obj):
        data = json.dumps(obj).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802  (http.server's naming)
        ms = self.server.model_server
        try:
            m = _STATUS.match(self.path.split("?", 1)[0])
            if not m:
                raise _NotFound(f"no route for GET {self.path}")
            ms.check_model(m.group("name"), m.group("version"))
            self._send(200, ms.metadata() if m.group("meta") else ms.status())
        except _NotFound as e:
            self._send(404, {"error": str(e)})
        except Exception as e:  # noqa: BLE001  (a server keeps serving)
            self._send(500, {"error": f"{type(e).__name__}: {e}"})

    def do_POST(self):  # noqa: N802
        ms = self.server.model_server
        try:
            m = _PREDICT.match(self.path.split("?", 1)[0])
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                raise BadRequest("a Content-Length header is required")
            length = int(length)
            if length > ms.max_body_bytes:
                self.close_connection = True  # the unread body must not be parsed as a request
                raise BadRequest(f"request body of {length} bytes exceeds the limit of "
                                 f"{ms.max_body_bytes} bytes")
            raw = self.rfile.read(length)
            if not m:
                raise _NotFound(f"no route for POST {self.path}")
            ms.check_model(m.group("name"), m.group("version"))
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadRequest(f"malformed JSON: {e}") from None
            self._send(200, ms.predict(body))
        except BadRequest as e:
            self._send(400, {"error": str(e)})
        except _NotFound as e:
            self._send(404, {"error": str(e)})
        except Exception as e:  # noqa: BLE001
            self._send(500, {"error": f"{type(e).__name__}: {e}"})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 resets bursts of concurrent clients


class ModelServer:
    """Serves a SavedModel directory over HTTP (TF Serving's REST API).

    Example::

        server = ModelServer("/tmp/models/mnist", model_name="mnist", port=8501).start()
        ...                       # POST http://127.0.0.1:8501/v1/models/mnist:predict
        server.shutdown()
    """

    def __init__(self, export_dir, model_name="model", host="127.0.0.1", port=8501,
                 max_batch_size=64, batch_timeout_ms=2.0, max_body_bytes=8 << 20,
                 max_rows=1024, verbose=False):
        from tensorweave.saved_model import load
        self.predictor = load(export_dir)
        self.model_name = model_name
        self.max_body_bytes = max_body_bytes
        self.max_rows = max_rows
        self.verbose = verbose
        self.batcher = Batcher(self.predictor, max_batch_size, batch_timeout_ms)
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.model_server = self
        self._thread = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}/v1/models/{self.model_name}"

    def check_model(self, name, version):
        if name != self.model_name:
            raise _NotFound(f"model {name!r} not found; this server has {self.model_name!r}")
        if version is not None and int(version) != self.predictor.version:
            raise _NotFound(f"version {version} of {name!r} not found; loaded version is "
                            f"{self.predictor.version}")

    def status(self) -> dict:
        return {"model_version_status": [{"version": str(self.predictor.version),
                                          "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict:
        return {"model_spec": {"name": self.model_name,
                               "version": str(self.predictor.version)},
                "metadata": {"signature_def": {"serving_default": self.predictor.describe()}}}

    def predict(self, body) -> dict:
        feeds, rows = decode_request(body, self.predictor.input_specs, self.max_rows)
        out = self.batcher.submit(feeds)
        return encode_response(out, rows)

    def start(self):
        """Serves on a background thread; returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tw-serving-http",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        try:
            self.httpd.serve_forever()
        finally:
            self.shutdown()

    def shutdown(self):
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        self.batcher.close()
        self.predictor.close()
