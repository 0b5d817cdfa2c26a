"""ConfigProto.intra_op_parallelism_threads sizes NumPy's BLAS pool while a session is open."""

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import tensorweave as tw
from tensorweave.runtime import blas_threads


def _blas_threads():
    sizes = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    assert len(sizes) == 1, threadpool_info()
    return sizes.pop()


def _session(threads):
    g = tw.Graph()
    with g.as_default():
        tw.constant(1.0)
    return tw.Session(graph=g, config=tw.ConfigProto(intra_op_parallelism_threads=threads))


def test_a_session_sizes_the_blas_pool_and_closing_it_restores_the_size():
    with threadpool_limits(2, user_api="blas"):
        assert _blas_threads() == 2
        with _session(1) as sess:
            assert _blas_threads() == 1
            assert sess.run(tw.constant(3.0) * 2.0) == 6.0
        assert _blas_threads() == 2
        # the default, 0, leaves the pool alone
        with _session(0):
            assert _blas_threads() == 2


def test_overlapping_sessions_stack_in_any_closing_order():
    with threadpool_limits(2, user_api="blas"):
        a = _session(1)
        b = _session(3)
        assert _blas_threads() == 3          # the newest open session's size
        b.close()
        assert _blas_threads() == 1
        b.close()                            # closing twice changes nothing
        assert _blas_threads() == 1
        c = _session(3)
        a.close()                            # not the newest: c's size stays
        assert _blas_threads() == 3
        c.close()
        assert _blas_threads() == 2          # the size from before the first one


def test_a_bad_thread_count_is_refused_with_the_option_named():
    with pytest.raises(ValueError, match="intra_op_parallelism_threads must be a positive int"):
        blas_threads.acquire(-1)
    with pytest.raises(ValueError, match="intra_op_parallelism_threads"):
        _session(-2)
