"""Distributed training from the command line (docs/distributed.md): the shared options of
``tensorweave train <model> --workers N --ps M --mode sync|async|hybrid`` and the distributed
paths of ``train image-classifier`` and ``train translate`` (``train digits`` is in cli.py).
"""

from __future__ import annotations

import json as _json
import os

import click


def distributed_options(fn=None, *, steps=True, json=True):
    """Adds ``--workers --ps --mode --backup --groups --address`` (and ``--steps``, ``--json``
    unless the command already has its own). Use bare or as ``distributed_options(steps=False)``.
    """
    def decorate(fn):
        fn = click.option("--workers", type=int, default=0,
                          help="Worker tasks (0: train in this process).")(fn)
        fn = click.option("--ps", type=int, default=1, help="Parameter-server tasks.")(fn)
        fn = click.option("--mode", type=click.Choice(["sync", "async", "hybrid"]),
                          default="async", help="How workers combine updates.")(fn)
        fn = click.option("--backup", type=int, default=0,
                          help="Backup workers (sync, hybrid).")(fn)
        fn = click.option("--groups", type=int, default=2,
                          help="Hybrid mode: number of asynchronous groups.")(fn)
        fn = click.option("--address", default=None,
                          help="Existing Ray cluster (ray start --head); default: embedded.")(fn)
        if steps:
            fn = click.option("--steps", type=int, default=None,
                              help="Distributed mode: global training steps.")(fn)
        if json:
            fn = click.option("--json", "as_json", is_flag=True,
                              help="Print one final line of JSON with the results.")(fn)
        return fn

    return decorate(fn) if fn is not None else decorate


def image_classifier_options(fn):
    """Distributed-mode sizes of ``train image-classifier`` (small values for quick runs)."""
    fn = click.option("--channels", type=int, default=32, show_default=True,
                      help="Distributed mode: width of the ResNet's first convolution.")(fn)
    fn = click.option("--batch-size", type=int, default=None,
                      help="Distributed mode: examples per worker step (default: the "
                           "dataset's).")(fn)
    fn = click.option("--train-examples", type=int, default=0,
                      help="Distributed mode: train on the first N images (0: all).")(fn)
    fn = click.option("--eval-examples", type=int, default=0,
                      help="Distributed mode: evaluate on the first N test images (0: all).")(fn)
    return fn


def _train(model_fn, workers, ps, mode, backup, groups, steps, address, as_json,
           checkpoint_dir=None):
    from tensorweave.distributed.training import train_distributed
    return train_distributed(model_fn, workers=workers, ps=ps, mode=mode, backup=backup,
                             groups=groups, steps=steps, address=address, json=as_json,
                             checkpoint_dir=checkpoint_dir)


def _examples_per_step(workers, mode, backup, groups):
    if mode == "async":
        return 1
    return max(1, workers // (groups if mode == "hybrid" else 1) - backup)


def run_image_classifier(dataset, epochs, seed, channels, batch_size, train_examples,
                         eval_examples, workers, ps, mode, backup, groups, address, steps,
                         train_dir, as_json):
    """``train image-classifier --workers N``: held-out loss/accuracy of the inference tower."""
    from tensorweave.distributed.app_models import ImageClassifierModel
    from tensorweave.models.image_classifier import CONFIGS
    base = CONFIGS[dataset]
    model = ImageClassifierModel(dataset, channels=channels,
                                 batch_size=batch_size or base.batch_size,
                                 train_examples=train_examples, eval_examples=eval_examples,
                                 seed=seed)
    if steps is None:
        steps = model.steps_for_epochs(epochs or base.epochs,
                                       _examples_per_step(workers, mode, backup, groups))
    result = _train(model, workers, ps, mode, backup, groups, steps, address, as_json,
                    train_dir)
    text = (f"held-out accuracy {result['accuracy']:.2%} after {result['steps']} steps, "
            f"{result['examples_per_sec']:.0f} examples/s")
    click.echo(_json.dumps(result) if as_json else text)
    return result


def run_translate(src, tgt, steps, no_attention, hidden, vocab_size, batch_size, learning_rate,
                  keep_prob, model_dir, restart, seed, eval_pairs, bucket, workers, ps, mode,
                  backup, groups, address, as_json):
    """``train translate --workers N``: the driver builds the vocabularies into ``model_dir``,
    trains on one length bucket, writes the final checkpoint there and scores greedy test BLEU
    on the first ``eval_pairs`` test pairs with it."""
    from tensorweave.distributed.app_models import TranslateModel, test_bleu
    from tensorweave.models import translate as tr
    model_dir = model_dir or tr.default_model_dir(src, tgt) + "-distributed"
    if restart and os.path.isdir(model_dir):
        for f in os.listdir(model_dir):
            if f.startswith(("model.ckpt", "checkpoint", f"{src}.", f"{tgt}.", "config")):
                os.remove(os.path.join(model_dir, f))
    model = TranslateModel(model_dir, source=src, target=tgt, vocab_size=vocab_size,
                           hidden=hidden, attention=not no_attention, batch_size=batch_size,
                           learning_rate=learning_rate, keep_prob=keep_prob,
                           bucket=tuple(bucket), eval_pairs=eval_pairs, seed=seed)
    model.prepare()
    result = _train(model, workers, ps, mode, backup, groups, steps or None, address, as_json,
                    checkpoint_dir=model_dir)
    result["bleu"] = test_bleu(model)
    result["model_dir"] = model_dir
    text = (f"saved to {model_dir}: test BLEU {result['bleu']:.2f} (greedy, {eval_pairs} pairs), "
            f"token accuracy {result['accuracy']:.2%} after {result['steps']} steps, "
            f"{result['examples_per_sec']:.0f} examples/s")
    click.echo(_json.dumps(result) if as_json else text)
    return result
