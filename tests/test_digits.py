"""The seed's first model on real handwritten digits, shortened to run in a second."""

import json
import subprocess
import sys

from tensorweave.models.digits import DigitsConfig, train


def test_mlp_learns_real_digits(tmp_path):
    r = train(DigitsConfig("mnist5k", epochs=4, logdir=str(tmp_path)), progress=False)
    assert r["accuracy"] >= 0.90  # the full demo (30 epochs) reaches >= 95%
    assert r["steps"] == 4 * (4000 // 64)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "mnist5k"))
    acc.Reload()
    assert {"train_loss", "heldout_accuracy"} <= set(acc.Tags()["scalars"])
    assert acc.Graph() is not None


def test_cli_trains_digits_and_prints_json():
    out = subprocess.run([sys.executable, "-m", "tensorweave.cli", "train", "digits",
                          "--epochs", "2", "--json"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) >= {"steps", "examples_per_sec", "loss", "accuracy"}
    assert result["accuracy"] > 0.8
