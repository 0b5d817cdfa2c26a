"""Input pipelines that keep the step busy: an MLP training step (784-256-256-10, tanh, mean
squared error, plain SGD) fed by feed_dict from NumPy batches vs. by a tw.data pipeline, with
and without per-example preprocessing (standardization + random horizontal flip).

    PYTHONPATH=src python3 bench/input_pipeline.py [--steps 200] [--batch 128]

Prints steps/s and ms/step per configuration (median of --repeats runs). Numbers depend on the
machine's load: compare rows from one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tensorweave as tw

N_TRAIN = 8192
EPS = 1e-3


# Per-example standardization divides by the standard deviation where tw has sqrt; until then
# by the mean absolute deviation (|x| = relu(x) + relu(-x)). NumPy mirrors whichever is used.
USE_STD = hasattr(tw, "sqrt")


def _spread(c, axis=None, keepdims=False):
    if USE_STD:
        return tw.sqrt(tw.reduce_mean(c * c, axis, keepdims=keepdims) + EPS)
    return tw.reduce_mean(tw.nn.relu(c) + tw.nn.relu(-c), axis, keepdims=keepdims) + EPS


def np_spread(c):
    if USE_STD:
        return np.sqrt((c * c).mean(axis=1, keepdims=True) + EPS)
    return np.abs(c).mean(axis=1, keepdims=True) + EPS


def make_data(seed=0):
    r = np.random.default_rng(seed)
    x = r.uniform(0, 255, (N_TRAIN, 784)).astype(np.float32)
    labels = r.integers(0, 10, N_TRAIN)
    y = np.eye(10, dtype=np.float32)[labels]
    return x, y


def build_model(x, y, lr=1e-3):
    """The training op for inputs ``x`` [B, 784] and targets ``y`` [B, 10]."""
    r = np.random.default_rng(1)

    def dense(inp, n_in, n_out, act):
        w = tw.Variable((r.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32))
        b = tw.Variable(np.zeros(n_out, np.float32))
        z = tw.matmul(inp, w) + b
        return tw.tanh(z) if act else z

    h = dense(x, 784, 256, True)
    h = dense(h, 256, 256, True)
    out = dense(h, 256, 10, False)
    d = out - y
    loss = tw.reduce_mean(d * d)
    return tw.train.GradientDescentOptimizer(lr).minimize(loss), loss


# --- preprocessing: the same math in NumPy (feed_dict) and in tw ops (tw.data map) ---------
def np_preprocess_batch(xb, rng):
    """Per-example standardization and a random left-right flip of each 28x28 image."""
    c = xb - xb.mean(axis=1, keepdims=True)
    out = c / np_spread(c)
    img = out.reshape(-1, 28, 28)
    flip = rng.integers(0, 2, len(xb)).astype(bool)
    img[flip] = img[flip, :, ::-1]
    return img.reshape(-1, 784)


def tw_preprocess_example(x, y):
    c = x - tw.reduce_mean(x)
    out = c / _spread(c)
    img = tw.reshape(out, [28, 28])
    coin = tw.cast(tw.random_uniform([], 0, 2, dtype=tw.int32), tw.float32)
    img = coin * tw.reverse(img, [1]) + (1.0 - coin) * img
    return tw.reshape(img, [784]), y


def tw_preprocess_batch(x, y):
    c = x - tw.reduce_mean(x, 1, keepdims=True)
    out = c / _spread(c, 1, keepdims=True)
    img = tw.reshape(out, [-1, 28, 28])
    coin = tw.cast(tw.random_uniform([tw.shape(x)[0], 1, 1], 0, 2, dtype=tw.int32), tw.float32)
    img = coin * tw.reverse(img, [2]) + (1.0 - coin) * img
    return tw.reshape(img, [-1, 784]), y


# --- runners: each returns seconds per step -------------------------------------------------
def time_steps(run_step, steps, warmup):
    for _ in range(warmup):
        run_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        run_step()
    return (time.perf_counter() - t0) / steps


def run_feed_dict(data, batch, steps, warmup, preprocess=False):
    X, Y = data
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [None, 784])
        y = tw.placeholder(tw.float32, [None, 10])
        train, _ = build_model(x, y)
        rng = np.random.default_rng(2)
        state = {"perm": rng.permutation(N_TRAIN), "pos": 0}

        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())

            def step():
                if state["pos"] + batch > N_TRAIN:  # a new epoch: reshuffle
                    state["perm"], state["pos"] = rng.permutation(N_TRAIN), 0
                idx = state["perm"][state["pos"]:state["pos"] + batch]
                state["pos"] += batch
                xb, yb = X[idx], Y[idx]
                if preprocess:
                    xb = np_preprocess_batch(xb, rng)
                sess.run(train, {x: xb, y: yb})

            return time_steps(step, steps, warmup)


def run_reader(data, batch, steps, warmup, read_ms, pipeline):
    """Batches from a reader that waits ``read_ms`` per batch (disk/network latency, which
    releases the GIL): read in the step's thread (feed_dict) or by tw.data (+ prefetch)."""
    X, Y = data

    def read(i):
        time.sleep(read_ms / 1e3)
        lo = (i * batch) % (N_TRAIN - batch)
        return X[lo:lo + batch], Y[lo:lo + batch]

    with tw.Graph().as_default():
        if pipeline is None:
            x = tw.placeholder(tw.float32, [None, 784])
            y = tw.placeholder(tw.float32, [None, 10])
        else:
            def gen():
                i = 0
                while True:
                    yield read(i)
                    i += 1

            ds = tw.data.Dataset.from_generator(gen, (tw.float32, tw.float32),
                                                ([None, 784], [None, 10]))
            x, y = (ds.prefetch(pipeline) if pipeline else ds).make_one_shot_iterator() \
                .get_next()
        train, _ = build_model(x, y)
        counter = iter(range(10**9))
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            if pipeline is None:
                def step():
                    xb, yb = read(next(counter))
                    sess.run(train, {x: xb, y: yb})
            else:
                def step():
                    sess.run(train)
            return time_steps(step, steps, warmup)


def run_compute_only(data, batch, steps, warmup):
    """The same step on one fixed batch fed each time: the step's own cost."""
    X, Y = data
    with tw.Graph().as_default():
        x = tw.placeholder(tw.float32, [None, 784])
        y = tw.placeholder(tw.float32, [None, 10])
        train, _ = build_model(x, y)
        xb, yb = X[:batch].copy(), Y[:batch].copy()
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            return time_steps(lambda: sess.run(train, {x: xb, y: yb}), steps, warmup)


def run_dataset(data, batch, steps, warmup, map_fn=None, vectorized=False, prefetch=2,
                parallel=None):
    X, Y = data
    with tw.Graph().as_default():
        ds = tw.data.Dataset.from_tensor_slices((X, Y)).shuffle(N_TRAIN, seed=3)
        if map_fn is not None and not vectorized:
            ds = ds.map(map_fn, num_parallel_calls=parallel)
        ds = ds.batch(batch)
        if map_fn is not None and vectorized:
            ds = ds.map(map_fn, num_parallel_calls=parallel)
        ds = ds.repeat()
        if prefetch:
            ds = ds.prefetch(prefetch)
        x, y = ds.make_one_shot_iterator().get_next()
        train, _ = build_model(x, y)
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            return time_steps(lambda: sess.run(train), steps, warmup)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated row numbers to run")
    a = p.parse_args()
    data = make_data()
    b, s, w = a.batch, a.steps, a.warmup
    rows = [
        ("compute only (fixed batch fed)", lambda: run_compute_only(data, b, s, w)),
        ("feed_dict, NumPy batches", lambda: run_feed_dict(data, b, s, w)),
        ("tw.data, no prefetch", lambda: run_dataset(data, b, s, w, prefetch=0)),
        ("tw.data + prefetch(2)", lambda: run_dataset(data, b, s, w)),
        ("reader 1 ms/batch: feed_dict",
         lambda: run_reader(data, b, s, w, 1.0, None)),
        ("reader 1 ms/batch: tw.data.from_generator",
         lambda: run_reader(data, b, s, w, 1.0, 0)),
        ("reader 1 ms/batch: tw.data.from_generator + prefetch(2)",
         lambda: run_reader(data, b, s, w, 1.0, 2)),
        ("feed_dict + NumPy preprocessing (per batch)",
         lambda: run_feed_dict(data, b, s, w, preprocess=True)),
        ("tw.data map per example + prefetch",
         lambda: run_dataset(data, b, s, w, tw_preprocess_example)),
        ("tw.data map per example, 2 threads + prefetch",
         lambda: run_dataset(data, b, s, w, tw_preprocess_example, parallel=2)),
        ("tw.data batch then map (vectorized), no prefetch",
         lambda: run_dataset(data, b, s, w, tw_preprocess_batch, True, prefetch=0)),
        ("tw.data batch then map (vectorized) + prefetch",
         lambda: run_dataset(data, b, s, w, tw_preprocess_batch, True)),
    ]
    if not USE_STD:
        print("(standardization uses the mean absolute deviation: tw.sqrt is not available yet)")
    only = {int(i) for i in a.only.split(",") if i}
    print(f"MLP 784-256-256-10, batch {b}, {s} steps after {w} warm-up, median of {a.repeats}")
    print(f"{'#':>2}  {'configuration':<52} {'ms/step':>8} {'steps/s':>8}")
    for i, (name, fn) in enumerate(rows):
        if only and i not in only:
            continue
        t = statistics.median(fn() for _ in range(a.repeats))
        print(f"{i:>2}  {name:<52} {t * 1e3:8.2f} {1.0 / t:8.1f}", flush=True)


if __name__ == "__main__":
    main()
