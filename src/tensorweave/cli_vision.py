"""Vision commands of the ``tensorweave`` CLI (registered in ``cli.py``)::

    tensorweave train image-classifier [--dataset fashion|mnist5k] [--epochs N]
    tensorweave train image-classifier --workers 2 --ps 1 --mode sync [--json]
    tensorweave train captioning [--epochs N] [--model-dir DIR]
    tensorweave caption PICTURE [--translate de] [--model-dir DIR]
"""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from tensorweave.cli_distributed import (
    distributed_options,
    image_classifier_options,
    run_image_classifier,
)


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("image-classifier")
@click.option("--dataset", type=click.Choice(["fashion", "mnist5k"]), default="fashion",
              show_default=True)
@click.option("--epochs", type=int, default=None,
              help="Per network. Default: 15 (fashion), 50 (mnist5k).")
@click.option("--ensemble", type=int, default=None,
              help="Networks trained one after another, softmax averaged. Default: 1.")
@click.option("--train-dir", default=None, help="Checkpoints go here; training resumes from them.")
@click.option("--log", "log_path", default=None, help="Append held-out accuracy (JSON lines).")
@click.option("--device", default=None, help='e.g. "/gpu:0" (needs CuPy and a GPU).')
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print one final line of JSON.")
@image_classifier_options
@distributed_options(json=False)
def train_image_classifier(dataset, epochs, ensemble, train_dir, log_path, device, seed,
                           as_json, channels, batch_size, train_examples, eval_examples,
                           workers, ps, mode, backup, groups, address, steps):
    """A small ResNet (batch norm, residual blocks, shift/flip/rotate/zoom augmentation);
    optionally an ensemble of them. With --workers N: one network trained on Ray parameter
    servers (docs/distributed.md)."""
    if workers:
        run_image_classifier(dataset, epochs, seed, channels, batch_size, train_examples,
                             eval_examples, workers, ps, mode, backup, groups, address, steps,
                             train_dir, as_json)
        return
    from tensorweave.models import image_classifier as ic
    cfg = dataclasses.replace(ic.CONFIGS[dataset], seed=seed, device=device)
    if epochs is not None:
        if epochs < 1:
            _fail(f"--epochs must be at least 1, got {epochs}")
        cfg.epochs = epochs
    if ensemble is not None:
        if ensemble < 1:
            _fail(f"--ensemble must be at least 1, got {ensemble}")
        cfg.ensemble = ensemble
    try:
        r = ic.train(cfg, progress=not as_json, train_dir=train_dir, log=log_path)
    except FileNotFoundError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps({k: v for k, v in r.items() if k != "history"}))
    else:
        members = r.get("member_accuracies")
        if members:
            click.echo("held-out accuracy of each network: "
                       + ", ".join(f"{a:.2%}" for a in members))
        click.echo(f"held-out accuracy {r['accuracy']:.2%}"
                   + (f" (ensemble of {len(members)})" if members else "")
                   + f" after {r['steps']} steps in {r['seconds']:.0f} s "
                   f"({r['cpu_seconds']:.0f} CPU s, {r['ms_per_step']:.0f} ms/step)")


@click.command("captioning")
@click.option("--epochs", type=int, default=None, help="Default: 6.")
@click.option("--pictures", type=int, default=None, help="Training pictures (default 24,000).")
@click.option("--model-dir", default=None, help="Default: ~/.cache/tensorweave/models/captioning.")
@click.option("--device", default=None, help='e.g. "/gpu:0" (needs CuPy and a GPU).')
@click.option("--json", "as_json", is_flag=True, help="Print one final line of JSON.")
def train_captioning(epochs, pictures, model_dir, device, as_json):
    """CNN encoder + LSTM decoder on emoji pictures; scored on held-out combinations."""
    from tensorweave.models import captioning as cap
    cfg = dataclasses.replace(cap.CaptionConfig(), device=device)
    if epochs is not None:
        cfg.epochs = epochs
    if pictures is not None:
        cfg.train_pictures = pictures
    try:
        r = cap.train(cfg, model_dir, progress=not as_json, log=None if as_json else print)
    except FileNotFoundError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps({k: v for k, v in r.items() if k != "examples"}))
    else:
        click.echo(f"held-out BLEU-4 {r['bleu4']:.1f}, exact match {r['exact_match']:.1%}, "
                   f"both objects named in {r['two_object_named']:.1%} of two-object "
                   f"pictures; {r['steps']} steps in {r['seconds']:.0f} s")


@click.command("caption")
@click.argument("picture", type=click.Path(dir_okay=False))
@click.option("--translate", "language", type=click.Choice(["de"]), default=None,
              help="Also translate the caption (English -> German model).")
@click.option("--model-dir", default=None, help="Default: ~/.cache/tensorweave/models/captioning.")
@click.option("--beam", type=int, default=4, help="Beam width for --translate.")
def caption(picture, language, model_dir, beam):
    """Print the caption of PICTURE (any image file, any size: it is resized)."""
    from tensorweave.models import captioning as cap
    try:
        image = cap.load_image(picture)  # before the model: a bad file fails fast
        captioner = cap.Captioner(model_dir)
    except (cap.NotAnImageError, FileNotFoundError) as e:
        _fail(str(e))
    try:
        text = captioner.caption(image[None] if captioner.config.image_size == image.shape[0]
                                 else cap.load_image(picture,
                                                     captioner.config.image_size)[None])[0]
    finally:
        captioner.close()
    click.echo(text)
    if language:
        click.echo(_translate(text, language, beam))


def _translate(text: str, language: str, beam: int) -> str:
    try:
        from tensorweave.models import translate as tr
    except ImportError:
        _fail("the translation model (tensorweave.models.translate) is not available in this "
              "installation")
    model_dir = tr.default_model_dir("en", language)
    try:
        translator = tr.Translator(model_dir, config=tr.load_config(model_dir, "en", language))
    except FileNotFoundError as e:
        _fail(f"{e}\n(needed by --translate {language}: train it with "
              f"`tensorweave train translate --from en --to {language}`)")
    return translator.translate([text], beam_size=beam)[0]
