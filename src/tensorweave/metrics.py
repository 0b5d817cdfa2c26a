"""``tw.metrics``: TF1's streaming metrics (``tf.compat.v1.metrics``).

A metric keeps running totals in local variables (collections ``LOCAL_VARIABLES`` and
``METRIC_VARIABLES``, never saved by a ``Saver``) and returns two tensors: ``value``, the metric
over everything seen so far, and ``update_op``, which adds a batch to the totals and gives the
updated value. Initialize (or reset) the totals with ``tw.local_variables_initializer()``.

Example::

    acc, acc_update = tw.metrics.accuracy(labels=y, predictions=tw.argmax(logits, 1))
    sess.run(tw.local_variables_initializer())
    for xb, yb in batches:
        sess.run(acc_update, {x: xb, y: yb})
    print(sess.run(acc))                         # accuracy over all the batches
"""

from __future__ import annotations

from tensorweave.framework import dtypes, ops
from tensorweave.framework.ops import GraphKeys, convert_to_tensor

__all__ = ["mean", "accuracy", "mean_absolute_error", "mean_squared_error",
           "root_mean_squared_error", "true_positives", "false_positives", "true_negatives",
           "false_negatives", "precision", "recall", "auc", "metric_variable"]


def _tw():
    import tensorweave as tw
    return tw


def metric_variable(shape, dtype, validate_shape=True, name=None):
    """A local, non-trainable variable of zeros that holds a running total."""
    tw = _tw()
    return tw.Variable(lambda: tw.zeros(shape, dtype), trainable=False,
                       collections=[GraphKeys.LOCAL_VARIABLES, GraphKeys.METRIC_VARIABLES],
                       validate_shape=validate_shape, name=name)


def _collect(value, update, metrics_collections, updates_collections):
    for c in metrics_collections or ():
        ops.add_to_collection(c, value)
    for c in updates_collections or ():
        ops.add_to_collection(c, update)
    return value, update


def _squeezed(labels, predictions):
    """TF1's remove_squeezable_dimensions: a trailing axis of size 1 on the side whose rank
    is one more (labels [B, 1] against argmax predictions [B]) is dropped."""
    tw = _tw()
    lr, pr = labels.shape.ndims, predictions.shape.ndims
    if lr is not None and pr is not None:
        if lr == pr + 1 and labels.shape[-1].value == 1:
            labels = tw.squeeze(labels, [-1])
        elif pr == lr + 1 and predictions.shape[-1].value == 1:
            predictions = tw.squeeze(predictions, [-1])
    return labels, predictions


def _same_shape(labels, predictions, what):
    if not labels.shape.is_compatible_with(predictions.shape):
        raise ValueError(f"{what}: labels of shape {labels.shape} and predictions of shape "
                         f"{predictions.shape} must have the same shape")


def _weights_like(values, weights):
    """``weights`` (None: ones) as float32, broadcast to the shape of ``values``."""
    tw = _tw()
    ones = tw.ones_like(values, dtype=dtypes.float32)
    if weights is None:
        return ones
    return tw.cast(convert_to_tensor(weights), dtypes.float32) * ones


def _running_mean(values, weights):
    """(value, update) of the weighted mean of ``values``, totals in the current scope."""
    tw = _tw()
    values = tw.cast(convert_to_tensor(values), dtypes.float32)
    total = metric_variable([], dtypes.float32, name="total")
    count = metric_variable([], dtypes.float32, name="count")
    w = _weights_like(values, weights)
    add_total = tw.assign_add(total, tw.reduce_sum(values * w))
    add_count = tw.assign_add(count, tw.reduce_sum(w))
    return (tw.div_no_nan(total, count, name="value"),
            tw.div_no_nan(add_total, add_count, name="update_op"))


def mean(values, weights=None, metrics_collections=None, updates_collections=None, name=None):
    """The (weighted) mean of every element of ``values`` seen so far; 0 before any."""
    with _tw().variable_scope(name, default_name="mean"):
        value, update = _running_mean(values, weights)
    return _collect(value, update, metrics_collections, updates_collections)


def accuracy(labels, predictions, weights=None, metrics_collections=None,
             updates_collections=None, name=None):
    """The (weighted) fraction of ``predictions`` equal to ``labels`` (same shape; the
    predictions are cast to the labels' type, so ``tw.argmax`` output compares with int32
    labels)."""
    tw = _tw()
    with tw.variable_scope(name, default_name="accuracy"):
        labels, predictions = _squeezed(convert_to_tensor(labels, name="labels"),
                                        convert_to_tensor(predictions, name="predictions"))
        _same_shape(labels, predictions, "accuracy")
        if predictions.dtype != labels.dtype:
            predictions = tw.cast(predictions, labels.dtype)
        value, update = _running_mean(tw.equal(predictions, labels), weights)
    return _collect(value, update, metrics_collections, updates_collections)


def _error_mean(kind):
    def metric(labels, predictions, weights=None, metrics_collections=None,
               updates_collections=None, name=None):
        tw = _tw()
        with tw.variable_scope(name, default_name=kind):
            labels, predictions = _squeezed(
                tw.cast(convert_to_tensor(labels), dtypes.float32),
                tw.cast(convert_to_tensor(predictions), dtypes.float32))
            _same_shape(labels, predictions, kind)
            err = tw.abs(predictions - labels) if kind == "mean_absolute_error" else \
                tw.squared_difference(predictions, labels)
            value, update = _running_mean(err, weights)
        return _collect(value, update, metrics_collections, updates_collections)

    metric.__name__ = kind
    return metric


mean_absolute_error = _error_mean("mean_absolute_error")
mean_absolute_error.__doc__ = "The (weighted) mean of ``|predictions - labels|``."
mean_squared_error = _error_mean("mean_squared_error")
mean_squared_error.__doc__ = "The (weighted) mean of ``(predictions - labels) ** 2``."


def root_mean_squared_error(labels, predictions, weights=None, metrics_collections=None,
                            updates_collections=None, name=None):
    """The square root of :func:`mean_squared_error`."""
    tw = _tw()
    with tw.variable_scope(name, default_name="root_mean_squared_error"):
        labels, predictions = _squeezed(tw.cast(convert_to_tensor(labels), dtypes.float32),
                                        tw.cast(convert_to_tensor(predictions), dtypes.float32))
        _same_shape(labels, predictions, "root_mean_squared_error")
        mse, update = _running_mean(tw.squared_difference(predictions, labels), weights)
        value, update = tw.sqrt(mse), tw.sqrt(update)
    return _collect(value, update, metrics_collections, updates_collections)


def _bools(labels, predictions, what):
    tw = _tw()
    labels, predictions = _squeezed(convert_to_tensor(labels, name="labels"),
                                    convert_to_tensor(predictions, name="predictions"))
    _same_shape(labels, predictions, what)
    as_bool = (lambda t: t if t.dtype == dtypes.bool_ else tw.not_equal(t, tw.zeros_like(t)))
    return as_bool(labels), as_bool(predictions)


def _count(kind, want_label, want_pred):
    def metric(labels, predictions, weights=None, metrics_collections=None,
               updates_collections=None, name=None):
        tw = _tw()
        with tw.variable_scope(name, default_name=kind):
            lab, pred = _bools(labels, predictions, kind)
            if not want_label:
                lab = tw.logical_not(lab)
            if not want_pred:
                pred = tw.logical_not(pred)
            hit = tw.cast(tw.logical_and(lab, pred), dtypes.float32)
            total = metric_variable([], dtypes.float32, name="count")
            update = tw.assign_add(total, tw.reduce_sum(hit * _weights_like(hit, weights)))
            value = tw.identity(total, name="value")
        return _collect(value, tw.identity(update, name="update_op"), metrics_collections,
                        updates_collections)

    metric.__name__ = kind
    metric.__doc__ = (f"The (weighted) number of {kind.replace('_', ' ')}: elements where the "
                      f"label is {want_label} and the prediction {want_pred} (nonzero is True).")
    return metric


true_positives = _count("true_positives", True, True)
false_positives = _count("false_positives", False, True)
true_negatives = _count("true_negatives", False, False)
false_negatives = _count("false_negatives", True, False)


def _ratio(kind, other):
    def metric(labels, predictions, weights=None, metrics_collections=None,
               updates_collections=None, name=None):
        tw = _tw()
        with tw.variable_scope(name, default_name=kind):
            tp, tp_up = true_positives(labels, predictions, weights)
            xx, xx_up = other(labels, predictions, weights)
            value = tw.div_no_nan(tp, tp + xx, name="value")
            update = tw.div_no_nan(tp_up, tp_up + xx_up, name="update_op")
        return _collect(value, update, metrics_collections, updates_collections)

    metric.__name__ = kind
    return metric


precision = _ratio("precision", false_positives)
precision.__doc__ = "``tp / (tp + fp)`` over everything seen (0 when nothing was predicted)."
recall = _ratio("recall", false_negatives)
recall.__doc__ = "``tp / (tp + fn)`` over everything seen (0 when there was nothing to find)."


def auc(labels, predictions, weights=None, num_thresholds=200, metrics_collections=None,
        updates_collections=None, curve="ROC", name=None, summation_method="trapezoidal"):
    """Area under the ROC (or precision-recall, ``curve="PR"``) curve of scores in [0, 1],
    from confusion counts at ``num_thresholds`` evenly spaced thresholds, summed by the
    trapezoidal rule (or ``"minoring"``/``"majoring"``: the lower/upper step), as TF1 does."""
    tw = _tw()
    if curve not in ("ROC", "PR"):
        raise ValueError(f"auc: curve must be 'ROC' or 'PR', got {curve!r}")
    if summation_method not in ("trapezoidal", "minoring", "majoring"):
        raise ValueError(f"auc: summation_method must be 'trapezoidal', 'minoring' or "
                         f"'majoring', got {summation_method!r}")
    if num_thresholds < 2:
        raise ValueError(f"auc: num_thresholds must be at least 2, got {num_thresholds}")
    eps = 1e-7
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = [0.0 - eps] + inner + [1.0 + eps]
    with tw.variable_scope(name, default_name="auc"):
        lab, _ = _bools(labels, predictions, "auc")
        predictions = tw.cast(convert_to_tensor(predictions, name="predictions"),
                              dtypes.float32)
        w = tw.reshape(_weights_like(predictions, weights), [1, -1])
        above = tw.greater(tw.reshape(predictions, [1, -1]),
                           tw.reshape(tw.constant(thresholds, dtypes.float32), [-1, 1]))
        pos = tw.reshape(lab, [1, -1])

        def counts(a, b):
            return tw.reduce_sum(tw.cast(tw.logical_and(a, b), dtypes.float32) * w, axis=1)

        neg, below = tw.logical_not(pos), tw.logical_not(above)
        ups, totals = {}, {}
        for key, var_name, a, b in (("tp", "true_positives", pos, above),
                                    ("fn", "false_negatives", pos, below),
                                    ("tn", "true_negatives", neg, below),
                                    ("fp", "false_positives", neg, above)):
            totals[key] = metric_variable([num_thresholds], dtypes.float32, name=var_name)
            ups[key] = tw.assign_add(totals[key], counts(a, b))

        def area(c, scope):
            rec = (c["tp"] + 1e-6) / (c["tp"] + c["fn"] + 1e-6)
            if curve == "ROC":
                x, y = c["fp"] / (c["fp"] + c["tn"] + 1e-6), rec
            else:
                x, y = rec, (c["tp"] + 1e-6) / (c["tp"] + c["fp"] + 1e-6)
            n = num_thresholds
            if summation_method == "trapezoidal":
                h = (y[:n - 1] + y[1:]) / 2.0
            elif summation_method == "minoring":
                h = tw.minimum(y[:n - 1], y[1:])
            else:
                h = tw.maximum(y[:n - 1], y[1:])
            return tw.reduce_sum((x[:n - 1] - x[1:]) * h, name=scope)

        value = area({k: tw.identity(v) for k, v in totals.items()}, "value")
        update = area(ups, "update_op")
    return _collect(value, update, metrics_collections, updates_collections)
