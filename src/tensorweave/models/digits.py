"""The seed's first picture: examples -> MatMul(weights) -> Add(biases) -> Relu -> ... ->
softmax cross-entropy with labels, trained by gradient descent on real handwritten digits.

``python -m tensorweave.models.digits`` trains on the 5,000 real MNIST digits and on
Fashion-MNIST and prints held-out accuracy (what ``make demo`` runs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import tensorweave as tw


@dataclass
class DigitsConfig:
    dataset: str = "mnist5k"  # or "fashion"
    hidden: tuple = (256, 256)
    batch_size: int = 64
    epochs: int = 30
    learning_rate: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    shift_augment: int = 2  # random shifts of up to this many pixels (0: none)
    logdir: str | None = "runs/digits"  # TensorBoard events (tensorweave board runs/digits)
    log_every: int = 50


# Fashion-MNIST: 60,000 examples, no shift augmentation (clothes are centred)
FASHION_CONFIG = DigitsConfig("fashion", epochs=15, batch_size=128, learning_rate=0.03,
                              shift_augment=0)


def build_mlp(x, hidden, num_classes=10, seed=0):
    """A ReLU MLP: ``x -> [MatMul -> BiasAdd -> Relu] * len(hidden) -> logits``."""
    h = x
    for i, units in enumerate(hidden):
        with tw.variable_scope(f"layer{i + 1}"):
            w = tw.get_variable("weights", [h.shape[1].value, units],
                                initializer=tw.glorot_uniform_initializer(seed=seed + i))
            b = tw.get_variable("biases", [units], initializer=tw.zeros_initializer())
            h = tw.nn.relu(tw.nn.bias_add(tw.matmul(h, w), b))
    with tw.variable_scope("logits"):
        w = tw.get_variable("weights", [h.shape[1].value, num_classes],
                            initializer=tw.glorot_uniform_initializer(seed=seed + 99))
        b = tw.get_variable("biases", [num_classes], initializer=tw.zeros_initializer())
        return tw.nn.bias_add(tw.matmul(h, w), b)


def load(dataset: str):
    from tensorweave.data import load_fashion_mnist, load_mnist_5k
    if dataset == "mnist5k":
        return load_mnist_5k()
    if dataset == "fashion":
        return load_fashion_mnist()
    raise ValueError(f"Unknown dataset {dataset!r}: expected 'mnist5k' or 'fashion'")


def _shift(batch: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Shifts each 28x28 image by up to ``max_shift`` pixels (zero fill)."""
    imgs = batch.reshape(-1, 28, 28)
    out = np.zeros_like(imgs)
    dx, dy = rng.integers(-max_shift, max_shift + 1, size=(2, len(imgs)))
    for i, (a, b) in enumerate(zip(dx, dy)):
        src = imgs[i, max(0, -a):28 - max(0, a), max(0, -b):28 - max(0, b)]
        out[i, max(0, a):max(0, a) + src.shape[0], max(0, b):max(0, b) + src.shape[1]] = src
    return out.reshape(batch.shape)


def train(config: DigitsConfig = DigitsConfig(), progress: bool = True, data=None) -> dict:
    """Trains the MLP and returns ``{"accuracy", "seconds", "steps", "loss"}`` on held-out data."""
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = data if data is not None else load(config.dataset)
    graph = tw.Graph()
    with graph.as_default():
        tw.set_random_seed(config.seed)
        x = tw.placeholder(tw.float32, [None, 784], name="images")
        y = tw.placeholder(tw.int64, [None], name="labels")
        logits = build_mlp(x, config.hidden, seed=config.seed)
        loss = tw.reduce_mean(
            tw.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        global_step = tw.train.get_or_create_global_step()
        opt = tw.train.MomentumOptimizer(config.learning_rate, config.momentum)
        train_op = opt.minimize(loss, global_step=global_step)
        correct = tw.equal(tw.argmax(logits, 1), y)
        accuracy = tw.reduce_mean(tw.cast(correct, tw.float32), name="accuracy")
        init = tw.global_variables_initializer()
        if config.logdir:
            loss_summary = tw.summary.scalar("train_loss", loss)
            acc_summary = tw.summary.scalar("heldout_accuracy", accuracy)
    writer = None
    if config.logdir:
        import os
        writer = tw.summary.FileWriter(os.path.join(config.logdir, config.dataset), graph)
    rng = np.random.default_rng(config.seed)
    n = len(x_train)
    steps_per_epoch = n // config.batch_size
    total = steps_per_epoch * config.epochs
    start = time.perf_counter()
    with tw.Session(graph=graph) as sess:
        sess.run(init)
        bar = tqdm(total=total, desc=f"digits[{config.dataset}]", unit="step",
                   disable=not progress, mininterval=0.5)
        last = float("nan")
        for epoch in range(config.epochs):
            order = rng.permutation(n)
            for s in range(steps_per_epoch):
                idx = order[s * config.batch_size:(s + 1) * config.batch_size]
                xb = x_train[idx]
                if config.shift_augment:
                    xb = _shift(xb, rng, config.shift_augment)
                feed = {x: xb, y: y_train[idx]}
                if writer is not None and bar.n % config.log_every == 0:
                    last, _, summ, step = sess.run([loss, train_op, loss_summary, global_step],
                                                   feed)
                    writer.add_summary(summ, step)
                else:
                    last, _ = sess.run([loss, train_op], feed)
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{last:.3f}")
        bar.close()
        seconds = time.perf_counter() - start
        acc = float(np.mean([sess.run(accuracy, {x: x_test[i:i + 1000], y: y_test[i:i + 1000]})
                             for i in range(0, len(x_test), 1000)]))
        steps = int(sess.run(global_step))
        if writer is not None:
            writer.add_summary(sess.run(acc_summary, {x: x_test[:1000], y: y_test[:1000]}),
                               steps)
            writer.close()
    return {"accuracy": acc, "seconds": seconds, "steps": steps, "loss": float(last)}


def main():
    results = {}
    for cfg in (DigitsConfig("mnist5k"),
                FASHION_CONFIG):
        r = train(cfg)
        results[cfg.dataset] = r
        name = {"mnist5k": "real MNIST digits (1,000 held out)",
                "fashion": "Fashion-MNIST test set (10,000)"}[cfg.dataset]
        print(f"{name}: held-out accuracy {r['accuracy']:.2%} after {r['steps']} steps "
              f"in {r['seconds']:.1f} s")
    return results


if __name__ == "__main__":
    main()
