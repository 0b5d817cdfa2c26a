"""Queues (FIFOQueue, RandomShuffleQueue), their close semantics, timeouts, and the
QueueRunner/Coordinator threads that fill them. Every blocking test runs with a timeout."""

import threading
import time

import numpy as np
import pytest

import tensorweave as tw


def session(**kw):
    return tw.Session(config=tw.ConfigProto(operation_timeout_in_ms=kw.get("ms", 2000)))


def test_fifo_order_and_size():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(5, [tw.int32, tw.float32], shapes=[[], [2]])
        v = tw.placeholder(tw.int32, [])
        enq = q.enqueue([v, tw.cast(tw.fill([2], v), tw.float32)])
        a, b = q.dequeue()
        assert a.shape.as_list() == [] and b.shape.as_list() == [2]
        with session() as sess:
            for i in range(4):
                sess.run(enq, {v: i})
            assert sess.run(q.size()) == 4
            got = [sess.run([a, b]) for _ in range(4)]
        assert [int(x) for x, _ in got] == [0, 1, 2, 3]
        assert [y.tolist() for _, y in got] == [[i, i] for i in range(4)]


def test_enqueue_many_dequeue_many_and_up_to():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(10, tw.float32, shapes=[3])
        data = np.arange(21, dtype=np.float32).reshape(7, 3)
        enq = q.enqueue_many([data])
        many = q.dequeue_many(3)
        up_to = q.dequeue_up_to(3)
        assert many.shape.as_list() == [3, 3] and up_to.shape.as_list() == [None, 3]
        with session() as sess:
            sess.run(enq)
            np.testing.assert_array_equal(sess.run(many), data[:3])
            np.testing.assert_array_equal(sess.run(many), data[3:6])
            sess.run(q.close())
            with pytest.raises(tw.errors.OutOfRangeError, match="insufficient elements"):
                sess.run(many)  # 1 left < 3: dequeue_many fails...
            np.testing.assert_array_equal(sess.run(up_to), data[6:])  # ...up_to drains it
            with pytest.raises(tw.errors.OutOfRangeError):
                sess.run(up_to)


def test_close_semantics():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(3, tw.int32)
        enq = q.enqueue(7)
        deq = q.dequeue()
        with session() as sess:
            sess.run(enq)
            sess.run(enq)
            assert not sess.run(q.is_closed())
            sess.run(q.close())
            assert sess.run(q.is_closed())
            with pytest.raises(tw.errors.CancelledError, match="closed"):
                sess.run(enq)
            assert [sess.run(deq), sess.run(deq)] == [7, 7]  # what was enqueued drains
            with pytest.raises(tw.errors.OutOfRangeError, match="is closed"):
                sess.run(deq)


def test_blocked_dequeue_is_released_by_close():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(3, tw.int32)
        deq = q.dequeue()
        close = q.close()
        with session(ms=5000) as sess:
            sess.run(q.size())  # creates the queue
            err = []

            def consumer():
                try:
                    sess.run(deq)
                except tw.errors.OpError as e:
                    err.append(e)

            t = threading.Thread(target=consumer)
            t.start()
            time.sleep(0.1)
            sess.run(close)
            t.join(3.0)
            assert not t.is_alive()
            assert len(err) == 1 and isinstance(err[0], tw.errors.OutOfRangeError)


def test_full_queue_blocks_until_dequeue_and_cancel_pending():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(2, tw.int32)
        v = tw.placeholder(tw.int32, [])
        enq, deq = q.enqueue(v), q.dequeue()
        cancel = q.close(cancel_pending_enqueues=True)
        with session(ms=5000) as sess:
            sess.run(enq, {v: 1})
            sess.run(enq, {v: 2})
            done = []
            t = threading.Thread(target=lambda: done.append(sess.run(enq, {v: 3})))
            t.start()
            time.sleep(0.1)
            assert t.is_alive() and not done  # full: the third enqueue waits
            assert sess.run(deq) == 1
            t.join(3.0)
            assert done == [None]
            assert sess.run(q.size()) == 2

            errs = []

            def blocked():
                try:
                    sess.run(enq, {v: 4})
                except tw.errors.OpError as e:
                    errs.append(e)

            t = threading.Thread(target=blocked)
            t.start()
            time.sleep(0.1)
            sess.run(cancel)
            t.join(3.0)
            assert len(errs) == 1 and isinstance(errs[0], tw.errors.CancelledError)
            assert [sess.run(deq), sess.run(deq)] == [2, 3]


def test_operation_timeout():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(1, tw.int32)
        deq = q.dequeue()
        with session(ms=150) as sess:
            t0 = time.monotonic()
            with pytest.raises(tw.errors.DeadlineExceededError, match="Timed out"):
                sess.run(deq)
            assert time.monotonic() - t0 < 2.0


def test_session_close_cancels_blocked_waits():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(1, tw.int32)
        deq = q.dequeue()
        sess = session(ms=10_000)
        sess.run(q.size())
        errs = []

        def consumer():
            try:
                sess.run(deq)
            except Exception as e:  # noqa: BLE001
                errs.append(e)

        t = threading.Thread(target=consumer)
        t.start()
        time.sleep(0.1)
        sess.close()
        t.join(3.0)
        assert not t.is_alive()
        assert errs and isinstance(errs[0], tw.errors.CancelledError)


def test_random_shuffle_queue_min_after_dequeue():
    with tw.Graph().as_default():
        q = tw.RandomShuffleQueue(20, 5, tw.int32, shapes=[], seed=7)
        v = tw.placeholder(tw.int32, [None])
        enq = q.enqueue_many([v])
        deq = q.dequeue()
        with session(ms=150) as sess:
            sess.run(enq, {v: np.arange(6)})
            first = sess.run(deq)  # 6 > 5 held: one may leave
            with pytest.raises(tw.errors.DeadlineExceededError):
                sess.run(deq)  # 5 left == min_after_dequeue: waits
            sess.run(enq, {v: np.arange(6, 12)})
            rest = [sess.run(deq) for _ in range(6)]
            sess.run(q.close())  # closed: the last min_after_dequeue come out too
            rest += [sess.run(deq) for _ in range(5)]
            with pytest.raises(tw.errors.OutOfRangeError):
                sess.run(deq)
        order = [int(first)] + [int(r) for r in rest]
        assert sorted(order) == list(range(12))
        assert order != list(range(12))

        with session() as s1, session() as s2:  # same seed: same order in each session
            def run(sess):
                sess.run(enq, {v: np.arange(12)})
                sess.run(q.close())
                return [int(sess.run(deq)) for _ in range(12)]
            assert run(s1) == run(s2)


def test_names_and_shape_errors():
    with tw.Graph().as_default():
        q = tw.FIFOQueue(4, [tw.int32, tw.float32], shapes=[[], [2]], names=["i", "f"])
        enq = q.enqueue({"i": 1, "f": [1.0, 2.0]})
        out = q.dequeue()
        assert sorted(out) == ["f", "i"]
        with session() as sess:
            sess.run(enq)
            v = sess.run(out)
        assert v["i"] == 1 and v["f"].tolist() == [1.0, 2.0]
        with pytest.raises(ValueError, match="names"):
            q.enqueue([1, [1.0, 2.0]])
        p = tw.FIFOQueue(2, tw.float32, shapes=[[2]])
        with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)|not compatible"):
            p.enqueue([[1.0, 2.0, 3.0]])
        with pytest.raises(ValueError, match="capacity"):
            tw.FIFOQueue(0, tw.int32)
        with pytest.raises(ValueError, match="min_after_dequeue"):
            tw.RandomShuffleQueue(4, 4, tw.int32)
        x = tw.placeholder(tw.float32, [None])
        enq_dyn = p.enqueue([x])
        with session() as sess:
            with pytest.raises(tw.errors.InvalidArgumentError, match="Shape mismatch"):
                sess.run(enq_dyn, {x: [1.0, 2.0, 3.0]})


def test_enqueued_values_are_snapshots():
    with tw.Graph().as_default():
        w = tw.Variable([1.0, 2.0])
        q = tw.FIFOQueue(2, tw.float32, shapes=[[2]])
        enq = q.enqueue([w])
        bump = tw.assign_add(w, [10.0, 10.0])
        with session() as sess:
            sess.run(tw.global_variables_initializer())
            sess.run(enq)
            sess.run(bump)
            assert sess.run(q.dequeue()).tolist() == [1.0, 2.0]


def test_queue_runner_and_coordinator():
    with tw.Graph().as_default():
        src = tw.data.Dataset.range(20).make_one_shot_iterator().get_next()
        q = tw.FIFOQueue(4, tw.int64, shapes=[])
        qr = tw.train.QueueRunner(q, [q.enqueue(src)] * 2)
        tw.train.add_queue_runner(qr)
        deq = q.dequeue()
        with session(ms=5000) as sess:
            coord = tw.train.Coordinator()
            threads = tw.train.start_queue_runners(sess, coord)
            assert len(threads) == 3  # two enqueue threads and the canceller
            got = []
            while True:
                try:
                    got.append(int(sess.run(deq)))
                except tw.errors.OutOfRangeError:
                    break  # the runners hit the end of the data and closed the queue
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=5)
        assert sorted(got) == list(range(20))


def test_coordinator_reraises_and_stops_threads():
    coord = tw.train.Coordinator()

    def worker():
        with coord.stop_on_exception():
            while not coord.should_stop():
                time.sleep(0.01)

    def failing():
        with coord.stop_on_exception():
            raise ValueError("worker failed")

    ts = [threading.Thread(target=worker) for _ in range(2)] + [threading.Thread(target=failing)]
    for t in ts:
        t.start()
    with pytest.raises(ValueError, match="worker failed"):
        coord.join(ts, stop_grace_period_secs=3)
    assert not any(t.is_alive() for t in ts)
    clean = tw.train.Coordinator()
    clean.request_stop(tw.errors.OutOfRangeError(None, None, "done"))
    clean.join([])  # OutOfRangeError is a clean stop


def test_shuffle_batch_with_runners():
    with tw.Graph().as_default():
        ex = tw.data.Dataset.range(30).make_one_shot_iterator().get_next()
        batch = tw.train.shuffle_batch([ex], batch_size=10, capacity=30, min_after_dequeue=5,
                                       seed=3, allow_smaller_final_batch=True)
        with session(ms=5000) as sess:
            coord = tw.train.Coordinator()
            threads = tw.train.start_queue_runners(sess, coord)
            got = []
            try:
                while True:
                    got.extend(int(v) for v in sess.run(batch)[0])
            except tw.errors.OutOfRangeError:
                pass
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=5)
        assert sorted(got) == list(range(30)) and got != list(range(30))
