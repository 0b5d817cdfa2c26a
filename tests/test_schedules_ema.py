"""Learning-rate schedules and ``tw.train.ExponentialMovingAverage`` against their formulas."""

import math

import numpy as np
import pytest

import tensorweave as tw


def _at_steps(make, steps):
    g = tw.Graph()
    with g.as_default():
        step = tw.train.get_or_create_global_step()
        lr = make(step)
        init = tw.global_variables_initializer()
    out = []
    with tw.Session(graph=g) as s:
        s.run(init)
        for v in steps:
            s.run(step.assign(v))
            out.append(float(s.run(lr)))
    return out


STEPS = [0, 5, 10, 15, 30]


@pytest.mark.parametrize("name, kwargs, ref", [
    ("natural_exp_decay", dict(decay_steps=10, decay_rate=0.5),
     lambda t: 0.1 * math.exp(-0.5 * t / 10)),
    ("natural_exp_decay", dict(decay_steps=10, decay_rate=0.5, staircase=True),
     lambda t: 0.1 * math.exp(-0.5 * (t // 10))),
    ("inverse_time_decay", dict(decay_steps=10, decay_rate=0.5),
     lambda t: 0.1 / (1 + 0.5 * t / 10)),
    ("polynomial_decay", dict(decay_steps=10, end_learning_rate=0.01, power=2.0),
     lambda t: (0.1 - 0.01) * (1 - min(t, 10) / 10) ** 2 + 0.01),
    ("polynomial_decay", dict(decay_steps=10, end_learning_rate=0.01, cycle=True),
     lambda t: (0.1 - 0.01) * (1 - t / (10 * max(math.ceil(t / 10), 1))) + 0.01),
    ("cosine_decay", dict(decay_steps=10, alpha=0.1),
     lambda t: 0.1 * (0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 10) / 10)) + 0.1)),
])
def test_schedules_follow_their_formulas(name, kwargs, ref):
    fn = getattr(tw.train, name)
    got = _at_steps(lambda step: fn(0.1, step, **kwargs), STEPS)
    np.testing.assert_allclose(got, [ref(t) for t in STEPS], rtol=1e-5)


def test_schedules_need_a_global_step():
    for fn in (tw.train.natural_exp_decay, tw.train.inverse_time_decay):
        with pytest.raises(ValueError, match="global_step is required"):
            fn(0.1, None, 10, 0.5)
    with pytest.raises(ValueError, match="global_step is required"):
        tw.train.polynomial_decay(0.1, None, 10)
    with pytest.raises(ValueError, match="global_step is required"):
        tw.train.cosine_decay(0.1, None, 10)


def test_moving_average_follows_its_formula_with_num_updates():
    g = tw.Graph()
    with g.as_default():
        step = tw.train.get_or_create_global_step()
        w = tw.Variable([1.0, 2.0], name="w")
        x = tw.placeholder(tw.float32, [])
        ema = tw.train.ExponentialMovingAverage(0.9, num_updates=step)
        with tw.control_dependencies([w.assign(w * x), step.assign_add(1)]):
            update = ema.apply([w])
        shadow = ema.average(w)
        init = tw.global_variables_initializer()
    assert shadow.op.name == "w/ExponentialMovingAverage" == ema.average_name(w)
    want_w, want_s = np.array([1.0, 2.0]), np.array([1.0, 2.0])  # starts at w's initial value
    with tw.Session(graph=g) as s:
        s.run(init)
        np.testing.assert_allclose(s.run(shadow), want_s)
        for n, factor in enumerate([2.0, 0.5, 3.0]):
            s.run(update, {x: factor})
            want_w = want_w * factor
            decay = min(0.9, (1 + (n + 1)) / (10 + (n + 1)))  # the step already counted
            want_s = want_s - (1 - decay) * (want_s - want_w)
            np.testing.assert_allclose(s.run(shadow), want_s, rtol=1e-6)
    assert shadow not in g.get_collection(tw.GraphKeys.TRAINABLE_VARIABLES)


def test_moving_average_restores_into_the_model(tmp_path):
    g = tw.Graph()
    with g.as_default():
        w = tw.Variable([0.0, 0.0], name="w")
        tw.Variable(5.0, name="b", trainable=False)
        ema = tw.train.ExponentialMovingAverage(0.5)
        with tw.control_dependencies([w.assign_add([4.0, 8.0])]):
            update = ema.apply([w])
        saver = tw.train.Saver()
        init = tw.global_variables_initializer()
    with tw.Session(graph=g) as s:
        s.run(init)
        s.run(update)  # w = [4, 8], shadow = [2, 4]
        path = saver.save(s, str(tmp_path / "model"))
    g2 = tw.Graph()
    with g2.as_default():
        w2 = tw.Variable([0.0, 0.0], name="w")
        b2 = tw.Variable(0.0, name="b", trainable=False)
        restore = tw.train.ExponentialMovingAverage(0.5).variables_to_restore()
        assert set(restore) == {"w/ExponentialMovingAverage", "b"}
        loader = tw.train.Saver(restore)
    with tw.Session(graph=g2) as s:
        loader.restore(s, path)
        np.testing.assert_allclose(s.run(w2), [2.0, 4.0])
        assert s.run(b2) == 5.0


def test_moving_average_refuses_integer_variables_and_unshaped_tensors():
    with tw.Graph().as_default():
        ema = tw.train.ExponentialMovingAverage(0.9)
        with pytest.raises(TypeError, match="half, float, or double"):
            ema.apply([tw.Variable(3, name="count")])
        with pytest.raises(ValueError, match="fully defined shape"):
            ema.apply([tw.placeholder(tw.float32, [None])])
        with pytest.raises(NotImplementedError, match="zero_debias"):
            tw.train.ExponentialMovingAverage(0.9, zero_debias=True)
