"""Screenshots of TensorBoard showing a tensorweave training run (scalars and graph pages).

Trains a tiny classifier for a few hundred steps with summaries (loss, accuracy, weight
histograms) and the graph written by ``tw.summary.FileWriter``, starts ``tensorboard`` on
127.0.0.1, loads its pages in headless Chromium, saves PNGs under ``docs/img/`` and stops
everything it started::

    .venv/bin/python scripts/tensorboard_screenshots.py [--logdir DIR] [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import tensorweave as tw  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def train_tiny(logdir: str, steps: int = 300):
    """Two-moons-like data, a 2-layer MLP; summaries every 10 steps, one traced step."""
    rng = np.random.default_rng(0)
    n = 512
    t = rng.uniform(0, np.pi, n)
    labels = rng.integers(0, 2, n)
    xs = np.stack([np.cos(t) + labels, np.sin(t) * (1 - 2 * labels) + 0.5 * labels], 1)
    xs = (xs + 0.1 * rng.standard_normal(xs.shape)).astype(np.float32)
    g = tw.Graph()
    with g.as_default():
        tw.set_random_seed(0)
        x = tw.placeholder(tw.float32, [None, 2], name="x")
        y = tw.placeholder(tw.int64, [None], name="labels")
        h = tw.layers.dense(x, 32, activation=tw.nn.relu, name="hidden")
        logits = tw.layers.dense(h, 2, name="logits")
        with tw.name_scope("xent"):
            loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
        with tw.name_scope("metrics"):
            acc = tw.reduce_mean(tw.cast(tw.equal(tw.argmax(logits, 1), y), tw.float32))
        train_op = tw.train.AdamOptimizer(0.01).minimize(loss)
        tw.summary.scalar("loss", loss)
        tw.summary.scalar("accuracy", acc)
        with tw.name_scope("weights"):  # tags weights/hidden/kernel ... (fresh scopes)
            for v in tw.trainable_variables():
                tw.summary.histogram(v.op.name, v)
        merged = tw.summary.merge_all()
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as sess, tw.summary.FileWriter(logdir, g) as writer:
        sess.run(init)
        for step in range(steps):
            idx = rng.integers(0, n, 64)
            feed = {x: xs[idx], y: labels[idx]}
            if step % 10 == 0:
                if step == 100:
                    md = tw.RunMetadata()
                    s, _ = sess.run([merged, train_op], feed, run_metadata=md, options=tw.RunOptions(
                        trace_level=tw.RunOptions.FULL_TRACE))
                    writer.add_run_metadata(md, f"step{step}", step)
                else:
                    s, _ = sess.run([merged, train_op], feed)
                writer.add_summary(s, step)
            else:
                sess.run(train_op, feed)
        final = sess.run(acc, {x: xs, y: labels})
    return float(final)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def screenshot(url: str, path: str, profile: str):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={path}",
           "--window-size=1400,900", "--virtual-time-budget=15000", "--hide-scrollbars", url]
    subprocess.run(cmd, check=True, timeout=120, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default=None, help="Default: a temporary directory.")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs",
                                                   "img"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tw-tb-")
    logdir = args.logdir or os.path.join(tmp, "logs", "tiny_mlp")
    os.makedirs(args.out, exist_ok=True)
    acc = train_tiny(logdir)
    print(f"trained: accuracy {acc:.1%}; logs in {logdir}")
    port = _free_port()
    tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                           os.path.dirname(logdir), "--host", "127.0.0.1", "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/data/runs")
        time.sleep(3)  # let the multiplexer load the event files
        for page, frag in (("scalars", "#scalars"), ("graph", "#graphs"),
                           ("histograms", "#histograms")):
            path = os.path.abspath(os.path.join(args.out, f"tensorboard_{page}.png"))
            screenshot(f"{base}/{frag}", path, os.path.join(tmp, f"profile-{page}"))
            print(f"{path}: {os.path.getsize(path) // 1024} KB")
    finally:
        tb.terminate()
        try:
            tb.wait(timeout=15)
        except subprocess.TimeoutExpired:
            tb.kill()
            tb.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
