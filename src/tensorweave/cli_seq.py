"""Command-line front ends of the sequence applications (added to ``tensorweave`` in cli.py)::

    tensorweave train translate [--from de --to en] [--minutes 25] [--no-attention]
    tensorweave train translate --workers 2 --ps 1 --mode sync --steps 2000 [--json]
    tensorweave translate "Sie näht ihre Kleider selbst."
    tensorweave translate --to de "She makes her own clothes."
    tensorweave train smart-reply
    tensorweave reply "Are you coming to the party?"

Heavy imports (tensorweave's core, sentencepiece, sacrebleu) happen inside the commands.
"""

from __future__ import annotations

import json
import os
import sys

import click

from tensorweave.cli_distributed import distributed_options


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _directions(src, tgt):
    if src is None and tgt is None:
        src, tgt = "de", "en"
    elif src is None:
        src = {"en": "de", "de": "en"}.get(tgt)
    elif tgt is None:
        tgt = {"en": "de", "de": "en"}.get(src)
    if {src, tgt} != {"de", "en"}:
        _fail(f"--from/--to: expected de->en or en->de, got {src}->{tgt}")
    return src, tgt


@click.command("translate")
@click.option("--from", "src", type=click.Choice(["de", "en"]), default=None,
              help="Source language (default: the other one of --to, else de).")
@click.option("--to", "tgt", type=click.Choice(["de", "en"]), default=None,
              help="Target language (default: en).")
@click.option("--minutes", type=float, default=25.0, show_default=True,
              help="Training-time budget (evaluation not counted).")
@click.option("--steps", type=int, default=0, help="Stop after this many steps (0: no limit).")
@click.option("--no-attention", is_flag=True, help="Plain encoder-decoder (for comparison).")
@click.option("--hidden", type=int, default=256, show_default=True)
@click.option("--vocab-size", type=int, default=4000, show_default=True,
              help="Subword units per language.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--learning-rate", type=float, default=0.002, show_default=True)
@click.option("--keep-prob", type=float, default=1.0, show_default=True,
              help="Dropout keep probability (1: no dropout; 0.7 for runs past ~30 minutes).")
@click.option("--label-smoothing", type=click.FloatRange(0.0, 0.5), default=0.0,
              show_default=True, help="Spread this share of each target over the vocabulary.")
@click.option("--word-dropout", type=click.FloatRange(0.0, 0.5), default=0.0,
              show_default=True, help="Replace source subwords by <unk> with this chance.")
@click.option("--eval-minutes", type=float, default=5.0, show_default=True,
              help="Greedy test BLEU every so many training minutes (curve.jsonl).")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
              help="What the budget counts: wall time or this process's CPU time.")
@click.option("--beam", type=int, default=4, show_default=True,
              help="Also score beam search of this width at the end (0: skip).")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Default: ~/.cache/tensorweave/models/translate-<from>-<to>.")
@click.option("--restart", is_flag=True, help="Start over instead of resuming a checkpoint.")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the final results as JSON.")
@click.option("--eval-pairs", type=int, default=200, show_default=True,
              help="Distributed mode: test pairs for token accuracy and the final greedy BLEU.")
@click.option("--bucket", type=(int, int), default=(30, 32), show_default=True,
              help="Distributed mode: the one (source, target) length bucket trained.")
@distributed_options(steps=False, json=False)
def train_translate(src, tgt, minutes, steps, no_attention, hidden, vocab_size, batch_size,
                    learning_rate, keep_prob, label_smoothing, word_dropout, eval_minutes, clock,
                    beam, model_dir, restart, seed, as_json, eval_pairs, bucket, workers, ps,
                    mode, backup, groups, address):
    """Attention seq2seq LSTM on the de-en sentence pairs; BLEU on the 1,000 test pairs.
    With --workers N: trained on Ray parameter servers (one length bucket, default model dir
    translate-<from>-<to>-distributed; docs/distributed.md)."""
    src, tgt = _directions(src, tgt)
    if workers:
        from tensorweave.cli_distributed import run_translate
        run_translate(src, tgt, steps, no_attention, hidden, vocab_size, batch_size,
                      learning_rate, keep_prob, model_dir, restart, seed, eval_pairs, bucket,
                      workers, ps, mode, backup, groups, address, as_json)
        return
    from tensorweave.data import DatasetNotFoundError
    from tensorweave.models import translate as tr

    model_dir = model_dir or tr.default_model_dir(src, tgt)
    config = tr.TranslateConfig(source=src, target=tgt, attention=not no_attention,
                                hidden=hidden, embed=hidden, vocab_size=vocab_size,
                                batch_size=batch_size, learning_rate=learning_rate,
                                keep_prob=keep_prob, label_smoothing=label_smoothing,
                                word_dropout=word_dropout, minutes=minutes, max_steps=steps,
                                eval_minutes=eval_minutes, clock=clock, seed=seed)
    try:
        record = tr.train(config, model_dir, progress=not as_json, restart=restart,
                          log=lambda m: click.echo(m, err=True))
    except DatasetNotFoundError as e:
        _fail(str(e))
    result = {"model_dir": model_dir, **record}
    if beam and beam > 1:
        scores = tr.evaluate(model_dir, beam_sizes=(1, beam))
        result["test_bleu_greedy"] = round(scores[1]["bleu"], 2)
        result[f"test_bleu_beam{beam}"] = round(scores[beam]["bleu"], 2)
        result["decode_seconds"] = {k: round(v["seconds"], 1) for k, v in scores.items()}
        with open(os.path.join(model_dir, "eval.json"), "w") as f:
            json.dump(result, f, indent=1)
    if as_json:
        click.echo(json.dumps(result))
    else:
        text = f"saved to {model_dir}: test BLEU {result.get('test_bleu_greedy')} (greedy)"
        if beam and beam > 1:
            text += f", {result[f'test_bleu_beam{beam}']} (beam {beam})"
        click.echo(text)


@click.command("translate")
@click.argument("text", nargs=-1)
@click.option("--from", "src", type=click.Choice(["de", "en"]), default=None)
@click.option("--to", "tgt", type=click.Choice(["de", "en"]), default=None,
              help="Target language (default: en, i.e. German -> English).")
@click.option("--beam", type=int, default=4, show_default=True, help="Beam width (1: greedy).")
@click.option("--model-dir", "model_dirs", type=click.Path(file_okay=False), multiple=True,
              help="Default: ~/.cache/tensorweave/models/translate-<from>-<to>. Give it more "
                   "than once to decode with an ensemble (same subword vocabularies).")
@click.option("--snapshots", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ensemble the last N checkpoints kept in each model dir (training keeps 2).")
@click.option("--bleu", is_flag=True,
              help="Instead of TEXT: translate the 1,000 test pairs and print sacrebleu BLEU.")
def translate(text, src, tgt, beam, model_dirs, snapshots, bleu):
    """Translate a sentence (German -> English by default)."""
    src, tgt = _directions(src, tgt)
    from tensorweave.models import translate as tr

    if not text and not bleu:
        _fail('nothing to translate: give a sentence (tensorweave translate "Sie näht ihre '
              'Kleider selbst.") or --bleu to score the test set')
    model_dirs = list(model_dirs) or [tr.default_model_dir(src, tgt)]
    try:
        for d in model_dirs:
            c = tr.load_config(d, src, tgt)
            if (c.source, c.target) != (src, tgt):
                _fail(f"the model in {d} translates {c.source}->{c.target}, not {src}->{tgt}")
        tr.limit_blas_threads()
        checkpoints = None
        if snapshots > 1:
            model_dirs, checkpoints = tr.snapshot_members(model_dirs, snapshots)
        if bleu:
            scores = tr.evaluate(model_dirs if len(model_dirs) > 1 else model_dirs[0],
                                 beam_sizes=(beam,), checkpoints=checkpoints)
        elif len(model_dirs) > 1:
            model = tr.EnsembleTranslator(model_dirs, checkpoints=checkpoints)
        else:
            model = tr.Translator(model_dirs[0])
    except (tr.ModelNotFoundError, ValueError) as e:
        _fail(str(e))
    except ImportError as e:
        _fail(f"{e}\nInstall the data and text packages with `make setup` "
              f"(or `pip install 'tensorweave[data]'`).")
    if bleu:
        s = scores[beam]
        how = "greedy" if beam == 1 else f"beam {beam}"
        click.echo(f"test BLEU {s['bleu']:.2f} ({how}, {len(model_dirs)} model"
                   f"{'s' if len(model_dirs) > 1 else ''}, {s['seconds']:.0f} s)")
        return
    click.echo(model.translate([" ".join(text)], beam_size=beam)[0])


@click.command("smart-reply")
@click.option("--epochs", type=int, default=None, help="Reply-model epochs (default 30).")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Default: ~/.cache/tensorweave/models/smart-reply.")
@click.option("--seed", type=int, default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the held-out report as JSON.")
def train_smart_reply(epochs, model_dir, seed, as_json):
    """Trigger model + LSTM reply scorer on conversational python-aiml and chatterbot pairs."""
    from tensorweave.data import DatasetNotFoundError
    from tensorweave.models import smart_reply as sr

    config = sr.SmartReplyConfig(seed=seed)
    if epochs is not None:
        config.epochs = epochs
    model_dir = model_dir or sr.default_model_dir()
    try:
        report = sr.train(config, model_dir, progress=not as_json)
    except DatasetNotFoundError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"saved to {model_dir} ({report['train_seconds']:.0f} s)\n"
               f"trigger: precision {report['trigger_precision']:.1%}, "
               f"recall {report['trigger_recall']:.1%}\n"
               f"replies: recall@1 {report['recall_at_1']:.1%} "
               f"(baseline {report['baseline_recall_at_1']:.1%}), "
               f"recall@3 {report['recall_at_3']:.1%} "
               f"(most-frequent baseline {report['baseline_recall_at_3']:.1%}); "
               f"diverse top 3: {report['recall_at_3_diverse']:.1%} "
               f"(baseline {report['baseline_recall_at_3_diverse']:.1%})")


@click.command("reply")
@click.argument("message", nargs=-1, required=True)
@click.option("--model-dir", type=click.Path(file_okay=False), default=None)
def reply(message, model_dir):
    """Suggest replies to a message (Smart Reply)."""
    from tensorweave.models import smart_reply as sr
    from tensorweave.models.translate import limit_blas_threads

    limit_blas_threads()
    try:
        model = sr.Replier(model_dir)
    except FileNotFoundError as e:
        _fail(str(e))
    s = model.suggest(" ".join(message))
    verdict = "yes" if s["suggest"] else "no (shown anyway)"
    click.echo(f"suggest replies: {verdict} (trigger probability {s['trigger']:.2f})")
    for i, (text, p) in enumerate(s["replies"], 1):
        click.echo(f"  {i}. {text}  ({p:.2f})")
