"""Device placement and cross-device copies, checked on a fake device made of NumPy kernels
(the same planner code moves tensors between the CPU and a GPU)."""

import numpy as np
import pytest

import tensorweave as tw
from tensorweave.framework import registry
from tensorweave.runtime import plan as plan_lib
from tensorweave.runtime import session as session_lib


class OnFake(np.ndarray):
    """An array 'living' on the fake device."""


def _to_fake(x):
    return np.array(x).view(OnFake)


def _to_host(x):
    assert isinstance(x, OnFake), "a host kernel received a device array"
    return np.asarray(x).view(np.ndarray)


@pytest.fixture(scope="module", autouse=True)
def fake_device():
    def fake_mul(op, ctx):
        def run(a, b):
            assert isinstance(a, OnFake) and isinstance(b, OnFake)
            return _to_fake(np.multiply(a, b))
        return run

    registry.get_op_def("Mul").kernels["FAKE"] = fake_mul
    plan_lib.TRANSFERS[("CPU", "FAKE")] = _to_fake
    plan_lib.TRANSFERS[("FAKE", "CPU")] = _to_host
    session_lib.register_device("FAKE", lambda: True)
    yield
    del registry.get_op_def("Mul").kernels["FAKE"]


@pytest.fixture(autouse=True)
def fresh_graph():
    tw.reset_default_graph()


def test_ops_run_on_requested_device_with_copies_both_ways():
    x = tw.placeholder(tw.float32, [3])
    with tw.device("/device:FAKE:0"):
        y = x * x
    z = y + 1.0
    with tw.Session() as sess:
        out = sess.run([y, z], {x: [1.0, 2.0, 3.0]})
        plan = next(iter(sess._plans.values()))
    assert type(out[0]) is np.ndarray  # fetches come back as host arrays
    np.testing.assert_array_equal(out[1], [2.0, 5.0, 10.0])
    kinds = [(st.device, st.transfer) for st in plan.steps]
    assert ("FAKE", False) in kinds and ("FAKE", True) in kinds and ("CPU", True) in kinds
    # the value is copied to the device once even though Mul reads it twice
    assert sum(1 for st in plan.steps if st.transfer and st.device == "FAKE") == 1


def test_op_without_device_kernel_fails_clearly_or_soft_places():
    x = tw.placeholder(tw.float32, [2])
    with tw.device("/device:FAKE:0"):
        y = tw.tanh(x)
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="allow_soft_placement"):
            sess.run(y, {x: [0.0, 1.0]})
    with tw.Session(config=tw.ConfigProto(allow_soft_placement=True)) as sess:
        np.testing.assert_allclose(sess.run(y, {x: [0.0, 1.0]}), np.tanh([0.0, 1.0]))


def test_missing_gpu_is_a_clear_error():
    x = tw.placeholder(tw.float32, [2])
    with tw.device("/gpu:0"):
        y = x * 2.0
    if session_lib._device_available("GPU"):
        pytest.skip("a GPU is present here")
    with tw.Session() as sess:
        with pytest.raises(tw.errors.InvalidArgumentError, match="no GPU device"):
            sess.run(y, {x: [1.0, 2.0]})
    with tw.Session(config=tw.ConfigProto(allow_soft_placement=True)) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: [1.0, 2.0]}), [2.0, 4.0])


def test_trace_records_each_device_separately():
    x = tw.placeholder(tw.float32, [3])
    with tw.device("/device:FAKE:0"):
        y = x * x
    z = y + 1.0
    md = tw.RunMetadata()
    with tw.Session() as sess:
        sess.run(z, {x: [1.0, 2.0, 3.0]}, options=tw.RunOptions(trace_level=3), run_metadata=md)
    devices = {d.device: {n.op_type for n in d.node_stats} for d in md.step_stats.dev_stats}
    assert any(d.endswith("device:FAKE:0") and "Mul" in ops for d, ops in devices.items())
    assert any(d.endswith("device:CPU:0") and "AddV2" in ops for d, ops in devices.items())
