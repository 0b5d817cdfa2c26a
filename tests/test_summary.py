"""tw.summary ops and FileWriter, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorboard.summary.writer.event_file_writer")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

import tensorweave as tw  # noqa: E402


def _accumulate(logdir):
    ea = EventAccumulator(str(logdir), size_guidance={"images": 0, "histograms": 0,
                                                      "tensors": 0, "scalars": 0})
    ea.Reload()
    return ea


@pytest.fixture()
def logged_run(tmp_path):
    """Three traced steps of a tiny model with every summary kind, written to tmp_path."""
    g = tw.Graph()
    with g.as_default():
        x = tw.placeholder(tw.float32, [None, 3], name="x")
        with tw.name_scope("layer"), tw.device("/cpu:0"):
            w = tw.Variable(np.ones((3, 2), np.float32), name="w")
            y = tw.matmul(x, w)
        loss = tw.reduce_mean(y, name="loss_value")
        with tw.name_scope("train"):
            tw.summary.scalar("loss", loss)
        tw.summary.histogram("w", w)
        tw.summary.image("img", tw.reshape(x, [-1, 1, 3, 1]), max_outputs=2)
        tw.summary.text("note", tw.constant("hello **world**"))
        merged = tw.summary.merge_all()
        init = tw.global_variables_initializer()
    values = []
    with tw.Session(graph=g) as sess, tw.summary.FileWriter(str(tmp_path), g) as writer:
        sess.run(init)
        for step in range(3):
            md = tw.RunMetadata()
            xv = np.full((4, 3), step, np.float32)
            s, lv = sess.run([merged, loss], {x: xv}, run_metadata=md,
                             options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE))
            values.append(float(lv))
            writer.add_summary(s, step)
        writer.add_run_metadata(md, "step2", 2)
    return tmp_path, values


def test_event_file_holds_every_summary_kind(logged_run):
    logdir, values = logged_run
    ea = _accumulate(logdir)
    tags = ea.Tags()
    assert tags["scalars"] == ["train/loss"]
    assert tags["histograms"] == ["w"]
    assert sorted(tags["images"]) == ["img/image/0", "img/image/1"]
    assert tags["tensors"] == ["note"] and tags["graph"] and tags["run_metadata"] == ["step2"]
    scalars = ea.Scalars("train/loss")
    assert [e.step for e in scalars] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in scalars], values)
    h = ea.Histograms("w")[0].histogram_value
    assert (h.min, h.max, h.num, h.sum, h.sum_squares) == (1.0, 1.0, 6.0, 6.0, 6.0)
    assert sum(h.bucket) == 6.0
    img = ea.Images("img/image/0")[-1]
    assert (img.width, img.height) == (3, 1)
    assert img.encoded_image_string.startswith(b"\x89PNG")
    note = ea.Tensors("note")[0].tensor_proto
    assert note.string_val == [b"hello **world**"]
    assert ea.SummaryMetadata("note").plugin_data.plugin_name == "text"
    stats = ea.RunMetadata("step2").step_stats.dev_stats[0].node_stats
    assert "layer/MatMul" in {n.node_name for n in stats}


def test_graph_event_has_types_scopes_devices_and_shapes(logged_run):
    logdir, _ = logged_run
    nodes = {n.name: n for n in _accumulate(logdir).Graph().node}
    mm = nodes["layer/MatMul"]
    assert mm.op == "MatMul" and "CPU:0" in mm.device
    assert [d.size for d in mm.attr["_output_shapes"].list.shape[0].dim] == [-1, 2]
    assert nodes["train/loss"].op == "ScalarSummary"


def test_png_encoding_matches_pixels():
    pytest.importorskip("PIL")
    import io

    from PIL import Image

    from tensorweave.summary.summary_ops import encode_png
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(img))))
    np.testing.assert_array_equal(decoded, img)


def test_float_images_are_rescaled():
    g = tw.Graph()
    with g.as_default():
        s = tw.summary.image("im", tw.constant([[[[0.0], [0.5], [1.0]]]]), max_outputs=1)
        with tw.Session() as sess:
            summ = tw.summary.Summary.FromString(sess.run(s))
    assert summ.value[0].tag == "im/image"
    pytest.importorskip("PIL")
    import io

    from PIL import Image
    px = np.asarray(Image.open(io.BytesIO(summ.value[0].image.encoded_image_string)))
    assert px.reshape(-1).tolist() == [0, 128, 255]


def test_histogram_buckets_count_every_value():
    from tensorweave.summary.summary_ops import histogram_proto
    x = np.concatenate([np.random.RandomState(0).standard_normal(1000), [0.0, 0.0, 5e3]])
    h = histogram_proto(x)
    assert sum(h.bucket) == x.size
    limits = np.array(h.bucket_limit)
    assert np.all(np.diff(limits) > 0)
    # each value lies below its bucket's limit and at or above the previous one
    idx = np.searchsorted(limits, x, side="right")
    counts = np.bincount(idx, minlength=len(limits))
    np.testing.assert_array_equal(counts[:len(limits)], h.bucket)
    assert len(h.bucket) < 400  # runs of empty buckets are merged
    with pytest.raises(ValueError, match="Nan or Inf"):
        histogram_proto([1.0, np.nan])


def test_scalar_needs_a_scalar_and_merge_rejects_duplicate_tags():
    g = tw.Graph()
    with g.as_default():
        with pytest.raises(ValueError, match="scalar tensor"):
            tw.summary.scalar("v", tw.constant([1.0, 2.0]))
        a = tw.summary.scalar("a", tw.constant(1.0), collections=[])
        dup = tw.summary.merge([a, a])
        assert tw.summary.merge_all() is None  # collections=[] kept it out of SUMMARIES
        with tw.Session() as sess, pytest.raises(tw.errors.OpError, match="Duplicate tag"):
            sess.run(dup)


def test_scalar_summaries_use_name_scopes_and_families():
    g = tw.Graph()
    with g.as_default():
        with tw.name_scope("eval"):
            s1 = tw.summary.scalar("acc", tw.constant(0.5))
        s2 = tw.summary.scalar("acc", tw.constant(0.7))
        s3 = tw.summary.scalar("lr", tw.constant(0.1), family="opt")
        with tw.Session() as sess:
            tags = [tw.summary.Summary.FromString(v).value[0].tag
                    for v in sess.run([s1, s2, s3])]
    assert tags == ["eval/acc", "acc", "opt/lr"]


def test_writer_accepts_summary_protos_and_reopens(tmp_path):
    w = tw.summary.FileWriter(str(tmp_path))
    s = tw.summary.Summary(value=[tw.summary.Summary.Value(tag="manual", simple_value=2.5)])
    w.add_summary(s, global_step=7)
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.add_summary(s, 8)
    w.reopen()
    w.add_summary(s.SerializeToString(), 9)
    w.close()
    assert [(e.step, e.value) for e in _accumulate(tmp_path).Scalars("manual")] == \
        [(7, 2.5), (9, 2.5)]
