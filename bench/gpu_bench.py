"""Training-step timings on the GPU: an MLP, an LSTM language model and a LeNet-style CNN, each
built with tensorweave (every op under ``tw.device("/gpu:0")``) and, where PyTorch is installed,
the same model, weights and batch in PyTorch on the same GPU.

    python bench/gpu_bench.py                 # prints a markdown table
    python bench/gpu_bench.py --emulate       # the GPU kernel code on NumPy, to test this script

Each tensorweave step is ``sess.run([loss, train_op], feed)`` with the batch fed from host
memory (the loss comes back to the host, which waits for the device); each PyTorch step copies
the batch to the device, runs forward, backward and the optimizer, and reads ``loss.item()``.
Both run in float32 with TF32 off. Reported: the median of ``--steps`` steps after
``--warmup`` steps, the device synchronized after each. ``bench/gpu_check.py`` runs this as its
timing section.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "src"))

import tensorweave as tw  # noqa: E402

MODELS = ("mlp", "lstm", "cnn")
SPECS = {
    "mlp": "MLP 784-256-256-10, batch 128, SGD 0.1, sparse softmax xent",
    "lstm": "LSTM LM unrolled 20 steps, batch 32, vocab 2000, embed 128, hidden 256, Adam",
    "cnn": "LeNet-style CNN 28x28x1 (conv5x5x32-pool-conv5x5x64-pool-fc512-fc10), batch 64, Adam",
}


@dataclass
class Built:
    graph: object
    init: object
    loss: object
    train: object
    feed: dict
    notes: list = field(default_factory=list)


def _null_scope():
    import contextlib
    return contextlib.nullcontext()


def _glorot(rng, shape, fan_in, fan_out):
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, shape).astype(np.float32)


def init_params(model, seed=0):
    """The model's initial weights and one batch, as NumPy arrays (shared with PyTorch)."""
    rng = np.random.default_rng(seed)
    p = {}
    if model == "mlp":
        sizes = [784, 256, 256, 10]
        for i in range(3):
            p[f"w{i}"] = _glorot(rng, (sizes[i], sizes[i + 1]), sizes[i], sizes[i + 1])
            p[f"b{i}"] = np.zeros(sizes[i + 1], np.float32)
        p["x"] = rng.standard_normal((128, 784)).astype(np.float32)
        p["y"] = rng.integers(0, 10, 128).astype(np.int32)
    elif model == "lstm":
        v, e, h = 2000, 128, 256
        p["emb"] = rng.uniform(-0.1, 0.1, (v, e)).astype(np.float32)
        p["w"] = _glorot(rng, (e + h, 4 * h), e + h, 4 * h)
        p["b"] = np.zeros(4 * h, np.float32)
        p["w_out"] = _glorot(rng, (h, v), h, v)
        p["b_out"] = np.zeros(v, np.float32)
        p["ids"] = rng.integers(0, v, (32, 20)).astype(np.int32)
        p["targets"] = rng.integers(0, v, (32, 20)).astype(np.int32)
    elif model == "cnn":
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
        raise ValueError(f"unknown model {model!r}: expected one of {MODELS}")
    return p


def usable(op_type):
    """True when ``op_type`` is declared with a CPU kernel and a gradient (ops still being
    written are declared before their kernels land)."""
    from tensorweave.framework.registry import registered_ops
    d = registered_ops().get(op_type)
    return d is not None and "CPU" in d.kernels and d.has_gradient


def _sigmoid(x, notes):
    if usable("Sigmoid"):
        return tw.sigmoid(x)
    if "sigmoid as 0.5*tanh(x/2)+0.5 (no Sigmoid op yet)" not in notes:
        notes.append("sigmoid as 0.5*tanh(x/2)+0.5 (no Sigmoid op yet)")
    return tw.tanh(x * 0.5) * 0.5 + 0.5


def build(model, device, params=None):
    """The model's training graph with every op under ``device`` (None: no device scope)."""
    p = params or init_params(model)
    g = tw.Graph()
    notes: list = []
    with g.as_default(), (g.device(device) if device else _null_scope()):
        if model == "mlp":
            x = tw.placeholder(tw.float32, [None, 784], name="x")
            y = tw.placeholder(tw.int32, [None], name="y")
            h = x
            for i in range(3):
                h = tw.matmul(h, tw.Variable(p[f"w{i}"], name=f"w{i}")) + \
                    tw.Variable(p[f"b{i}"], name=f"b{i}")
                if i < 2:
                    h = tw.nn.relu(h)
            loss = tw.reduce_mean(
                tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
            train = tw.train.GradientDescentOptimizer(0.1).minimize(loss)
            feed = {x: p["x"], y: p["y"]}
        elif model == "lstm":
            ids = tw.placeholder(tw.int32, [32, 20], name="ids")
            targets = tw.placeholder(tw.int32, [32, 20], name="targets")
            emb = tw.Variable(p["emb"], name="embedding")
            w, b = tw.Variable(p["w"], name="lstm_w"), tw.Variable(p["b"], name="lstm_b")
            w_out = tw.Variable(p["w_out"], name="softmax_w")
            b_out = tw.Variable(p["b_out"], name="softmax_b")
            xs = tw.unstack(tw.gather(emb, ids), axis=1)
            h = c = tw.constant(np.zeros((32, 256), np.float32))
            hs = []
            for x_t in xs:
                z = tw.matmul(tw.concat([x_t, h], 1), w) + b
                i_g, f_g, g_g, o_g = tw.split(z, 4, axis=1)
                c = _sigmoid(f_g + 1.0, notes) * c + _sigmoid(i_g, notes) * tw.tanh(g_g)
                h = _sigmoid(o_g, notes) * tw.tanh(c)
                hs.append(h)
            out = tw.reshape(tw.stack(hs, axis=1), [-1, 256])
            logits = tw.matmul(out, w_out) + b_out
            loss = tw.reduce_mean(tw.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tw.reshape(targets, [-1]), logits=logits))
            train = tw.train.AdamOptimizer(1e-3).minimize(loss)
            feed = {ids: p["ids"], targets: p["targets"]}
        else:
            x = tw.placeholder(tw.float32, [None, 28, 28, 1], name="x")
            y = tw.placeholder(tw.int32, [None], name="y")
            h = x
            for k in ("c1", "c2"):
                h = tw.nn.conv2d(h, tw.Variable(p[k], name=k), strides=[1, 1, 1, 1],
                                 padding="SAME")
                h = tw.nn.relu(tw.nn.bias_add(h, tw.Variable(p[k + "b"], name=k + "b")))
                h = tw.nn.max_pool(h, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
            h = tw.reshape(h, [-1, 7 * 7 * 64])
            h = tw.nn.relu(tw.matmul(h, tw.Variable(p["f1"], name="f1")) +
                           tw.Variable(p["f1b"], name="f1b"))
            logits = tw.matmul(h, tw.Variable(p["f2"], name="f2")) + \
                tw.Variable(p["f2b"], name="f2b")
            loss = tw.reduce_mean(
                tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            train = tw.train.AdamOptimizer(1e-3).minimize(loss)
            feed = {x: p["x"], y: p["y"]}
        init = tw.global_variables_initializer()
    return Built(g, init, loss, train, feed, notes)


def placement(sess):
    """(op types run on a device, op types run on the CPU) over the session's plans."""
    dev, cpu = set(), set()
    for plan in getattr(sess, "_plans", {}).values():
        for st in plan.steps:
            if st.const is None and not st.transfer:
                (cpu if st.device == "CPU" else dev).add(st.op.type)
    return dev, cpu


def time_tensorweave(model, device, steps, warmup, sync=lambda: None, check_steps=3,
                     fusion=True):
    """(median step seconds, first ``check_steps`` losses, op types left on the CPU, notes).
    ``fusion``: GraphOptions.fusion (device plans fuse elementwise ops into generated kernels)."""
    b = build(model, device)
    cfg = tw.ConfigProto(allow_soft_placement=True,
                         graph_options=tw.GraphOptions(fusion=fusion))
    with tw.Session(graph=b.graph, config=cfg) as sess:
        sess.run(b.init)
        fetches = [b.loss, b.train]
        losses, times = [], []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            loss = sess.run(fetches, b.feed)[0]
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
            if i < check_steps:
                losses.append(float(loss))
        _, cpu_ops = placement(sess) if device else (set(), set())
    return float(np.median(times)) if times else float("nan"), losses, cpu_ops, b.notes


_EMULATED: dict = {}  # the emulated device, registered once


def count_launches(model, fusion=True):
    """(kernel launches, plan steps) of one training step of ``model`` on the NumPy emulation of
    the GPU kernels (``kernels/gpu/emulate.py`` counts what would be a device kernel: each
    ufunc, reduction, copy, generated kernel; views are free). Registers the EMU device."""
    from tensorweave.kernels.gpu import emulate
    if "emu" not in _EMULATED:
        _EMULATED["emu"] = setup_device(True)[0]
    b = build(model, _EMULATED["emu"])
    cfg = tw.ConfigProto(allow_soft_placement=True,
                         graph_options=tw.GraphOptions(fusion=fusion))
    with tw.Session(graph=b.graph, config=cfg) as sess:
        sess.run(b.init)
        sess.run([b.loss, b.train], b.feed)
        emulate.reset_counts()
        sess.run([b.loss, b.train], b.feed)
        n = emulate.COUNTS["launch"]
        plan = list(sess._plans.values())[-1]
        kernels = sum(1 for st in plan.steps if st.const is None and not st.transfer)
    return n, kernels


# --- PyTorch: the same models, weights and batch ----------------------------------------------------
def time_torch(model, steps, warmup, check_steps=3):
    """(median step seconds, first losses, torch version) on CUDA; raises ImportError without
    torch and RuntimeError without a CUDA device."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    p = init_params(model)

    def param(name, transform=None):
        a = p[name] if transform is None else transform(p[name])
        return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)).to(dev))

    if model == "mlp":
        ws = [param(f"w{i}") for i in range(3)]
        bs = [param(f"b{i}") for i in range(3)]
        params = ws + bs
        host = (p["x"], p["y"].astype(np.int64))

        def loss_fn(x, y):
            h = x
            for i in range(3):
                h = h @ ws[i] + bs[i]
                if i < 2:
                    h = F.relu(h)
            return F.cross_entropy(h, y)

        opt = torch.optim.SGD(params, lr=0.1)
    elif model == "lstm":
        emb, w, b = param("emb"), param("w"), param("b")
        w_out, b_out = param("w_out"), param("b_out")
        params = [emb, w, b, w_out, b_out]
        host = (p["ids"].astype(np.int64), p["targets"].astype(np.int64))

        def loss_fn(ids, targets):
            xs = emb[ids]
            h = c = torch.zeros(32, 256, device=dev)
            hs = []
            for t in range(20):
                z = torch.cat([xs[:, t], h], 1) @ w + b
                i_g, f_g, g_g, o_g = z.chunk(4, 1)
                c = torch.sigmoid(f_g + 1.0) * c + torch.sigmoid(i_g) * torch.tanh(g_g)
                h = torch.sigmoid(o_g) * torch.tanh(c)
                hs.append(h)
            logits = torch.stack(hs, 1).reshape(-1, 256) @ w_out + b_out
            return F.cross_entropy(logits, targets.reshape(-1))

        opt = torch.optim.Adam(params, lr=1e-3, eps=1e-8)
    else:
        def oihw(a):
            return a.transpose(3, 2, 0, 1)

        c1, c2 = param("c1", oihw), param("c2", oihw)
        c1b, c2b, f1, f1b, f2, f2b = (param(k) for k in ("c1b", "c2b", "f1", "f1b", "f2", "f2b"))
        params = [c1, c1b, c2, c2b, f1, f1b, f2, f2b]
        host = (np.ascontiguousarray(p["x"].transpose(0, 3, 1, 2)), p["y"].astype(np.int64))

        def loss_fn(x, y):
            h = F.max_pool2d(F.relu(F.conv2d(x, c1, c1b, padding=2)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, c2, c2b, padding=2)), 2)
            h = h.permute(0, 2, 3, 1).reshape(-1, 7 * 7 * 64)  # NHWC flatten, as tensorweave
            h = F.relu(h @ f1 + f1b)
            return F.cross_entropy(h @ f2 + f2b, y)

        opt = torch.optim.Adam(params, lr=1e-3, eps=1e-8)

    losses, times = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = [torch.from_numpy(a).to(dev) for a in host]
        loss = loss_fn(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        if i < check_steps:
            losses.append(value)
    return float(np.median(times)), losses, torch.__version__


def run_all(device, sync, steps=50, warmup=10, cpu_steps=5, torch_ok=True, models=MODELS,
            log=print, deadline=None, launches=True):
    """One row per model: tensorweave on ``device`` with and without elementwise fusion,
    tensorweave on the CPU (NumPy), PyTorch, and (``launches``) the kernel launches per step
    counted on the emulation; each cell is filled or says why not. ``deadline``: a
    time.monotonic() after which the remaining measurements are skipped."""
    rows = []
    for m in models:
        row = {"model": m, "spec": SPECS[m], "notes": []}
        rows.append(row)
        for key, fn in (
                ("tw_gpu", lambda m=m: time_tensorweave(m, device, steps, warmup, sync)),
                ("tw_gpu_unfused", lambda m=m: time_tensorweave(m, device, steps, warmup, sync,
                                                                fusion=False)),
                ("tw_cpu", lambda m=m: time_tensorweave(m, None, cpu_steps, 2)),
                ("torch", (lambda m=m: time_torch(m, steps, warmup)) if torch_ok else None),
                ("launches", (lambda m=m: (count_launches(m, True), count_launches(m, False)))
                 if launches else None)):
            if fn is None:
                row[key] = "not run"
                continue
            if deadline is not None and time.monotonic() > deadline:
                row[key] = "skipped: time budget"
                continue
            log(f"  timing {m} / {key} ...")
            try:
                t0 = time.perf_counter()
                r = fn()
                row[key] = r
                if key == "launches":
                    log(f"    launches/step fused {r[0][0]}, unfused {r[1][0]} "
                        f"(section {time.perf_counter() - t0:.1f}s)")
                    continue
                log(f"    median {r[0] * 1e3:.2f} ms/step (section {time.perf_counter() - t0:.1f}s)")
                if key != "torch":
                    if r[2]:
                        row["notes"].append(f"ops on the CPU in the {key} plan: {sorted(r[2])}")
                    row["notes"] += [n for n in r[3] if n not in row["notes"]]
            except Exception as e:  # noqa: BLE001  (record it, go on)
                row[key] = f"error: {type(e).__name__}: {str(e)[:200]}"
                log(f"    {row[key]}")
        # the same weights and batch: the first losses agree across all three
        ref = row.get("tw_cpu")
        for key in ("tw_gpu", "tw_gpu_unfused", "torch"):
            r = row.get(key)
            if isinstance(r, tuple) and isinstance(ref, tuple) and r[1] and ref[1]:
                n = min(len(r[1]), len(ref[1]))
                err = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(r[1][:n], ref[1][:n]))
                row[f"{key}_loss_err"] = err
    return rows


def _cell(r):
    if isinstance(r, tuple):
        return f"{r[0] * 1e3:.2f}"
    return str(r)


def _launch_cell(r):
    if isinstance(r, tuple):
        (fused, fused_steps), (plain, plain_steps) = r
        return f"{fused} / {plain} ({fused_steps} / {plain_steps} steps)"
    return str(r) if r is not None else "-"


def markdown(rows, device_label="GPU", torch_label="PyTorch"):
    lines = [f"| model | tensorweave {device_label} ms/step (fused) | unfused ms/step "
             f"| tensorweave CPU (NumPy) ms/step | {torch_label} ms/step | tw/torch (fused) "
             f"| tw/torch (unfused) | launches/step fused / unfused (emulated) "
             f"| first-3-step losses vs CPU (rel err: tw {device_label} fused, unfused, torch) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        g, u, t = row.get("tw_gpu"), row.get("tw_gpu_unfused"), row.get("torch")
        ratios = [f"{x[0] / t[0]:.2f}x" if isinstance(x, tuple) and isinstance(t, tuple)
                  else "-" for x in (g, u)]
        errs = ", ".join(f"{row[k]:.1e}" if k in row else "-"
                         for k in ("tw_gpu_loss_err", "tw_gpu_unfused_loss_err",
                                   "torch_loss_err"))
        lines.append(f"| {row['model']}: {row['spec']} | {_cell(g)} | {_cell(u)} "
                     f"| {_cell(row.get('tw_cpu'))} | {_cell(t)} | {ratios[0]} | {ratios[1]} "
                     f"| {_launch_cell(row.get('launches'))} | {errs} |")
    notes = [f"- {row['model']}: {n}" for row in rows for n in row["notes"]]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def setup_device(emulate):
    """(device string, synchronize function, label); registers the emulated device when asked."""
    if emulate:
        from tensorweave.kernels import gpu
        from tensorweave.kernels.gpu.backend import emulated_backend
        from tensorweave.runtime import session as session_lib
        be = emulated_backend()
        gpu.register_all(be, "EMU")
        gpu.install_transfers(be, "EMU")
        session_lib.register_device("EMU", lambda: True)
        return "/device:EMU:0", be.synchronize, "EMU (NumPy emulation)"
    from tensorweave.kernels import gpu
    if not gpu.load():
        raise RuntimeError(f"no GPU: {gpu.unavailable_reason()}")
    return "/gpu:0", gpu.current_backend().synchronize, "GPU"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emulate", action="store_true", help="NumPy emulation of the GPU kernels")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args(argv)
    device, sync, label = setup_device(args.emulate)
    rows = run_all(device, sync, args.steps, args.warmup, torch_ok=not args.emulate,
                   models=[m for m in args.models.split(",") if m])
    print(markdown(rows, label))


if __name__ == "__main__":
    main()
