"""The image classifier and the translation model on parameter servers
(tensorweave.distributed.app_models): in-process runs that must lower the held-out loss (and
update batch norm's moving averages on the PS), and the ``tensorweave train image-classifier``
/ ``train translate`` command lines with ``--workers 2 --ps 1`` on the session's Ray instance."""

import importlib.util
import json
import math

import numpy as np
import pytest

import tensorweave as tw
from ray_fixture import ray_session  # noqa: F401
from tensorweave.distributed.app_models import ImageClassifierModel, TranslateModel, test_bleu
from tensorweave.distributed.training import DistributedTrainer, TrainConfig, read_checkpoint

needs_text = pytest.mark.skipif(
    importlib.util.find_spec("sentencepiece") is None or
    importlib.util.find_spec("sacrebleu") is None,
    reason="sentencepiece / sacrebleu are not installed (make setup)")


@pytest.fixture(autouse=True)
def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def _small_images():
    return ImageClassifierModel("mnist5k", channels=4, batch_size=16, train_examples=512,
                                eval_examples=200)


def _small_translate(model_dir):
    return TranslateModel(str(model_dir), vocab_size=500, hidden=16, batch_size=16,
                          bucket=(10, 12), eval_pairs=50, train_pairs=4000)


def _initial_loss(model_fn):
    """Held-out loss of a freshly initialized replica, in a local session."""
    g = tw.Graph()
    with g.as_default():
        m = model_fn()
        init = tw.global_variables_initializer()
    loss = m.loss if m.eval_loss is None else m.eval_loss
    losses, ns = [], []
    with tw.Session(graph=g) as sess:
        sess.run(init)
        for batch in m.eval_batches():
            losses.append(sess.run(loss, dict(zip(m.inputs, batch))))
            ns.append(len(batch[0]))
    return float(np.average(losses, weights=ns))


def _train_inprocess(model_fn, tmp_path, mode, steps):
    cfg = TrainConfig(model_fn, workers=2, ps=1, mode=mode, steps=steps,
                      checkpoint_dir=str(tmp_path), checkpoint_secs=60.0)
    trainer = DistributedTrainer(cfg, backend="inprocess", progress=False)
    try:
        return trainer.run()
    finally:
        trainer.shutdown()


def test_image_classifier_inprocess_learns_and_updates_moving_averages(tmp_path):
    model = _small_images()
    before = _initial_loss(model)
    r = _train_inprocess(model, tmp_path, "sync", 80)
    assert r["steps"] >= 80
    assert math.isfinite(r["loss"]) and r["loss"] < before - 0.2, (before, r)
    assert r["accuracy"] > 0.25  # 10 classes: chance is ~0.1
    _, values = read_checkpoint(str(tmp_path))
    # the moving averages live on the PS and move with the workers' steps (init: 0 and 1)
    assert np.abs(values["resnet/stem/moving_mean"]).max() > 1e-3
    assert np.abs(values["resnet/stem/moving_variance"] - 1.0).max() > 1e-3


@needs_text
def test_translate_inprocess_learns_and_translator_loads_the_ps_parameters(tmp_path):
    model = _small_translate(tmp_path)
    model.prepare()
    before = _initial_loss(model)
    r = _train_inprocess(model, tmp_path, "async", 60)
    assert r["steps"] >= 60
    assert math.isfinite(r["loss"]) and r["loss"] < before - 0.3, (before, r)
    assert 0.0 < r["accuracy"] <= 1.0
    bleu = test_bleu(model)  # Translator restores the driver's final checkpoint
    assert 0.0 <= bleu <= 100.0


def _cli_json(args):
    from click.testing import CliRunner

    from tensorweave.cli import main
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    last = [ln for ln in result.output.splitlines() if ln.startswith("{")][-1]
    return json.loads(last)


@pytest.mark.ray
def test_cli_image_classifier_on_ray(ray_session, tmp_path):  # noqa: F811
    r = _cli_json(["train", "image-classifier", "--dataset", "mnist5k", "--workers", "2",
                   "--ps", "1", "--mode", "sync", "--steps", "30", "--channels", "4",
                   "--batch-size", "16", "--train-examples", "512", "--eval-examples", "200",
                   "--train-dir", str(tmp_path), "--json"])
    assert {"steps", "examples_per_sec", "loss", "accuracy"} <= set(r)
    assert r["steps"] >= 30 and r["examples_per_sec"] > 0
    assert math.isfinite(r["loss"]) and 0.0 <= r["accuracy"] <= 1.0


@pytest.mark.ray
@needs_text
def test_cli_translate_on_ray(ray_session, tmp_path):  # noqa: F811
    r = _cli_json(["train", "translate", "--workers", "2", "--ps", "1", "--mode", "async",
                   "--steps", "30", "--hidden", "16", "--vocab-size", "500", "--batch-size",
                   "16", "--bucket", "10", "12", "--eval-pairs", "50", "--model-dir",
                   str(tmp_path), "--json"])
    assert {"steps", "examples_per_sec", "loss", "accuracy", "bleu"} <= set(r)
    assert r["steps"] >= 30 and r["examples_per_sec"] > 0
    assert math.isfinite(r["loss"]) and 0.0 <= r["accuracy"] <= 1.0
    assert 0.0 <= r["bleu"] <= 100.0
    assert (tmp_path / "de.model").is_file() and (tmp_path / "config.json").is_file()


def test_twin_initializers_on_two_ps_initialize_from_one_task():
    """Common subexpression elimination merges the twin shape constants of identical
    initializers; the partition's op order must still put a producer before its users
    (runtime.plan._order_by_key): this failed with 'cannot access local variable' before."""
    from tensorweave.distributed.inprocess import InProcessCluster
    from tensorweave.distributed.session import DistributedSession
    spec = tw.train.ClusterSpec({"ps": 2, "worker": 1})
    cluster = InProcessCluster(spec, recv_timeout=10.0)
    g = tw.Graph()
    try:
        with g.as_default(), tw.device(tw.train.replica_device_setter(
                cluster=spec, worker_device="/job:ps/task:0")):
            vs = [tw.get_variable(f"k{i}", [3, 3, 4, 4],
                                  initializer=tw.variance_scaling_initializer(2.0))
                  for i in range(3)]
            init = tw.variables_initializer(tw.global_variables())
        sess = DistributedSession(cluster, graph=g, task="/job:ps/task:0")
        sess.run(init)
        values = sess.run([v.value() for v in vs])
    finally:
        cluster.shutdown()
    assert {v.device for v in vs} == {"/job:ps/task:0", "/job:ps/task:1"}
    assert all(np.isfinite(x).all() and np.abs(x).mean() > 0.05 for x in values)
