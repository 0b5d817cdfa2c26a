"""tw.data: sources and transformations (a table of pipelines vs expected elements),
iterators' session-local state, end of sequence, re-initialization, prefetch and map."""

import collections
import threading
import time

import numpy as np
import pytest

import tensorweave as tw

Dataset = tw.data.Dataset


def drain(ds_or_next, sess=None, init=None, feed=None, limit=1000):
    """All elements an iterator yields until OutOfRangeError (fails if it never ends)."""
    own = sess is None
    if isinstance(ds_or_next, Dataset):
        nxt = ds_or_next.make_one_shot_iterator().get_next()
    else:
        nxt = ds_or_next
    sess = sess or tw.Session()
    try:
        if init is not None:
            sess.run(init, feed)
        out = []
        for _ in range(limit):
            try:
                out.append(sess.run(nxt))
            except tw.errors.OutOfRangeError:
                return out
        raise AssertionError(f"iterator did not end within {limit} elements")
    finally:
        if own:
            sess.close()


def as_py(x):
    """Nested ndarrays -> nested Python lists/tuples, for exact comparison."""
    if isinstance(x, dict):
        return {k: as_py(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(as_py(v) for v in x)
    return np.asarray(x).tolist()


X = np.arange(12, dtype=np.float32).reshape(6, 2)
Y = np.arange(6, dtype=np.int64)

Case = collections.namedtuple("Case", "name build expected")

CASES = [
    Case("slices", lambda: Dataset.from_tensor_slices(Y), list(range(6))),
    Case("slices_tuple", lambda: Dataset.from_tensor_slices((X, Y)),
         [(X[i].tolist(), i) for i in range(6)]),
    Case("slices_dict", lambda: Dataset.from_tensor_slices({"x": X[:2], "y": Y[:2]}),
         [{"x": X[i].tolist(), "y": i} for i in range(2)]),
    Case("slices_python_list", lambda: Dataset.from_tensor_slices([1, 2, 3]), [1, 2, 3]),
    Case("from_tensors", lambda: Dataset.from_tensors((X[:2], 7)),
         [(X[:2].tolist(), 7)]),
    Case("range", lambda: Dataset.range(5), [0, 1, 2, 3, 4]),
    Case("range_step", lambda: Dataset.range(2, 11, 3), [2, 5, 8]),
    Case("batch_remainder", lambda: Dataset.range(7).batch(3),
         [[0, 1, 2], [3, 4, 5], [6]]),
    Case("batch_drop_remainder", lambda: Dataset.range(7).batch(3, drop_remainder=True),
         [[0, 1, 2], [3, 4, 5]]),
    Case("batch_tuple", lambda: Dataset.from_tensor_slices((X, Y)).batch(4),
         [(X[:4].tolist(), [0, 1, 2, 3]), (X[4:].tolist(), [4, 5])]),
    Case("repeat", lambda: Dataset.range(3).repeat(2), [0, 1, 2, 0, 1, 2]),
    Case("repeat_then_batch", lambda: Dataset.range(3).repeat(2).batch(4),
         [[0, 1, 2, 0], [1, 2]]),
    Case("take", lambda: Dataset.range(10).take(3), [0, 1, 2]),
    Case("take_all", lambda: Dataset.range(3).take(-1), [0, 1, 2]),
    Case("skip", lambda: Dataset.range(5).skip(3), [3, 4]),
    Case("skip_all", lambda: Dataset.range(5).skip(-1), []),
    Case("shard", lambda: Dataset.range(10).shard(3, 1), [1, 4, 7]),
    Case("zip", lambda: Dataset.zip((Dataset.range(3), Dataset.range(10, 20))),
         [(0, 10), (1, 11), (2, 12)]),
    Case("zip_dict", lambda: Dataset.zip({"a": Dataset.range(2), "b": Dataset.range(5, 7)}),
         [{"a": 0, "b": 5}, {"a": 1, "b": 6}]),
    Case("concatenate", lambda: Dataset.range(2).concatenate(Dataset.range(5, 7)),
         [0, 1, 5, 6]),
    Case("filter", lambda: Dataset.from_tensor_slices((Y, np.array([1, 0, 0, 1, 1, 0])))
         .filter(lambda v, keep: tw.cast(keep, tw.bool)).map(lambda v, keep: v), [0, 3, 4]),
    Case("map_tuple", lambda: Dataset.from_tensor_slices((X, Y)).map(
        lambda x, y: (tw.reduce_sum(x * 2.0), y + 1)),
         [(float(X[i].sum() * 2), i + 1) for i in range(6)]),
    Case("map_dict", lambda: Dataset.from_tensor_slices({"x": X[:2]}).map(
        lambda d: {"s": tw.reduce_sum(d["x"]), "x": d["x"]}),
         [{"s": float(X[i].sum()), "x": X[i].tolist()} for i in range(2)]),
    Case("map_parallel", lambda: Dataset.range(20).map(lambda x: x * 10,
                                                        num_parallel_calls=4),
         [10 * i for i in range(20)]),
    Case("map_then_batch", lambda: Dataset.range(5).map(lambda x: tw.cast(x, tw.float32) / 2.0)
         .batch(2), [[0.0, 0.5], [1.0, 1.5], [2.0]]),
    Case("prefetch", lambda: Dataset.range(50).map(lambda x: x + 1).prefetch(3),
         list(range(1, 51))),
    Case("prefetch_autotune", lambda: Dataset.range(5).prefetch(tw.data.experimental.AUTOTUNE),
         list(range(5))),
    Case("prefetch_batched_repeat", lambda: Dataset.range(4).batch(3).prefetch(1).repeat(2),
         [[0, 1, 2], [3], [0, 1, 2], [3]]),
    Case("cache_repeat", lambda: Dataset.range(3).map(lambda x: x * 2).cache().repeat(2),
         [0, 2, 4, 0, 2, 4]),
    Case("padded_batch", lambda: Dataset.from_generator(
        lambda: iter([[1], [2, 3], [4, 5, 6]]), tw.int32, [None]).padded_batch(2, [None]),
         [[[1, 0], [2, 3]], [[4, 5, 6]]]),
    Case("padded_batch_fixed", lambda: Dataset.from_generator(
        lambda: iter([[1], [2, 3]]), tw.int32, [None]).padded_batch(2, [4], padding_values=-1),
         [[[1, -1, -1, -1], [2, 3, -1, -1]]]),
    Case("generator", lambda: Dataset.from_generator(
        lambda: ((i, [i, i]) for i in range(3)), (tw.int64, tw.float32), ((), (2,))),
         [(i, [float(i), float(i)]) for i in range(3)]),
    Case("empty_repeat", lambda: Dataset.range(0).repeat(), []),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_pipeline(case):
    with tw.Graph().as_default():
        got = [as_py(e) for e in drain(case.build())]
    assert got == case.expected


def test_static_specs():
    with tw.Graph().as_default():
        ds = Dataset.from_tensor_slices((X, Y))
        assert ds.output_types == (tw.float32, tw.int64)
        assert [s.as_list() for s in ds.output_shapes] == [[2], []]
        b = ds.batch(4)
        assert [s.as_list() for s in b.output_shapes] == [[None, 2], [None]]
        bd = ds.batch(4, drop_remainder=True)
        x, y = bd.make_one_shot_iterator().get_next()
        assert x.shape.as_list() == [4, 2] and y.shape.as_list() == [4]
        assert x.op is y.op and x.op.type == "IteratorGetNext"  # one op per element
        m = ds.map(lambda a, b: {"f": tw.cast(b, tw.float32) * 2.0})
        assert m.output_types == {"f": tw.float32}


def test_get_next_nested_like_element():
    with tw.Graph().as_default():
        Pt = collections.namedtuple("Pt", "x y")
        it = Dataset.from_tensor_slices({"p": Pt(X, Y), "z": Y}).make_one_shot_iterator()
        nxt = it.get_next()
        assert isinstance(nxt["p"], Pt)
        with tw.Session() as sess:
            v = sess.run(nxt)
        assert isinstance(v["p"], Pt) and v["p"].y == 0 and v["p"].x.tolist() == [0.0, 1.0]


def test_out_of_range_every_later_run_and_message():
    with tw.Graph().as_default():
        nxt = Dataset.range(2).make_one_shot_iterator().get_next()
        with tw.Session() as sess:
            assert [sess.run(nxt), sess.run(nxt)] == [0, 1]
            for _ in range(2):
                with pytest.raises(tw.errors.OutOfRangeError, match="End of sequence"):
                    sess.run(nxt)


def test_initializable_iterator_reinit_and_placeholders():
    with tw.Graph().as_default():
        data = tw.placeholder(tw.float32, [None])
        it = Dataset.from_tensor_slices(data).map(lambda v: v * 10.0).make_initializable_iterator()
        nxt = it.get_next()
        with tw.Session() as sess:
            with pytest.raises(tw.errors.FailedPreconditionError, match="initialized"):
                sess.run(nxt)
            got = drain(nxt, sess, it.initializer, {data: [1.0, 2.0]})
            assert got == [10.0, 20.0]
            # re-initializing restarts, here on other fed data
            got = drain(nxt, sess, it.initializer, {data: [3.0, 4.0, 5.0]})
            assert got == [30.0, 40.0, 50.0]
            sess.run(it.initializer, {data: [7.0, 8.0]})
            assert sess.run(nxt) == 70.0
            sess.run(it.initializer, {data: [9.0]})  # mid-way restart
            assert drain(nxt, sess) == [90.0]


def test_one_shot_rejects_placeholders():
    with tw.Graph().as_default():
        data = tw.placeholder(tw.float32, [None])
        with pytest.raises(ValueError, match="make_initializable_iterator"):
            Dataset.from_tensor_slices(data).make_one_shot_iterator()
        # constants are fine
        c = tw.constant([1.0, 2.0])
        assert drain(Dataset.from_tensor_slices(c)) == [1.0, 2.0]


def test_reinitializable_iterator_switches_datasets():
    with tw.Graph().as_default():
        train = Dataset.range(0, 3)
        val = Dataset.range(100, 102)
        it = tw.data.Iterator.from_structure(train.output_types, train.output_shapes)
        nxt = it.get_next()
        init_train, init_val = it.make_initializer(train), it.make_initializer(val)
        with tw.Session() as sess:
            assert drain(nxt, sess, init_train) == [0, 1, 2]
            assert drain(nxt, sess, init_val) == [100, 101]
        with pytest.raises(TypeError, match="types"):
            it.make_initializer(Dataset.from_tensor_slices(X))


def test_two_sessions_have_independent_state():
    with tw.Graph().as_default():
        nxt = Dataset.range(5).make_one_shot_iterator().get_next()
        s1, s2 = tw.Session(), tw.Session()
        try:
            assert [s1.run(nxt), s1.run(nxt), s1.run(nxt)] == [0, 1, 2]
            assert s2.run(nxt) == 0
            assert s1.run(nxt) == 3
            assert drain(nxt, s2) == [1, 2, 3, 4]
        finally:
            s1.close()
            s2.close()


def test_shuffle_is_a_permutation_and_seeded():
    with tw.Graph().as_default():
        def run(seed, reshuffle=True):
            ds = Dataset.range(20).shuffle(8, seed=seed, reshuffle_each_iteration=reshuffle)
            return drain(ds.repeat(2).batch(20))

        a, b = run(3), run(3)
        assert [x.tolist() for x in a] == [x.tolist() for x in b]  # same seed, same order
        e1, e2 = a[0].tolist(), a[1].tolist()
        assert sorted(e1) == list(range(20)) and sorted(e2) == list(range(20))
        assert e1 != list(range(20))
        assert e1 != e2  # reshuffled each epoch
        c = run(4)
        assert c[0].tolist() != e1
        f = run(3, reshuffle=False)
        assert f[0].tolist() == f[1].tolist()


def test_shuffle_buffer_one_keeps_order():
    with tw.Graph().as_default():
        assert drain(Dataset.range(6).shuffle(1, seed=0)) == list(range(6))


def test_map_runs_tw_ops_and_random_flip():
    with tw.Graph().as_default():
        imgs = np.arange(24, dtype=np.float32).reshape(4, 2, 3)

        def prep(img, flip):
            mean = tw.reduce_mean(img)
            centered = img - mean
            flipped = tw.reverse(centered, [1])
            return flip * flipped + (1.0 - flip) * centered

        flips = np.array([1, 0, 1, 0], np.float32)
        got = drain(Dataset.from_tensor_slices((imgs, flips)).map(prep, num_parallel_calls=2))
        for i, g in enumerate(got):
            c = imgs[i] - imgs[i].mean()
            np.testing.assert_allclose(g, c[:, ::-1] if flips[i] else c)


def test_map_errors_are_clear():
    with tw.Graph().as_default():
        with pytest.raises(ValueError, match="returned None"):
            Dataset.range(3).map(lambda x: None)
        outer = tw.constant(1.0)
        with pytest.raises(ValueError, match="captured"):
            Dataset.range(3).map(lambda x: outer)


def test_batch_shape_mismatch_error():
    with tw.Graph().as_default():
        ds = Dataset.from_generator(lambda: iter([[1], [2, 3]]), tw.int32, [None]).batch(2)
        with pytest.raises(tw.errors.InvalidArgumentError, match="different shapes"):
            drain(ds)


def test_from_generator_checks_and_restarts():
    calls = []

    def gen():
        calls.append(1)
        yield from ([1.0, 2.0], [3.0, 4.0])

    with tw.Graph().as_default():
        ds = Dataset.from_generator(gen, tw.float32, tw.TensorShape([2]))
        assert ds.output_shapes.as_list() == [2]
        it = ds.make_initializable_iterator()
        nxt = it.get_next()
        with tw.Session() as sess:
            assert [v.tolist() for v in drain(nxt, sess, it.initializer)] == [[1, 2], [3, 4]]
            drain(nxt, sess, it.initializer)
        assert len(calls) == 2  # a fresh generator per initialization
        bad = Dataset.from_generator(lambda: iter([[1.0, 2.0, 3.0]]), tw.float32, [2])
        with pytest.raises(tw.errors.InvalidArgumentError, match="not compatible"):
            drain(bad)


def test_prefetch_same_elements_as_without():
    with tw.Graph().as_default():
        base = Dataset.from_tensor_slices((X, Y)).shuffle(6, seed=5).map(
            lambda x, y: (x * 3.0, y)).batch(4).repeat(3)
        plain = [as_py(e) for e in drain(base)]
        pre = [as_py(e) for e in drain(base.prefetch(2))]
        assert plain == pre and len(plain) == 6


def test_prefetch_runs_ahead_of_the_consumer():
    produced = []

    def gen():
        for i in range(10):
            produced.append(i)
            yield i

    with tw.Graph().as_default():
        nxt = Dataset.from_generator(gen, tw.int64, []).prefetch(3).make_one_shot_iterator() \
            .get_next()
        with tw.Session() as sess:
            assert sess.run(nxt) == 0
            deadline = time.monotonic() + 5.0
            while len(produced) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            # consumed 1; the buffer holds 3 and the thread waits holding one more
            assert len(produced) == 5
            assert drain(nxt, sess) == list(range(1, 10))

        produced.clear()
        nxt = Dataset.from_generator(gen, tw.int64, []).make_one_shot_iterator().get_next()
        with tw.Session() as sess:
            sess.run(nxt)
            time.sleep(0.05)
            assert len(produced) == 1  # without prefetch nothing runs ahead


def test_prefetch_error_propagates_and_threads_stop_on_close():
    def bad():
        yield 1
        raise RuntimeError("boom in generator")

    with tw.Graph().as_default():
        with pytest.raises(Exception, match="boom in generator"):
            drain(Dataset.from_generator(bad, tw.int64, []).prefetch(2))
        before = {t for t in threading.enumerate() if t.name == "tw-data-prefetch"}
        nxt = Dataset.range(10**9).prefetch(4).make_one_shot_iterator().get_next()
        sess = tw.Session()
        assert sess.run(nxt) == 0
        started = {t for t in threading.enumerate() if t.name == "tw-data-prefetch"} - before
        assert started
        sess.close()
        for t in started:
            t.join(2.0)
            assert not t.is_alive()


def test_iterator_in_training_loop():
    # a TF1-style loop: the step consumes the iterator directly
    with tw.Graph().as_default():
        xs = np.linspace(-1, 1, 32).astype(np.float32)[:, None]
        ds = Dataset.from_tensor_slices((xs, 3.0 * xs)).batch(8).repeat(20)
        x, y = ds.make_one_shot_iterator().get_next()
        w = tw.Variable(tw.zeros([1, 1]))
        loss = tw.reduce_mean((tw.matmul(x, w) - y) * (tw.matmul(x, w) - y))
        grad, = tw.gradients(loss, [w])
        step = tw.assign_sub(w, 0.5 * grad)
        n = 0
        with tw.Session() as sess:
            sess.run(tw.global_variables_initializer())
            while True:
                try:
                    sess.run(step)
                    n += 1
                except tw.errors.OutOfRangeError:
                    break
            assert n == 80
            assert abs(sess.run(w)[0, 0] - 3.0) < 1e-2


def test_argument_errors():
    with tw.Graph().as_default():
        with pytest.raises(ValueError, match="same size"):
            Dataset.from_tensor_slices((np.zeros(3), np.zeros(4)))
        with pytest.raises(ValueError, match="batch_size"):
            Dataset.range(3).batch(0)
        with pytest.raises(TypeError, match="iterated through the graph"):
            iter(Dataset.range(3))
        with pytest.raises(ValueError, match="scalar bool"):
            Dataset.range(3).filter(lambda x: x)


def test_vectorized_batch_path_matches_element_path():
    # shuffle(N)+batch over slices takes the block path; an identity map before batch forces
    # the per-element path (map has no block path) on the same elements: both must agree.
    with tw.Graph().as_default():
        xs = np.arange(50, dtype=np.float32).reshape(25, 2)
        ident = (lambda d: d, lambda d: d.map(lambda x, y: (x, y)))
        for make in (lambda d, m: m(d.shuffle(25, seed=9)).batch(4).repeat(3),
                     lambda d, m: m(d.shuffle(100, seed=1).repeat(2)).batch(7, True),
                     lambda d, m: m(d).batch(6).repeat(2)):
            fast, slow = (drain(make(Dataset.from_tensor_slices((xs, np.arange(25))), m))
                          for m in ident)
            assert [as_py(e) for e in fast] == [as_py(e) for e in slow]
        r_fast = drain(Dataset.range(3, 40, 2).shuffle(50, seed=2).batch(5))
        r_slow = drain(Dataset.range(3, 40, 2).shuffle(50, seed=2))
        assert np.concatenate(r_fast).tolist() == [int(v) for v in r_slow]
        # a batch handed out never aliases the user's array
        nxt = Dataset.from_tensor_slices(xs).batch(5).make_one_shot_iterator().get_next()
        with tw.Session() as sess:
            b = sess.run(nxt)
        b[0, 0] = -1.0
        assert xs[0, 0] == 0.0


def test_graph_seed_makes_shuffle_and_map_randomness_repeatable():
    def run():
        with tw.Graph().as_default():
            tw.set_random_seed(5)
            ds = Dataset.range(30).shuffle(10).map(
                lambda x: (x, tw.random_uniform([], 0, 1000, dtype=tw.int32)))
            return [as_py(e) for e in drain(ds)]

    a, b = run(), run()
    assert a == b
    assert [x for x, _ in a] != list(range(30))
    assert len({r for _, r in a}) > 1


def test_feedable_iterator_switches_by_string_handle():
    with tw.Graph().as_default():
        train = Dataset.range(100).repeat()
        val = Dataset.range(1000, 1003)
        train_it = train.make_one_shot_iterator()
        val_it = val.make_initializable_iterator()
        handle = tw.placeholder(tw.string, [])
        it = tw.data.Iterator.from_string_handle(handle, train.output_types, train.output_shapes)
        nxt = it.get_next()
        assert nxt.shape.as_list() == [] and nxt.dtype == tw.int64
        with tw.Session() as sess:
            th, vh = sess.run([train_it.string_handle(), val_it.string_handle()])
            assert [sess.run(nxt, {handle: th}) for _ in range(3)] == [0, 1, 2]
            sess.run(val_it.initializer)
            assert [sess.run(nxt, {handle: vh}) for _ in range(3)] == [1000, 1001, 1002]
            with pytest.raises(tw.errors.OutOfRangeError):
                sess.run(nxt, {handle: vh})
            assert sess.run(nxt, {handle: th}) == 3  # the training position is kept
            floats = Dataset.from_tensor_slices(X).make_one_shot_iterator()
            fh = sess.run(floats.string_handle())
            with pytest.raises(tw.errors.InvalidArgumentError, match="expects"):
                sess.run(nxt, {handle: fh})


def test_text_line_dataset_reads_files_in_order(tmp_path):
    import gzip
    (tmp_path / "a.txt").write_bytes(b"hello world\nsecond line\r\nno newline")
    with gzip.open(tmp_path / "b.txt.gz", "wb") as f:
        f.write(b"zipped\n")
    plain = tw.data.TextLineDataset([str(tmp_path / "a.txt")])
    zipped = tw.data.TextLineDataset(str(tmp_path / "b.txt.gz"), compression_type="GZIP")
    words = plain.concatenate(zipped).map(
        lambda s: tw.py_func(lambda b: np.int64(len(b.split())), [s], tw.int64))
    lines = plain.concatenate(zipped).make_one_shot_iterator().get_next()
    counts = words.make_one_shot_iterator().get_next()
    assert lines.dtype == tw.string and lines.shape.as_list() == []
    got_lines, got_counts = [], []
    with tw.Session() as s:
        for _ in range(4):
            got_lines.append(s.run(lines))  # bytes, as TF1 fetches a string scalar
            got_counts.append(int(s.run(counts)))
        with pytest.raises(tw.errors.OutOfRangeError):
            s.run(lines)
    assert got_lines == [b"hello world", b"second line", b"no newline", b"zipped"]
    assert got_counts == [2, 2, 2, 1]
    missing = tw.data.TextLineDataset(str(tmp_path / "nope.txt")).make_one_shot_iterator()
    with tw.Session() as s, pytest.raises(tw.errors.NotFoundError, match="nope.txt"):
        s.run(missing.get_next())
    with pytest.raises(ValueError, match="compression_type"):
        tw.data.TextLineDataset("x", compression_type="BZ2")
