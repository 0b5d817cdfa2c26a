"""The ``tensorweave`` command line: train and use the applications, and the tools.

    tensorweave train digits [--dataset mnist5k|fashion] [--epochs N]
    tensorweave train digits --workers 2 --ps 1 --mode async     (on Ray, see docs/distributed.md)
    tensorweave train image-classifier|translate --workers 2 --ps 1 --mode sync

Each sub-command imports only what it needs, so ``tensorweave --help`` is instant.
"""

from __future__ import annotations

import json as _json
import sys

import click

from tensorweave.cli_distributed import distributed_options as _distributed_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tensorweave")
def main():
    """tensorweave: dataflow graphs with the TensorFlow 1.x API, on CPUs, GPUs and Ray."""


@main.group()
def train():
    """Train a model (progress bar; held-out evaluation at the end)."""


def _report(result: dict, as_json: bool, text: str):
    if as_json:
        click.echo(_json.dumps(result))
    else:
        click.echo(text)


@train.command("digits")
@click.option("--dataset", type=click.Choice(["mnist5k", "fashion"]), default="mnist5k")
@click.option("--epochs", type=int, default=None)
@click.option("--seed", type=int, default=0)
@_distributed_options
def train_digits(dataset, epochs, seed, workers, ps, mode, backup, groups, address, steps,
                 as_json):
    """The seed's MLP on the real MNIST digits or Fashion-MNIST."""
    if workers:
        from tensorweave.distributed.training import digits_model_fn, train_distributed
        result = train_distributed(digits_model_fn(dataset), workers=workers, ps=ps,
                                   mode=mode, backup=backup, groups=groups, steps=steps,
                                   address=address, json=as_json)
        _report(result, as_json, f"accuracy {result['accuracy']:.2%} after {result['steps']} "
                f"steps, {result['examples_per_sec']:.0f} examples/s")
        return
    import dataclasses

    from tensorweave.models.digits import FASHION_CONFIG, DigitsConfig
    from tensorweave.models.digits import train as train_mlp
    cfg = DigitsConfig(dataset, seed=seed) if dataset == "mnist5k" else \
        dataclasses.replace(FASHION_CONFIG, seed=seed)
    if epochs is not None:
        cfg.epochs = epochs
    r = train_mlp(cfg, progress=not as_json)
    result = {"steps": r["steps"], "examples_per_sec": r["steps"] * cfg.batch_size / r["seconds"],
              "loss": r["loss"], "accuracy": r["accuracy"]}
    _report(result, as_json, f"held-out accuracy {r['accuracy']:.2%} after {r['steps']} steps "
            f"in {r['seconds']:.1f} s")


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


from tensorweave.cli_tools import board, export, inspect_cmd, serve  # noqa: E402

main.add_command(board)
main.add_command(export)
main.add_command(serve)
main.add_command(inspect_cmd)



from tensorweave.cli_seq import reply as _reply  # noqa: E402
from tensorweave.cli_seq import train_smart_reply as _train_smart_reply  # noqa: E402
from tensorweave.cli_seq import train_translate as _train_translate  # noqa: E402
from tensorweave.cli_seq import translate as _translate  # noqa: E402

train.add_command(_train_translate)
train.add_command(_train_smart_reply)
main.add_command(_translate)
main.add_command(_reply)

from tensorweave.cli_vision import caption as _caption  # noqa: E402
from tensorweave.cli_vision import train_captioning as _train_captioning  # noqa: E402
from tensorweave.cli_vision import train_image_classifier as _train_image_classifier  # noqa: E402

train.add_command(_train_image_classifier)
train.add_command(_train_captioning)
main.add_command(_caption)


if __name__ == "__main__":
    main()
