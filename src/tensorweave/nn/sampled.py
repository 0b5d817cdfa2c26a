"""Sampled softmax (Jean et al. 2015) for large vocabularies, with a log-uniform (Zipfian)
candidate sampler.

The loss is a softmax over the true classes and ``num_sampled`` sampled ones, with logits
corrected by ``-log(expected count)`` so that its gradient is an unbiased-in-the-limit estimate
of the full softmax's. Only the rows of ``weights``/``biases`` of those classes are read, so their
gradients are sparse (``tw.IndexedSlices``).

Example::

    loss = tw.reduce_mean(tw.nn.sampled_softmax_loss(
        weights=w_out, biases=b_out, labels=tw.expand_dims(targets, 1), inputs=hidden,
        num_sampled=512, num_classes=vocab_size))   # w_out: [vocab_size, hidden_dim]
"""

from __future__ import annotations

import math

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.ops import convert_to_tensor, name_scope
from tensorweave.ops import array_ops, math_ops, nn_ops, random_ops

_NEG = -1e9


def _log_uniform_probs(range_max):
    c = np.arange(range_max, dtype=np.float64)
    return np.log((c + 2.0) / (c + 1.0)) / math.log(range_max + 1.0)


def _num_tries(p, num_sampled):
    """Draws (with replacement, duplicates rejected) needed on average to collect
    ``num_sampled`` distinct classes: solves ``sum_c 1 - (1 - p_c)^n = num_sampled``."""
    def distinct(n):
        return float(np.sum(-np.expm1(n * np.log1p(-p))))
    lo, hi = float(num_sampled), float(num_sampled)
    while distinct(hi) < num_sampled:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if distinct(mid) < num_sampled else (lo, mid)
    return 0.5 * (lo + hi)


def log_uniform_candidate_sampler(true_classes, num_true, num_sampled, unique, range_max,
                                  seed=None, name=None):
    """Samples ``num_sampled`` classes from ``P(c) = log((c + 2) / (c + 1)) / log(range_max + 1)``
    (frequent words first, as in a vocabulary sorted by count).

    ``unique=True`` samples without replacement (Gumbel top-k, equivalent to drawing and
    rejecting duplicates); expected counts then are ``1 - (1 - P(c))^n`` with ``n`` the
    expected number of draws. Returns ``(sampled_candidates [num_sampled] int64,
    true_expected_count [batch, num_true], sampled_expected_count [num_sampled])``.
    """
    if not 0 < num_sampled <= (range_max if unique else num_sampled):
        raise ValueError(f"log_uniform_candidate_sampler: num_sampled must be in "
                         f"[1, range_max={range_max}] with unique=True, got {num_sampled}")
    with name_scope(name or "LogUniformCandidateSampler"):
        true_classes = math_ops.cast(convert_to_tensor(true_classes), dtypes.int64)
        p = _log_uniform_probs(range_max)
        if unique:
            if num_sampled >= range_max:
                expected = np.ones_like(p)
            else:
                expected = -np.expm1(_num_tries(p, num_sampled) * np.log1p(-p))
            u = random_ops.random_uniform([range_max], minval=1e-20, maxval=1.0,
                                          dtype=dtypes.float64, seed=seed)
            keys = convert_to_tensor(np.log(p)) - math_ops.log(-math_ops.log(u))
            _, sampled = nn_ops.top_k(keys, k=num_sampled, sorted=False)
        else:
            expected = num_sampled * p
            u = random_ops.random_uniform([num_sampled], dtype=dtypes.float64, seed=seed)
            draws = math_ops.floor(math_ops.exp(u * math.log(range_max + 1.0))) - 1.0
            sampled = math_ops.clip_by_value(draws, 0.0, range_max - 1.0)
        sampled = array_ops.stop_gradient(math_ops.cast(sampled, dtypes.int64))
        table = convert_to_tensor(expected.astype(np.float32))
        true_expected = array_ops.gather(table, true_classes)
        sampled_expected = array_ops.gather(table, sampled)
        return sampled, true_expected, sampled_expected


def _lookup(params, ids, partition_strategy):
    return nn_ops.embedding_lookup(params, ids, partition_strategy=partition_strategy)


def _compute_sampled_logits(weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                            sampled_values, remove_accidental_hits, partition_strategy, seed):
    labels = math_ops.cast(convert_to_tensor(labels), dtypes.int64)
    if labels.shape.ndims == 1:
        labels = array_ops.expand_dims(labels, 1)
    if labels.shape.ndims != 2 or labels.shape[1].value not in (None, num_true):
        raise ValueError(f"labels must be [batch, num_true={num_true}], got shape "
                         f"{labels.shape}")
    inputs = convert_to_tensor(inputs)
    if sampled_values is None:
        sampled_values = log_uniform_candidate_sampler(labels, num_true, num_sampled, True,
                                                       num_classes, seed=seed)
    sampled, true_exp, sampled_exp = (array_ops.stop_gradient(convert_to_tensor(v))
                                      for v in sampled_values)
    dt = inputs.dtype
    # true classes: [batch, num_true, dim] rows, dotted with each example's input
    true_w = _lookup(weights, labels, partition_strategy)
    true_logits = math_ops.reduce_sum(array_ops.expand_dims(inputs, 1) * true_w, [2])
    sampled_w = _lookup(weights, sampled, partition_strategy)  # [num_sampled, dim]
    sampled_logits = math_ops.matmul(inputs, sampled_w, transpose_b=True)
    if biases is not None:
        true_logits = true_logits + _lookup(biases, labels, partition_strategy)
        sampled_logits = sampled_logits + _lookup(biases, sampled, partition_strategy)
    if remove_accidental_hits:
        # a sampled class that is one of the example's true classes must not count against it
        hits = math_ops.reduce_any(math_ops.equal(array_ops.expand_dims(labels, 2),
                                                  array_ops.reshape(sampled, [1, 1, -1])), [1])
        sampled_logits = math_ops.where(hits, array_ops.fill(array_ops.shape(sampled_logits),
                                                             convert_to_tensor(_NEG, dt)),
                                        sampled_logits)
    true_logits = true_logits - math_ops.log(math_ops.cast(true_exp, dt))
    sampled_logits = sampled_logits - math_ops.log(math_ops.cast(sampled_exp, dt))
    logits = array_ops.concat([true_logits, sampled_logits], 1)
    targets = array_ops.concat([array_ops.ones_like(true_logits) / float(num_true),
                                array_ops.zeros_like(sampled_logits)], 1)
    return logits, targets


def sampled_softmax_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
                         sampled_values=None, remove_accidental_hits=True, partition_strategy="mod",
                         name="sampled_softmax_loss", seed=None):
    """Per-example sampled softmax cross-entropy, shape [batch].

    ``weights`` [num_classes, dim] (or a list of shards), ``biases`` [num_classes], ``labels``
    [batch, num_true] int, ``inputs`` [batch, dim]. Use it for training only; evaluate with the
    full softmax. With ``num_sampled == num_classes`` it equals the full softmax loss.
    """
    with name_scope(name):
        logits, targets = _compute_sampled_logits(
            weights, biases, labels, inputs, num_sampled, num_classes, num_true, sampled_values,
            remove_accidental_hits, partition_strategy, seed)
        return nn_ops.softmax_cross_entropy_with_logits_v2(
            labels=array_ops.stop_gradient(targets), logits=logits)


def nce_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
             sampled_values=None, remove_accidental_hits=False, partition_strategy="mod",
             name="nce_loss", seed=None):
    """Per-example noise-contrastive estimation loss, shape [batch] (Mnih and Teh 2012, as
    word2vec trains): a logistic regression telling each true class (target ``1 /
    num_true``) from ``num_sampled`` classes drawn from the log-uniform (Zipf) noise
    distribution (target 0), each logit corrected by the log of its expected count. Same
    arguments as :func:`sampled_softmax_loss`; for training only."""
    with name_scope(name):
        logits, targets = _compute_sampled_logits(
            weights, biases, labels, inputs, num_sampled, num_classes, num_true, sampled_values,
            remove_accidental_hits, partition_strategy, seed)
        losses = nn_ops.sigmoid_cross_entropy_with_logits(
            labels=array_ops.stop_gradient(targets), logits=logits)
        return math_ops.reduce_sum(losses, [1])


__all__ = ["sampled_softmax_loss", "nce_loss", "log_uniform_candidate_sampler"]
