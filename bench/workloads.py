"""The benchmark workloads, built identically in tensorweave, TensorFlow 2.x graph mode
(``tf.compat.v1``) and PyTorch (CPU, eager), from the same NumPy weights and batch.

``build(framework, workload)`` returns a :class:`Case` whose ``step()`` runs one unit of work
(one ``Session.run`` / training step / 200-op chain) and returns the loss where there is one.
Frameworks are imported lazily, so a process running only tensorweave never loads the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRAMEWORKS = ("tensorweave", "tensorflow", "pytorch")
WORKLOADS = ("session_run", "per_op", "mlp", "lstm", "cnn")
CHAIN = 200  # ops in the per-op chain
SPECS = {
    "session_run": "Session.run overhead: fetch identity(fed float32[16])",
    "per_op": f"per-op overhead: chain of {CHAIN} dependent tanh on float32[16]",
    "mlp": "MLP 784-256-256-10, batch 128, SGD 0.1, sparse softmax xent",
    "lstm": "LSTM LM, 20 unrolled steps, batch 32, vocab 2000, embed 128, hidden 256, Adam",
    "cnn": "LeNet CNN 28x28x1: conv5x5x32-pool-conv5x5x64-pool-fc512-fc10, batch 64, Adam",
}
LSTM = dict(batch=32, steps=20, vocab=2000, embed=128, hidden=256)


@dataclass
class Case:
    step: object  # () -> loss (float) or None
    notes: list = field(default_factory=list)
    session: object = None  # tensorweave/TF session, for profiling and closing
    fetches: object = None
    feed: object = None

    def close(self):
        if self.session is not None:
            self.session.close()


def _glorot(rng, shape, fan_in, fan_out):
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, shape).astype(np.float32)


def init_params(workload, seed=0):
    """Initial weights and one batch as NumPy arrays, shared by every framework."""
    rng = np.random.default_rng(seed)
    p = {}
    if workload in ("session_run", "per_op"):
        p["x"] = rng.standard_normal(16).astype(np.float32) * 0.1
    elif workload == "mlp":
        sizes = [784, 256, 256, 10]
        for i in range(3):
            p[f"w{i}"] = _glorot(rng, (sizes[i], sizes[i + 1]), sizes[i], sizes[i + 1])
            p[f"b{i}"] = np.zeros(sizes[i + 1], np.float32)
        p["x"] = rng.standard_normal((128, 784)).astype(np.float32)
        p["y"] = rng.integers(0, 10, 128).astype(np.int32)
    elif workload == "lstm":
        b, t, v, e, h = (LSTM[k] for k in ("batch", "steps", "vocab", "embed", "hidden"))
        p["emb"] = rng.uniform(-0.1, 0.1, (v, e)).astype(np.float32)
        p["w"] = _glorot(rng, (e + h, 4 * h), e + h, 4 * h)
        p["b"] = np.zeros(4 * h, np.float32)
        p["w_out"] = _glorot(rng, (h, v), h, v)
        p["b_out"] = np.zeros(v, np.float32)
        p["ids"] = rng.integers(0, v, (b, t)).astype(np.int32)
        p["targets"] = rng.integers(0, v, (b, t)).astype(np.int32)
    elif workload == "cnn":
        p["c1"] = _glorot(rng, (5, 5, 1, 32), 25, 25 * 32)
        p["c1b"] = np.zeros(32, np.float32)
        p["c2"] = _glorot(rng, (5, 5, 32, 64), 25 * 32, 25 * 64)
        p["c2b"] = np.zeros(64, np.float32)
        p["f1"] = _glorot(rng, (7 * 7 * 64, 512), 7 * 7 * 64, 512)
        p["f1b"] = np.zeros(512, np.float32)
        p["f2"] = _glorot(rng, (512, 10), 512, 10)
        p["f2b"] = np.zeros(10, np.float32)
        p["x"] = rng.standard_normal((64, 28, 28, 1)).astype(np.float32)
        p["y"] = rng.integers(0, 10, 64).astype(np.int32)
    else:
        raise ValueError(f"unknown workload {workload!r}: expected one of {WORKLOADS}")
    return p


# --- graph mode: one builder for tensorweave and tf.compat.v1 (same public names) -------------
def _graph_model(tf, workload, p):
    """Builds ``workload`` with the TF1 API ``tf`` (tensorweave or tf.compat.v1) in the default
    graph. Returns (fetches, feed_dict)."""
    if workload == "session_run":
        x = tf.placeholder(tf.float32, [16], name="x")
        return tf.identity(x), {x: p["x"]}
    if workload == "per_op":
        x = tf.placeholder(tf.float32, [16], name="x")
        y = x
        for _ in range(CHAIN):
            y = tf.tanh(y)
        return y, {x: p["x"]}
    if workload == "mlp":
        x = tf.placeholder(tf.float32, [None, 784], name="x")
        y = tf.placeholder(tf.int32, [None], name="y")
        h = x
        for i in range(3):
            h = tf.matmul(h, tf.Variable(p[f"w{i}"], name=f"w{i}")) + \
                tf.Variable(p[f"b{i}"], name=f"b{i}")
            if i < 2:
                h = tf.nn.relu(h)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
        train = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        return [loss, train], {x: p["x"], y: p["y"]}
    if workload == "lstm":
        bsz, steps, hid = LSTM["batch"], LSTM["steps"], LSTM["hidden"]
        ids = tf.placeholder(tf.int32, [bsz, steps], name="ids")
        targets = tf.placeholder(tf.int32, [bsz, steps], name="targets")
        emb = tf.Variable(p["emb"], name="embedding")
        w, b = tf.Variable(p["w"], name="lstm_w"), tf.Variable(p["b"], name="lstm_b")
        w_out, b_out = tf.Variable(p["w_out"], name="softmax_w"), tf.Variable(p["b_out"],
                                                                            name="softmax_b")
        xs = tf.unstack(tf.gather(emb, ids), axis=1)
        h = c = tf.zeros([bsz, hid], tf.float32)
        hs = []
        for x_t in xs:  # the cell from matmul/sigmoid/tanh, one matmul on concat([x, h])
            z = tf.matmul(tf.concat([x_t, h], 1), w) + b
            i_g, f_g, g_g, o_g = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f_g + 1.0) * c + tf.sigmoid(i_g) * tf.tanh(g_g)
            h = tf.sigmoid(o_g) * tf.tanh(c)
            hs.append(h)
        out = tf.reshape(tf.stack(hs, axis=1), [-1, hid])
        logits = tf.matmul(out, w_out) + b_out
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.reshape(targets, [-1]), logits=logits))
        train = tf.train.AdamOptimizer(1e-3).minimize(loss)
        return [loss, train], {ids: p["ids"], targets: p["targets"]}
    if workload == "cnn":
        x = tf.placeholder(tf.float32, [None, 28, 28, 1], name="x")
        y = tf.placeholder(tf.int32, [None], name="y")
        h = x
        for k in ("c1", "c2"):
            h = tf.nn.conv2d(h, tf.Variable(p[k], name=k), strides=[1, 1, 1, 1], padding="SAME")
            h = tf.nn.relu(tf.nn.bias_add(h, tf.Variable(p[k + "b"], name=k + "b")))
            h = tf.nn.max_pool(h, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
        h = tf.reshape(h, [-1, 7 * 7 * 64])
        h = tf.nn.relu(tf.matmul(h, tf.Variable(p["f1"], name="f1")) +
                       tf.Variable(p["f1b"], name="f1b"))
        logits = tf.matmul(h, tf.Variable(p["f2"], name="f2")) + tf.Variable(p["f2b"], name="f2b")
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tf.train.AdamOptimizer(1e-3).minimize(loss)
        return [loss, train], {x: p["x"], y: p["y"]}
    raise ValueError(f"unknown workload {workload!r}: expected one of {WORKLOADS}")


def _graph_case(tf, session_cls, workload, config=None):
    p = init_params(workload)
    g = tf.Graph()
    with g.as_default():
        fetches, feed = _graph_model(tf, workload, p)
        init = tf.global_variables_initializer()
    sess = session_cls(graph=g, config=config)
    sess.run(init)
    run = sess.run
    if isinstance(fetches, list):
        def step():
            return float(run(fetches, feed)[0])
    else:
        def step():
            run(fetches, feed)
    return Case(step, session=sess, fetches=fetches, feed=feed)


def tensorweave_case(workload, config=None, threads=0):
    import tensorweave as tw
    return _graph_case(tw, tw.Session, workload, config)


def tensorflow_case(workload, threads=0):
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    config = tf1.ConfigProto(intra_op_parallelism_threads=threads,
                             inter_op_parallelism_threads=threads)
    case = _graph_case(tf1, tf1.Session, workload, config)
    case.notes.append(f"tensorflow {tf.__version__}, tf.compat.v1 graph mode, "
                      f"intra/inter-op threads {threads or 'default'}")
    return case


def set_threads(framework, threads):
    """Limits the framework's intra-op threads to ``threads`` (0: leave the default).
    tensorweave's only intra-op parallelism is the BLAS pool (NumPy's OpenBLAS); TensorFlow's
    is set per session (see :func:`tensorflow_case`)."""
    if not threads:
        return
    if framework == "tensorweave":
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads)
    elif framework == "pytorch":
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)


# --- PyTorch, eager ---------------------------------------------------------------------------
def pytorch_case(workload, threads=0):
    import torch
    import torch.nn.functional as F  # noqa: N812

    p = init_params(workload)
    notes = [f"torch {torch.__version__}, eager, {torch.get_num_threads()} intra-op threads"]

    def param(name, transform=None):
        a = p[name] if transform is None else transform(p[name])
        return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a).copy()))

    if workload == "session_run":
        x = p["x"]
        notes.append("closest equivalent of a Session.run: numpy in -> torch.from_numpy -> "
                     "clone() (an identity that owns its result) -> .numpy() out, under no_grad")

        def step():
            with torch.no_grad():
                torch.from_numpy(x).clone().numpy()
        return Case(step, notes)
    if workload == "per_op":
        x = p["x"]
        notes.append(f"numpy in, {CHAIN} torch.tanh calls under no_grad, .numpy() out")

        def step():
            with torch.no_grad():
                y = torch.from_numpy(x)
                for _ in range(CHAIN):
                    y = torch.tanh(y)
                y.numpy()
        return Case(step, notes)
    if workload == "mlp":
        ws = [param(f"w{i}") for i in range(3)]
        bs = [param(f"b{i}") for i in range(3)]
        params = ws + bs
        batch = (torch.from_numpy(p["x"]), torch.from_numpy(p["y"].astype(np.int64)))

        def loss_fn(x, y):
            h = x
            for i in range(3):
                h = h @ ws[i] + bs[i]
                if i < 2:
                    h = F.relu(h)
            return F.cross_entropy(h, y)

        opt = torch.optim.SGD(params, lr=0.1)
    elif workload == "lstm":
        bsz, steps, hid = LSTM["batch"], LSTM["steps"], LSTM["hidden"]
        emb, w, b = param("emb"), param("w"), param("b")
        w_out, b_out = param("w_out"), param("b_out")
        params = [emb, w, b, w_out, b_out]
        batch = (torch.from_numpy(p["ids"].astype(np.int64)),
                 torch.from_numpy(p["targets"].astype(np.int64)))

        def loss_fn(ids, targets):
            xs = emb[ids]
            h = c = torch.zeros(bsz, hid)
            hs = []
            for t in range(steps):
                z = torch.cat([xs[:, t], h], 1) @ w + b
                i_g, f_g, g_g, o_g = z.chunk(4, 1)
                c = torch.sigmoid(f_g + 1.0) * c + torch.sigmoid(i_g) * torch.tanh(g_g)
                h = torch.sigmoid(o_g) * torch.tanh(c)
                hs.append(h)
            logits = torch.stack(hs, 1).reshape(-1, hid) @ w_out + b_out
            return F.cross_entropy(logits, targets.reshape(-1))

        opt = torch.optim.Adam(params, lr=1e-3, eps=1e-8)
    elif workload == "cnn":
        def oihw(a):
            return a.transpose(3, 2, 0, 1)

        c1, c2 = param("c1", oihw), param("c2", oihw)
        c1b, c2b, f1, f1b, f2, f2b = (param(k) for k in ("c1b", "c2b", "f1", "f1b", "f2", "f2b"))
        params = [c1, c1b, c2, c2b, f1, f1b, f2, f2b]
        batch = (torch.from_numpy(np.ascontiguousarray(p["x"].transpose(0, 3, 1, 2))),
                 torch.from_numpy(p["y"].astype(np.int64)))

        def loss_fn(x, y):
            h = F.max_pool2d(F.relu(F.conv2d(x, c1, c1b, padding=2)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, c2, c2b, padding=2)), 2)
            h = h.permute(0, 2, 3, 1).reshape(-1, 7 * 7 * 64)  # NHWC flatten, as the graphs
            h = F.relu(h @ f1 + f1b)
            return F.cross_entropy(h @ f2 + f2b, y)

        opt = torch.optim.Adam(params, lr=1e-3, eps=1e-8)
        notes.append("NCHW layout (PyTorch's native); weights transposed from HWIO")
    else:
        raise ValueError(f"unknown workload {workload!r}: expected one of {WORKLOADS}")

    def step():
        loss = loss_fn(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return Case(step, notes)


def build(framework, workload, threads=0, **kwargs):
    """A :class:`Case` for ``workload`` in ``framework`` (one of :data:`FRAMEWORKS`); call
    :func:`set_threads` first, once per process."""
    fn = {"tensorweave": tensorweave_case, "tensorflow": tensorflow_case,
          "pytorch": pytorch_case}.get(framework)
    if fn is None:
        raise ValueError(f"unknown framework {framework!r}: expected one of {FRAMEWORKS}")
    return fn(workload, threads=threads, **kwargs)
