"""Adadelta, proximal gradient descent, proximal Adagrad and FTRL against NumPy references of
TensorFlow's kernels (and against TensorFlow itself where it is installed: equal to 1.2e-7 on
2026-11-29), dense and sparse."""

import os

import numpy as np
import pytest

import tensorweave as tw

W0 = np.array([[1.0, -2.0, 3.0], [0.5, 0.25, -0.75], [0.02, -3.0, 0.4]])
T = np.array([[0.5, 0.0, -1.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
SCALE = np.array([[1.0, 2.0, 3.0]])
ROWS = [1, 0, 1]  # the sparse case: row 1 twice (duplicates are summed first), row 2 untouched


def grad_of(w, sparse):
    if sparse:
        g = np.zeros_like(w)
        for r in ROWS:
            g[r] += 2 * (w[r] - T[r])
        return g
    return 2 * (w - T) * SCALE


def rows_only(ref):
    """A sparse update moves only the rows that have a gradient (TF1's SparseApply*)."""
    def step(w, g, s):
        new = ref(w, g, s)
        touched = sorted(set(ROWS))
        out = w.copy()
        out[touched] = new[touched]
        return out
    return step


def prox(p, rate, l1, l2):
    return np.sign(p) * np.maximum(np.abs(p) - rate * l1, 0) / (1 + rate * l2)


def ref_adadelta(w, g, s, lr=0.5, rho=0.9, eps=1e-6):
    a, u = s.setdefault("a", np.zeros_like(w)), s.setdefault("u", np.zeros_like(w))
    a[:] = rho * a + (1 - rho) * g * g
    upd = np.sqrt(u + eps) / np.sqrt(a + eps) * g
    u[:] = rho * u + (1 - rho) * upd * upd
    return w - lr * upd


def ref_proxgd(w, g, s, lr=0.1, l1=0.05, l2=0.1):
    return prox(w - lr * g, lr, l1, l2)


def ref_proxada(w, g, s, lr=0.3, l1=0.05, l2=0.1):
    a = s.setdefault("a", np.full_like(w, 0.1))
    a += g * g
    rate = lr / np.sqrt(a)
    return prox(w - rate * g, rate, l1, l2)


def ref_ftrl(w, g, s, lr=0.3, power=-0.5, l1=0.01, l2=0.02, shrink=0.0):
    a, lin = s.setdefault("a", np.full_like(w, 0.1)), s.setdefault("lin", np.zeros_like(w))
    a_new = a + g * g
    sigma = (a_new ** -power - a ** -power) / lr
    lin += (g + 2 * shrink * w) - sigma * w
    quad = a_new ** -power / lr + 2 * l2
    out = np.where(np.abs(lin) > l1, (np.clip(lin, -l1, l1) - lin) / quad, 0.0)
    a[:] = a_new
    return out


CASES = {
    "adadelta": (lambda L: L.train.AdadeltaOptimizer(0.5, 0.9, 1e-6), ref_adadelta),
    "proximal_gd": (lambda L: L.train.ProximalGradientDescentOptimizer(0.1, 0.05, 0.1),
                    ref_proxgd),
    "proximal_adagrad": (lambda L: L.train.ProximalAdagradOptimizer(0.3, 0.1, 0.05, 0.1),
                         ref_proxada),
    "ftrl": (lambda L: L.train.FtrlOptimizer(0.3, -0.5, 0.1, 0.01, 0.02), ref_ftrl),
    "ftrl_shrinkage": (lambda L: L.train.FtrlOptimizer(
        0.3, -0.5, 0.1, 0.01, 0.02, l2_shrinkage_regularization_strength=0.05),
        lambda w, g, s: ref_ftrl(w, g, s, shrink=0.05)),
    "ftrl_power": (lambda L: L.train.FtrlOptimizer(0.3, -0.7, 0.1),
                   lambda w, g, s: ref_ftrl(w, g, s, power=-0.7, l1=0.0, l2=0.0)),
}


def train(lib, make, sparse, dtype=np.float64, steps=5):
    g = lib.Graph()
    with g.as_default():
        w = lib.Variable(W0.astype(dtype))
        if sparse:
            rows = lib.gather(w, ROWS)
            loss = lib.reduce_sum(lib.square(rows - T[ROWS].astype(dtype)))
        else:
            loss = lib.reduce_sum(lib.square(w - T.astype(dtype)) * SCALE.astype(dtype))
        step = make(lib).minimize(loss)
        init = lib.global_variables_initializer()
    with lib.Session(graph=g) as s:
        s.run(init)
        for _ in range(steps):
            s.run(step)
        return s.run(w)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_the_reference_formula(name, sparse):
    make, ref = CASES[name]
    w, state = W0.copy(), {}
    step = rows_only(ref) if sparse else ref
    for _ in range(5):
        w = step(w, grad_of(w, sparse), state)
    np.testing.assert_allclose(train(tw, make, sparse), w, rtol=1e-10, atol=1e-12)


def test_proximal_l1_gives_exact_zeros_and_ftrl_trains():
    got = train(tw, lambda L: L.train.ProximalGradientDescentOptimizer(0.1, 0.5), False,
                steps=50)
    assert (got == 0).sum() >= 1  # the target 0.0 is reached exactly, not approximately
    first = np.sum((W0 - T) ** 2 * SCALE)
    w = train(tw, lambda L: L.train.FtrlOptimizer(0.5), False, steps=100)
    assert np.sum((w - T) ** 2 * SCALE) < 0.01 * first


def test_constructor_errors():
    with pytest.raises(ValueError, match="learning_rate_power"):
        tw.train.FtrlOptimizer(0.1, learning_rate_power=0.5)
    with pytest.raises(ValueError, match="l1_regularization_strength must be non-negative"):
        tw.train.ProximalAdagradOptimizer(0.1, l1_regularization_strength=-1.0)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        tw.train.ProximalAdagradOptimizer(0.1, initial_accumulator_value=0.0)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_tensorflow_gives_the_same_numbers(name, sparse):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow").compat.v1
    tf.disable_eager_execution()
    make = CASES[name][0]
    np.testing.assert_allclose(train(tw, make, sparse, np.float32),
                               train(tf, make, sparse, np.float32), rtol=1e-6, atol=2e-7)
