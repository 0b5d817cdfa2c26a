"""``tw.losses``: TF1's loss functions (``tf.compat.v1.losses``), built on the ops.

Each function computes per-element losses, weights them (``weights`` broadcasts against the
losses: a scalar, one weight per example, or one per element), reduces them as ``reduction``
says and adds the result to the ``LOSSES`` collection, from which :func:`get_total_loss`
sums every loss of the model plus the regularization losses that ``tw.get_variable(...,
regularizer=...)`` and ``tw.layers`` collected.

Example::

    logits = tw.layers.dense(h, 10, kernel_regularizer=lambda w: 1e-4 * tw.nn.l2_loss(w))
    tw.losses.sparse_softmax_cross_entropy(labels=y, logits=logits)
    loss = tw.losses.get_total_loss()        # cross-entropy + regularization
    train_op = tw.train.AdamOptimizer(1e-3).minimize(loss)
"""

from __future__ import annotations

from tensorweave.framework import dtypes, ops
from tensorweave.framework.ops import GraphKeys, convert_to_tensor

__all__ = ["Reduction", "compute_weighted_loss", "absolute_difference", "mean_squared_error",
           "huber_loss", "log_loss", "hinge_loss", "cosine_distance", "sigmoid_cross_entropy",
           "softmax_cross_entropy", "sparse_softmax_cross_entropy", "add_loss", "get_losses",
           "get_regularization_losses", "get_regularization_loss", "get_total_loss"]


def _tw():
    import tensorweave as tw
    return tw


class Reduction:
    """How a loss function reduces its weighted per-element losses."""

    NONE = "none"  # the weighted losses, unreduced
    SUM = "weighted_sum"
    MEAN = "weighted_mean"  # sum / sum of the weights
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"  # sum / number of elements
    SUM_OVER_NONZERO_WEIGHTS = "weighted_sum_over_nonzero_weights"  # sum / nonzero weights
    SUM_BY_NONZERO_WEIGHTS = SUM_OVER_NONZERO_WEIGHTS  # TF1's default, its older name

    @classmethod
    def all(cls):
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE,
                cls.SUM_OVER_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key):
        if key not in cls.all():
            raise ValueError(f"Invalid Reduction Key {key!r}: expected one of {cls.all()}")


def _float(x, name):
    x = convert_to_tensor(x, name=name)
    return x if x.dtype.is_floating else _tw().cast(x, dtypes.float32)


def _num_present(losses, weights):
    """How many loss elements carry a nonzero weight (weights broadcast to the losses)."""
    tw = _tw()
    present = tw.where(tw.equal(weights, 0.0), tw.zeros_like(weights), tw.ones_like(weights))
    return tw.reduce_sum(present * tw.ones_like(losses), name="num_present")


def _check_broadcastable(weights, losses):
    """TF1's rule: weights are a scalar, or have the losses' rank with each dimension 1 or
    equal (so [batch] weights never broadcast along the wrong axis of [batch, d] losses)."""
    w, v = weights.shape, losses.shape
    if w.ndims is None or v.ndims is None or w.ndims == 0:
        return
    if w.ndims != v.ndims or any(a is not None and b is not None and a not in (1, b)
                                 for a, b in zip(w.as_list(), v.as_list())):
        raise ValueError(f"weights can not be broadcast to values: weights of shape {w} "
                         f"against losses of shape {v}; give a scalar or the losses' rank "
                         "with dimensions of 1 or equal size (e.g. weights[:, None])")


def compute_weighted_loss(losses, weights=1.0, scope=None, loss_collection=GraphKeys.LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """``losses * weights`` reduced as ``reduction`` says (a scalar unless ``Reduction.NONE``),
    added to ``loss_collection`` (None: to none). A denominator of zero gives a loss of 0."""
    Reduction.validate(reduction)
    tw = _tw()
    with ops.name_scope(scope, "weighted_loss"):
        losses = _float(losses, "losses")
        weights = tw.cast(convert_to_tensor(weights, name="weights"), losses.dtype)
        _check_broadcastable(weights, losses)
        weighted = tw.multiply(losses, weights)
        if reduction == Reduction.NONE:
            loss = weighted
        else:
            loss = tw.reduce_sum(weighted)
            if reduction == Reduction.MEAN:
                loss = tw.div_no_nan(loss, tw.reduce_sum(tw.ones_like(losses) * weights))
            elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
                loss = tw.div_no_nan(loss, tw.cast(tw.size(losses), losses.dtype))
            elif reduction == Reduction.SUM_OVER_NONZERO_WEIGHTS:
                loss = tw.div_no_nan(loss, _num_present(losses, weights))
        loss = tw.identity(loss, name="value")
        if loss_collection is not None:
            add_loss(loss, loss_collection)
        return loss


def _check_same_shape(a, b, what):
    sa, sb = a.shape, b.shape
    if not sa.is_compatible_with(sb):
        raise ValueError(f"{what}: shapes {sa} and {sb} are incompatible: labels and "
                         "predictions must have the same shape")


def _pair(labels, predictions, what, predictions_name="predictions"):
    """(labels, predictions): predictions as floats, labels cast to their dtype, same shape."""
    predictions = _float(predictions, predictions_name)
    labels = _tw().cast(convert_to_tensor(labels, name="labels"), predictions.dtype)
    _check_same_shape(labels, predictions, what)
    return labels, predictions


def _elementwise(default_name, fn):
    def loss_fn(labels, predictions, weights=1.0, scope=None,
                loss_collection=GraphKeys.LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS,
                **kw):
        if labels is None or predictions is None:
            raise ValueError(f"{default_name}: labels and predictions must be given")
        with ops.name_scope(scope, default_name) as sc:
            labels, predictions = _pair(labels, predictions, default_name)
            losses = fn(labels, predictions, **kw)
            return compute_weighted_loss(losses, weights, sc, loss_collection, reduction)

    loss_fn.__name__ = default_name
    return loss_fn


def _absolute(labels, predictions):
    tw = _tw()
    return tw.abs(tw.subtract(predictions, labels))


def _squared(labels, predictions):
    return _tw().squared_difference(predictions, labels)


def _huber(labels, predictions, delta=1.0):
    tw = _tw()
    error = tw.abs(tw.subtract(predictions, labels))
    quadratic = tw.minimum(error, delta)
    linear = tw.subtract(error, quadratic)  # the part beyond delta
    return 0.5 * tw.square(quadratic) + delta * linear


def _log(labels, predictions, epsilon=1e-7):
    tw = _tw()
    return -tw.multiply(labels, tw.log(predictions + epsilon)) - tw.multiply(
        1.0 - labels, tw.log(1.0 - predictions + epsilon))


absolute_difference = _elementwise("absolute_difference", _absolute)
absolute_difference.__doc__ = "``|predictions - labels|``, weighted and reduced."
mean_squared_error = _elementwise("mean_squared_error", _squared)
mean_squared_error.__doc__ = "``(predictions - labels) ** 2``, weighted and reduced."
huber_loss = _elementwise("huber_loss", _huber)
huber_loss.__doc__ = ("``0.5 * e ** 2`` for ``|e| <= delta``, ``delta * (|e| - 0.5 * delta)`` "
                      "beyond (``e = predictions - labels``; keyword ``delta=1.0``).")
log_loss = _elementwise("log_loss", _log)
log_loss.__doc__ = ("``-labels * log(p + eps) - (1 - labels) * log(1 - p + eps)`` for "
                    "probabilities ``p`` (keyword ``epsilon=1e-7``).")


def hinge_loss(labels, logits, weights=1.0, scope=None, loss_collection=GraphKeys.LOSSES,
               reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """``max(0, 1 - (2 * labels - 1) * logits)`` for labels in {0, 1}."""
    tw = _tw()
    with ops.name_scope(scope, "hinge_loss") as sc:
        labels, logits = _pair(labels, logits, "hinge_loss", "logits")
        signs = 2.0 * labels - 1.0
        losses = tw.nn.relu(1.0 - signs * logits)
        return compute_weighted_loss(losses, weights, sc, loss_collection, reduction)


def cosine_distance(labels, predictions, axis=None, weights=1.0, scope=None,
                    loss_collection=GraphKeys.LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS,
                    dim=None):
    """``1 - sum(labels * predictions, axis)`` for unit-normalized inputs."""
    tw = _tw()
    axis = dim if axis is None else axis
    if axis is None:
        raise ValueError("cosine_distance: you must specify axis")
    with ops.name_scope(scope, "cosine_distance_loss") as sc:
        labels, predictions = _pair(labels, predictions, "cosine_distance")
        losses = 1.0 - tw.reduce_sum(labels * predictions, axis=axis, keepdims=True)
        return compute_weighted_loss(losses, weights, sc, loss_collection, reduction)


def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, label_smoothing=0,
                          scope=None, loss_collection=GraphKeys.LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Sigmoid cross-entropy of independent labels in [0, 1]; ``label_smoothing`` moves them
    towards 1/2: ``labels * (1 - s) + 0.5 * s``."""
    tw = _tw()
    with ops.name_scope(scope, "sigmoid_cross_entropy_loss") as sc:
        labels, logits = _pair(multi_class_labels, logits, "sigmoid_cross_entropy", "logits")
        if label_smoothing > 0:
            labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
        losses = tw.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return compute_weighted_loss(losses, weights, sc, loss_collection, reduction)


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=GraphKeys.LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Softmax cross-entropy against one-hot (or probability) labels of shape
    ``[batch, classes]``; ``label_smoothing`` mixes them with the uniform distribution:
    ``labels * (1 - s) + s / classes``. No gradient flows into the labels."""
    tw = _tw()
    with ops.name_scope(scope, "softmax_cross_entropy_loss") as sc:
        labels, logits = _pair(onehot_labels, logits, "softmax_cross_entropy", "logits")
        if label_smoothing > 0:
            classes = tw.cast(tw.shape(labels)[-1], logits.dtype)
            labels = labels * (1.0 - label_smoothing) + label_smoothing / classes
        losses = tw.nn.softmax_cross_entropy_with_logits_v2(
            labels=tw.stop_gradient(labels), logits=logits)
        return compute_weighted_loss(losses, weights, sc, loss_collection, reduction)


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None,
                                 loss_collection=GraphKeys.LOSSES,
                                 reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """Softmax cross-entropy against integer class ids (``labels`` of shape ``[batch]``, or
    ``[batch, 1]``, squeezed as TF1 does); an id outside ``[0, classes)`` is an error at run
    time."""
    tw = _tw()
    with ops.name_scope(scope, "sparse_softmax_cross_entropy_loss") as sc:
        logits = _float(logits, "logits")
        labels = convert_to_tensor(labels, name="labels")
        if labels.shape.ndims is not None and logits.shape.ndims is not None and \
                labels.shape.ndims == logits.shape.ndims and labels.shape[-1].value == 1:
            labels = tw.squeeze(labels, [-1])
        if labels.dtype not in (dtypes.int32, dtypes.int64):
            labels = tw.cast(labels, dtypes.int64)
        losses = tw.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        weights = convert_to_tensor(weights)
        if weights.shape.ndims is not None and weights.shape.ndims == labels.shape.ndims + 1 \
                and weights.shape[-1].value == 1:  # per-example weights of shape [batch, 1]
            weights = tw.squeeze(weights, [-1])
        return compute_weighted_loss(losses, weights, sc, loss_collection, reduction)


# --- the LOSSES collection -------------------------------------------------------------------
def add_loss(loss, loss_collection=GraphKeys.LOSSES):
    """Adds ``loss`` to ``loss_collection`` (what :func:`get_total_loss` sums)."""
    if loss_collection:
        ops.add_to_collection(loss_collection, loss)


def get_losses(scope=None, loss_collection=GraphKeys.LOSSES):
    """The losses added to ``loss_collection`` (by name scope ``scope``, a regex prefix)."""
    return ops.get_collection(loss_collection, scope)


def get_regularization_losses(scope=None):
    """The regularization terms collected from variables' ``regularizer`` arguments."""
    return ops.get_collection(GraphKeys.REGULARIZATION_LOSSES, scope)


def get_regularization_loss(scope=None, name="total_regularization_loss"):
    """Their sum, or the constant 0.0 when there are none."""
    tw = _tw()
    losses = get_regularization_losses(scope)
    if losses:
        return tw.add_n(losses, name=name)
    return tw.constant(0.0, name=name)


def get_total_loss(add_regularization_losses=True, name="total_loss", scope=None):
    """The sum of every collected loss, plus the regularization losses unless told not to.
    Raises ValueError when nothing was collected (no loss function ran yet)."""
    losses = get_losses(scope)
    if add_regularization_losses:
        losses = losses + get_regularization_losses(scope)
    if not losses:
        raise ValueError("No losses to sum: call a tw.losses function (or tw.losses.add_loss) "
                         "before get_total_loss")
    return _tw().add_n(losses, name=name)
