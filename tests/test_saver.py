"""tw.train.Saver: round trips, max_to_keep, the state file, validation before any write,
and atomicity under SIGKILL mid-save."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.train import saver as saver_lib

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(autouse=True)
def fresh_graph():
    g = tw.Graph()
    with g.as_default():
        yield g


def _model(w_shape=(3, 4), b_shape=(4,), extra=False):
    w = tw.Variable(np.arange(np.prod(w_shape), dtype=np.float32).reshape(w_shape), name="w")
    b = tw.Variable(np.full(b_shape, 0.5, np.float32), name="b")
    out = [w, b]
    if extra:
        out.append(tw.Variable(np.zeros(2, np.float32), name="extra"))
    return out


def test_round_trip_save_change_restore(tmp_path):
    w, b = _model()
    step = tw.train.get_or_create_global_step()
    saver = tw.train.Saver()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(step.assign(100))
        path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=step)
        assert path == str(tmp_path / "model.ckpt-100")
        assert os.path.isfile(path + ".npz") and os.path.isfile(path + ".meta")
        saved = sess.run([w, b, step])
        sess.run([w.assign(tw.zeros([3, 4])), b.assign(tw.ones([4])), step.assign(7)])
        saver.restore(sess, path)
        for got, want in zip(sess.run([w, b, step]), saved):
            np.testing.assert_array_equal(got, want)
    # a fresh session needs no initializer: restore initializes
    with tw.Session() as sess:
        saver.restore(sess, path)
        assert sess.run(tw.is_variable_initialized(w))
        np.testing.assert_array_equal(sess.run(w), saved[0])


def test_data_file_is_a_plain_npz(tmp_path):
    with tw.variable_scope("layer"):
        w = tw.get_variable("w", [2, 3])
    tw.Variable(np.array([1, 2, 3], np.int64), name="n")
    saver = tw.train.Saver()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "m"), write_meta_graph=False)
        wv = sess.run(w)
    with np.load(path + ".npz") as data:
        assert sorted(data.files) == ["layer/w", "n"]
        np.testing.assert_array_equal(data["layer/w"], wv)
        assert data["n"].dtype == np.int64
    assert tw.train.list_variables(str(tmp_path)) == [("layer/w", [2, 3]), ("n", [3])]
    np.testing.assert_array_equal(tw.train.load_variable(path, "layer/w"), wv)
    np.testing.assert_array_equal(tw.train.load_variable(str(tmp_path), "n:0"), [1, 2, 3])
    reader = tw.train.load_checkpoint(path)
    assert reader.has_tensor("n") and not reader.has_tensor("m")
    assert reader.get_variable_to_dtype_map()["n"] == tw.int64
    with pytest.raises(tw.errors.NotFoundError, match="Key nope not found"):
        reader.get_tensor("nope")
    reader.close()


def test_var_list_dict_renames_and_list_selects(tmp_path):
    w, b = _model()
    saver = tw.train.Saver({"renamed/w": w})
    only_b = tw.train.Saver([b])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        p1 = saver.save(sess, str(tmp_path / "a"))
        p2 = only_b.save(sess, str(tmp_path / "b"))
    assert tw.train.list_variables(p1) == [("renamed/w", [3, 4])]
    assert tw.train.list_variables(p2) == [("b", [4])]
    with pytest.raises(ValueError, match="same name"):
        tw.train.Saver([w, w.op.outputs[0]])  # the variable and its ref tensor: one name
    with pytest.raises(ValueError, match="No variables to save"):
        tw.train.Saver([])
    assert tw.train.Saver([], allow_empty=True).last_checkpoints == []


def test_max_to_keep_deletes_oldest_and_state_file(tmp_path):
    _model()
    saver = tw.train.Saver(max_to_keep=2)
    prefix = str(tmp_path / "model.ckpt")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        paths = [saver.save(sess, prefix, global_step=s) for s in (10, 20, 30, 40)]
    assert saver.last_checkpoints == paths[2:]
    for p in paths[:2]:
        assert not os.path.exists(p + ".npz") and not os.path.exists(p + ".meta")
        assert not tw.train.checkpoint_exists(p)
    for p in paths[2:]:
        assert tw.train.checkpoint_exists(p)
    assert tw.train.latest_checkpoint(str(tmp_path)) == paths[-1]
    state = tw.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == paths[-1]
    assert state.all_model_checkpoint_paths == paths[2:]
    text = (tmp_path / "checkpoint").read_text()
    assert text.splitlines()[:3] == [f'model_checkpoint_path: "{paths[3]}"',
                                     f'all_model_checkpoint_paths: "{paths[2]}"',
                                     f'all_model_checkpoint_paths: "{paths[3]}"']


def test_max_to_keep_none_and_keep_every_n_hours(tmp_path):
    _model()
    keep_all = tw.train.Saver(max_to_keep=None)
    hourly = tw.train.Saver(max_to_keep=1, keep_checkpoint_every_n_hours=0.0)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        a = [keep_all.save(sess, str(tmp_path / "a"), global_step=s) for s in range(3)]
        h = [hourly.save(sess, str(tmp_path / "h"), global_step=s) for s in range(3)]
    assert all(tw.train.checkpoint_exists(p) for p in a)
    assert all(tw.train.checkpoint_exists(p) for p in h)  # each preserved as an "hourly" one
    assert hourly.last_checkpoints == h[-1:]


def test_latest_checkpoint_missing_and_relative_dir(tmp_path, monkeypatch):
    assert tw.train.latest_checkpoint(str(tmp_path)) is None
    assert tw.train.get_checkpoint_state(str(tmp_path)) is None
    (tmp_path / "checkpoint").write_text("this is not a state file\n")
    assert tw.train.latest_checkpoint(str(tmp_path)) is None
    _model()
    monkeypatch.chdir(tmp_path)
    os.mkdir("run")
    saver = tw.train.Saver()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        p = saver.save(sess, os.path.join("run", "model"), global_step=3)
    assert p == os.path.join("run", "model-3")
    assert 'model_checkpoint_path: "model-3"' in (tmp_path / "run" / "checkpoint").read_text()
    assert tw.train.latest_checkpoint("run") == p
    # a listed checkpoint whose data file vanished is not returned
    os.remove(p + ".npz")
    assert tw.train.latest_checkpoint("run") is None


def test_shape_mismatch_names_every_variable_and_changes_nothing(tmp_path):
    _model()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver().save(sess, str(tmp_path / "model.ckpt"), global_step=10)
    with tw.Graph().as_default():
        w, b = _model(w_shape=(4, 4), b_shape=(3,))
        ok = tw.Variable(np.zeros(2, np.float32), name="ok")
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            before = sess.run([w, b, ok])
            with pytest.raises(tw.errors.InvalidArgumentError) as e:
                tw.train.Saver([w, b]).restore(sess, path)
            msg = str(e.value)
            assert msg.startswith(f"Restoring checkpoint {path} failed: ")
            assert "variable 'w' has shape (3, 4) in the checkpoint but (4, 4) in the graph" in msg
            assert "variable 'b' has shape (4,) in the checkpoint but (3,) in the graph" in msg
            for got, want in zip(sess.run([w, b, ok]), before):
                np.testing.assert_array_equal(got, want)


def test_missing_variable_is_named_and_nothing_is_restored(tmp_path):
    w, b = _model()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver().save(sess, str(tmp_path / "m"))
    with tw.Graph().as_default():
        w2, b2, extra = _model(extra=True)
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            sess.run(w2.assign(tw.zeros([3, 4])))
            with pytest.raises(tw.errors.NotFoundError,
                               match="variable 'extra' is not in the checkpoint"):
                tw.train.Saver().restore(sess, path)
            assert not sess.run(w2).any()  # w was in the checkpoint but not written either
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        _restore_fresh(w, str(tmp_path / "nothing"))


def _restore_fresh(var, path):
    with tw.Session() as sess:
        tw.train.Saver([var]).restore(sess, path)


def test_dtype_cast_only_when_safe(tmp_path):
    tw.Variable(np.array([1, 2], np.int32), name="i")
    tw.Variable(np.array([0.1, 0.2], np.float64), name="f")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = tw.train.Saver().save(sess, str(tmp_path / "m"))
    with tw.Graph().as_default():
        i64 = tw.Variable(np.zeros(2, np.int64), name="i")
        f32 = tw.Variable(np.zeros(2, np.float32), name="f")
        with tw.Session() as sess:
            tw.train.Saver([i64]).restore(sess, path)
            got = sess.run(i64)
            assert got.dtype == np.int64 and list(got) == [1, 2]
            with pytest.raises(tw.errors.InvalidArgumentError,
                               match="dtype float64 in the checkpoint, which cannot be cast "
                                     "safely to float32"):
                tw.train.Saver([f32]).restore(sess, path)


def test_saving_uninitialized_variable_fails(tmp_path):
    _model()
    with tw.Session() as sess:
        with pytest.raises(tw.errors.FailedPreconditionError, match="uninitialized.*w"):
            tw.train.Saver().save(sess, str(tmp_path / "m"))
    assert not os.listdir(tmp_path)
    with pytest.raises(ValueError, match="doesn't exist"):
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            tw.train.Saver().save(sess, str(tmp_path / "no" / "such" / "m"))


def test_crash_between_data_and_state_keeps_previous_latest(tmp_path, monkeypatch):
    w, _ = _model()
    saver = tw.train.Saver()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        first = saver.save(sess, str(tmp_path / "m"), global_step=1)

        def crash(*a, **k):
            raise OSError("disk full")

        monkeypatch.setattr(saver_lib, "update_checkpoint_state", crash)
        with pytest.raises(OSError):
            saver.save(sess, str(tmp_path / "m"), global_step=2)
    assert tw.train.latest_checkpoint(str(tmp_path)) == first
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_write_state_false_and_latest_filename(tmp_path):
    _model()
    saver = tw.train.Saver()
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        saver.save(sess, str(tmp_path / "m"), global_step=1, write_state=False)
        assert tw.train.latest_checkpoint(str(tmp_path)) is None
        p = saver.save(sess, str(tmp_path / "m"), global_step=2, latest_filename="other")
    assert tw.train.latest_checkpoint(str(tmp_path)) is None
    assert tw.train.latest_checkpoint(str(tmp_path), latest_filename="other") == p


# --- SIGKILL mid-save -----------------------------------------------------------------------------
_KILLED_SAVER = textwrap.dedent("""
    import io, os, sys, time
    import numpy as np
    import tensorweave as tw
    from tensorweave.train import saver as saver_lib

    ckpt_dir, marker, same_prefix = sys.argv[1], sys.argv[2], sys.argv[3] == "same"
    small = tw.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="small")
    big = tw.Variable(tw.zeros([500, 1000]), name="big")
    saver = tw.train.Saver()
    prefix = os.path.join(ckpt_dir, "model.ckpt")
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        saver.save(sess, prefix, global_step=None if same_prefix else 1)
        sess.run([small.assign(small + 100.0), big.assign(tw.ones([500, 1000]))])
        write_npy = saver_lib._write_npy

        def stalled(f, arr):
            if arr.size < 500 * 1000:
                return write_npy(f, arr)
            buf = io.BytesIO()
            write_npy(buf, arr)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])   # half of the big array is on its way to disk
            f.flush()
            open(marker, "w").close()
            time.sleep(120)                    # killed here
            f.write(data[len(data) // 2:])

        saver_lib._write_npy = stalled
        saver.save(sess, prefix, global_step=None if same_prefix else 2)
    print("second save finished: the kill came too late")
""")


@pytest.mark.parametrize("mode", ["new_step", "same"])
def test_sigkill_mid_save_keeps_previous_checkpoint(tmp_path, mode):
    script = tmp_path / "killed_saver.py"
    script.write_text(_KILLED_SAVER)
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    marker = tmp_path / "writing"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt_dir), str(marker),
                             "same" if mode == "same" else "step"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"saver process exited early ({proc.returncode}): {err.decode()}")
            assert time.monotonic() < deadline, "second save never started"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    files = os.listdir(ckpt_dir)
    assert [f for f in files if ".tmp-" in f], f"the kill should leave a partial temp file: {files}"
    first = str(ckpt_dir / ("model.ckpt" if mode == "same" else "model.ckpt-1"))
    assert tw.train.latest_checkpoint(str(ckpt_dir)) == first
    if mode == "new_step":
        assert not tw.train.checkpoint_exists(str(ckpt_dir / "model.ckpt-2"))
    # the previous checkpoint loads, with the first save's values
    small = tw.Variable(np.zeros((2, 3), np.float32), name="small")
    big = tw.Variable(tw.ones([500, 1000]), name="big")
    with tw.Session() as sess:
        tw.train.Saver().restore(sess, tw.train.latest_checkpoint(str(ckpt_dir)))
        sv, bv = sess.run([small, big])
    np.testing.assert_array_equal(sv, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert not bv.any()
    assert tw.train.list_variables(str(ckpt_dir)) == [("big", [500, 1000]), ("small", [2, 3])]


def test_partitioned_variable_saves_its_shards(tmp_path):
    pv = tw.get_variable("emb", [5, 2], partitioner=tw.fixed_size_partitioner(2),
                         initializer=tw.random_uniform_initializer(seed=1))
    saver = tw.train.Saver([pv])
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        before = sess.run(tw.convert_to_tensor(pv))
        path = saver.save(sess, str(tmp_path / "m"))
        sess.run([v.assign(tw.zeros(v.shape.as_list())) for v in pv])
        saver.restore(sess, path)
        np.testing.assert_array_equal(sess.run(tw.convert_to_tensor(pv)), before)
    assert tw.train.list_variables(path) == [("emb/part_0", [3, 2]), ("emb/part_1", [2, 2])]


def test_saver_saves_and_restores_through_a_cluster_session(tmp_path):
    """Variables on parameter servers: before the fix, save() looked in the client session's
    empty local storage and said they were uninitialized."""
    from tensorweave.distributed.inprocess import InProcessCluster

    spec = tw.train.ClusterSpec({"ps": 1, "worker": 1})
    g = tw.Graph()
    with g.as_default():
        with tw.device("/job:ps/task:0"):
            w = tw.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
        bump = w.assign_add(tw.ones([2, 3]))
        saver = tw.train.Saver()
    first, second = InProcessCluster(spec), InProcessCluster(spec)
    try:
        with tw.Session(target=first, graph=g) as sess:
            sess.run(w.initializer)
            sess.run(bump)
            path = saver.save(sess, str(tmp_path / "model"))
        with tw.Session(target=second, graph=g) as sess:
            saver.restore(sess, path)
            np.testing.assert_array_equal(sess.run(w), np.arange(6).reshape(2, 3) + 1)
    finally:
        first.shutdown()
        second.shutdown()


def test_init_from_checkpoint_warm_starts_mapped_variables(tmp_path):
    g = tw.Graph()
    with g.as_default():
        with tw.variable_scope("pretrained"):
            tw.get_variable("kernel", initializer=np.full((2, 3), 5.0, np.float32))
            tw.get_variable("bias", initializer=np.full(3, -1.0, np.float32))
        saver = tw.train.Saver()
        with tw.Session() as s:
            s.run(tw.global_variables_initializer())
            path = saver.save(s, str(tmp_path / "pre"))
    g2 = tw.Graph()
    with g2.as_default():
        with tw.variable_scope("model/encoder"):
            k2 = tw.get_variable("kernel", [2, 3], initializer=tw.zeros_initializer())
            b2 = tw.get_variable("bias", [3], initializer=tw.zeros_initializer())
        head = tw.Variable(np.ones(4, np.float32), name="head")
        tw.train.init_from_checkpoint(str(tmp_path), {"pretrained/": "model/encoder/"})
        single = tw.Variable(np.zeros(3, np.float32), name="single")
        tw.train.init_from_checkpoint(path, {"pretrained/bias": single})
        with pytest.raises(ValueError, match=r"shape \[2, 3\] in the checkpoint"):
            tw.train.init_from_checkpoint(path, {"pretrained/kernel": "head"})
        with pytest.raises(ValueError, match="'missing' \\(for 'head'\\) is not in the checkpoint"):
            tw.train.init_from_checkpoint(path, {"missing": "head"})
        with tw.variable_scope("model/encoder"):  # a typo under a mapped scope: named
            tw.get_variable("kernal", [2, 3])
        with pytest.raises(ValueError, match="'pretrained/kernal'.*not in the checkpoint"):
            tw.train.init_from_checkpoint(path, {"pretrained/": "model/encoder/"})
        count = tw.Variable([0, 0, 0], name="count")
        with pytest.raises(ValueError, match="cannot be cast safely to int32"):
            tw.train.init_from_checkpoint(path, {"pretrained/bias": count})
        with tw.Session() as s:
            s.run(tw.global_variables_initializer())
            got = s.run([k2, b2, head, single])
            single.load([7.0, 7.0, 7.0], s)  # load still writes the value given
            assert s.run(single).tolist() == [7.0, 7.0, 7.0]
    assert got[0].tolist() == [[5.0] * 3] * 2 and got[1].tolist() == [-1.0] * 3
    assert got[2].tolist() == [1.0] * 4 and got[3].tolist() == [-1.0] * 3
