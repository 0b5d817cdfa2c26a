"""Load test of ``tensorweave serve`` on loopback: a fixed number of requests from concurrent
clients; prints requests/s and latency percentiles, with and without micro-batching.

    .venv/bin/python scripts/serving_load_test.py [--clients 16] [--requests 100] [--rows 1]

The model is an MNIST-sized MLP (784 -> 256 -> 256 -> 10, softmax) exported with
``tw.saved_model.simple_save``; the server runs in its own process (``tensorweave serve``) on
127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
sys.path.insert(0, SRC)


def export_model(base: str) -> str:
    import tensorweave as tw
    rng = np.random.default_rng(0)
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 784], name="images")
        h = x
        for i, (a, b) in enumerate([(784, 256), (256, 256)]):
            w = tw.Variable((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
                            name=f"w{i}")
            h = tw.nn.relu(tw.nn.bias_add(tw.matmul(h, w), tw.Variable(np.zeros(b, np.float32),
                                                                      name=f"b{i}")))
        w = tw.Variable((rng.standard_normal((256, 10)) / 16).astype(np.float32), name="wout")
        probs = tw.nn.softmax(tw.matmul(h, w), name="probs")
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess:
        sess.run(init)
        return tw.saved_model.simple_save(sess, base, {"images": x}, {"probs": probs})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(export_dir, port, max_batch_size, timeout_ms, blas_threads):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if blas_threads:
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(blas_threads)
    cmd = [sys.executable, "-c", "from tensorweave.cli import main; main()", "serve", export_dir,
           "--port", str(port), "--model-name", "mnist", "--max-batch-size",
           str(max_batch_size), "--batch-timeout-ms", str(timeout_ms)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/models/mnist")
            if c.getresponse().status == 200:
                c.close()
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise TimeoutError("the server did not start")


def run_load(port, clients, requests, rows):
    rng = np.random.default_rng(1)
    bodies = [json.dumps({"instances": rng.random((rows, 784)).round(4).tolist()}).encode()
              for _ in range(8)]
    latencies = [[] for _ in range(clients)]
    errors = []
    barrier = threading.Barrier(clients + 1)

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        barrier.wait()
        for r in range(requests):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/models/mnist:predict", body=bodies[(i + r) % len(bodies)],
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            latencies[i].append(time.perf_counter() - t0)
            if resp.status != 200 or len(json.loads(data)["predictions"]) != rows:
                errors.append(resp.status)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array([x for per in latencies for x in per]) * 1000
    return {"requests": int(lat.size), "errors": len(errors), "seconds": round(wall, 2),
            "requests_per_s": round(lat.size / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=100, help="Requests per client.")
    ap.add_argument("--rows", type=int, default=1, help="Instances per request.")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads in the server (0: the library default). Many HTTP "
                    "threads plus a multi-threaded BLAS oversubscribe small machines.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tw-serve-load-")
    results = {}
    try:
        export_dir = export_model(os.path.join(tmp, "mnist"))
        for label, max_batch, timeout_ms in (("batching (max 64 rows, 2 ms)", 64, 2.0),
                                             ("no batching", 1, 0.0)):
            port = _free_port()
            proc = start_server(export_dir, port, max_batch, timeout_ms, args.blas_threads)
            try:
                run_load(port, 4, 5, args.rows)  # warm up: plans compiled, connections open
                results[label] = run_load(port, args.clients, args.requests, args.rows)
            finally:
                proc.terminate()
                proc.wait(timeout=15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{args.clients} clients x {args.requests} requests, {args.rows} row(s) of 784 floats "
          f"each, 127.0.0.1, {os.cpu_count()} CPUs, server BLAS threads "
          f"{args.blas_threads or 'default'}")
    for label, r in results.items():
        print(f"{label:32s} {r['requests_per_s']:8.1f} req/s   p50 {r['p50_ms']:7.2f} ms   "
              f"p95 {r['p95_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   errors {r['errors']}")


if __name__ == "__main__":
    main()
