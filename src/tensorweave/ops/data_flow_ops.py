"""Queues and iterators: the stateful ops that move data into a step (the whitepaper's queues,
TF1's ``tf.data`` iterators).

A queue or iterator op outputs a scalar *handle*; the ops that use it (enqueue, dequeue,
get_next...) take that handle as input 0 and find the session-local state object in
``ctx.resources`` under the handle op's ``shared_name`` (or its name). Each Session therefore
holds its own queues and iterator positions.

Example::

    q = tw.FIFOQueue(10, [tw.float32], shapes=[[2]])
    enq = q.enqueue([[1.0, 2.0]])
    x = q.dequeue()
"""

from __future__ import annotations

from tensorweave.framework import dtypes
from tensorweave.framework.common_shapes import no_outputs, scalar_of
from tensorweave.framework.constant_op import constant_value
from tensorweave.framework.ops import Tensor, convert_to_tensor, get_default_graph, name_scope
from tensorweave.framework.registry import NotDifferentiable, register_op
from tensorweave.framework.tensor_shape import TensorShape, as_shape
from tensorweave.ops.op_util import make_op

_HANDLE = [(dtypes.variant, TensorShape([]))]

# --- op declarations -------------------------------------------------------------------------
for _t in ("FIFOQueueV2", "RandomShuffleQueueV2", "IteratorV2", "OneShotIterator"):
    register_op(_t, stateful=True)(lambda op: list(_HANDLE))


def _components_infer(op, lead=()):
    types = op.attrs["component_types"]
    shapes = op.attrs.get("shapes") or [None] * len(types)
    return [(dt, TensorShape(list(lead) + shp.as_list()) if shp is not None and shp.ndims is
             not None else TensorShape(None)) for dt, shp in zip(types, shapes)]


def _check_handle(op):
    h = op.inputs[0]
    if h.dtype != dtypes.variant:
        raise TypeError(f"Input 0 of {op.type} must be a queue or iterator handle, got "
                        f"{h.name} of dtype {h.dtype.name}")


@register_op("QueueEnqueueV2", stateful=True)
def _enqueue_infer(op):
    _check_handle(op)
    return []


register_op("QueueEnqueueManyV2", stateful=True)(_enqueue_infer)


@register_op("QueueDequeueV2", stateful=True)
def _dequeue_infer(op):
    _check_handle(op)
    return _components_infer(op)


@register_op("QueueDequeueManyV2", stateful=True)
def _dequeue_many_infer(op):
    _check_handle(op)
    n = constant_value(op.inputs[1])
    return _components_infer(op, lead=(None if n is None else int(n),))


@register_op("QueueDequeueUpToV2", stateful=True)
def _dequeue_up_to_infer(op):
    _check_handle(op)
    return _components_infer(op, lead=(None,))


register_op("QueueCloseV2", stateful=True)(no_outputs)
register_op("QueueSizeV2", stateful=True)(scalar_of(dtypes.int32))
register_op("QueueIsClosedV2", stateful=True)(scalar_of(dtypes.bool_))
register_op("MakeIterator", stateful=True)(no_outputs)
register_op("IteratorToStringHandle", stateful=True)(scalar_of(dtypes.string))


@register_op("IteratorFromStringHandleV2", stateful=True)
def _from_string_handle_infer(op):
    if op.inputs[0].dtype != dtypes.string:
        raise TypeError(f"from_string_handle: the handle must be a string tensor, got "
                        f"{op.inputs[0].dtype.name}")
    return list(_HANDLE)


@register_op("IteratorGetNext", stateful=True)
def _get_next_infer(op):
    _check_handle(op)
    return [(dt, shp) for dt, shp in zip(op.attrs["output_types"], op.attrs["output_shapes"])]


for _t in ("FIFOQueueV2", "RandomShuffleQueueV2", "IteratorV2", "OneShotIterator",
           "QueueEnqueueV2", "QueueEnqueueManyV2", "QueueDequeueV2", "QueueDequeueManyV2",
           "QueueDequeueUpToV2", "QueueCloseV2", "QueueSizeV2", "QueueIsClosedV2",
           "MakeIterator", "IteratorGetNext", "IteratorToStringHandle",
           "IteratorFromStringHandleV2"):
    NotDifferentiable(_t)


# --- queues ----------------------------------------------------------------------------------
def _as_shape_list(shapes, n, what):
    if shapes is None:
        return None
    shapes = [as_shape(s) for s in shapes]
    if len(shapes) != n:
        raise ValueError(f"{what}: shapes has {len(shapes)} entries but dtypes has {n}")
    return shapes


class QueueBase:
    """A queue of tuples of tensors shared by the steps of one Session (TF1's ``QueueBase``).

    Ops built from it: ``enqueue``, ``enqueue_many``, ``dequeue``, ``dequeue_many``,
    ``dequeue_up_to``, ``close``, ``size``, ``is_closed``. A dequeue from a closed queue
    that holds too few elements raises ``tw.errors.OutOfRangeError``.
    """

    def __init__(self, dtypes_, shapes, names, queue_ref):
        self._dtypes = list(dtypes_)
        self._shapes = shapes if shapes is not None else [TensorShape(None)] * len(dtypes_)
        self._names = list(names) if names is not None else None
        self._queue_ref = queue_ref
        self._name = queue_ref.op.name.split("/")[-1]  # default scope of the queue's ops

    @property
    def queue_ref(self):
        return self._queue_ref

    @property
    def name(self):
        return self._queue_ref.op.name

    @property
    def dtypes(self):
        return list(self._dtypes)

    @property
    def shapes(self):
        return list(self._shapes)

    @property
    def names(self):
        return self._names

    def _attrs(self):
        return {"component_types": list(self._dtypes), "shapes": list(self._shapes)}

    def _flatten_vals(self, vals, what):
        """``vals`` (a tensor, list/tuple, or dict when the queue has names) as one tensor per
        component, converted to the component dtypes."""
        if self._names is not None:
            if not isinstance(vals, dict):
                raise ValueError(f"{what}: this queue has names {self._names}, so pass a dict "
                                 f"keyed by them, got {type(vals).__name__}")
            if sorted(vals) != sorted(self._names):
                raise ValueError(f"{what}: keys {sorted(vals)} do not match the queue's names "
                                 f"{sorted(self._names)}")
            vals = [vals[k] for k in self._names]
        elif isinstance(vals, dict):
            raise ValueError(f"{what}: this queue has no names; pass a list of tensors")
        elif not isinstance(vals, (list, tuple)):
            vals = [vals]
        if len(vals) != len(self._dtypes):
            raise ValueError(f"{what}: expected {len(self._dtypes)} components "
                             f"({[d.name for d in self._dtypes]}), got {len(vals)}")
        return [convert_to_tensor(v, dtype=dt, name=f"component_{i}")
                for i, (v, dt) in enumerate(zip(vals, self._dtypes))]

    def _pack(self, outs):
        if self._names is not None:
            return dict(zip(self._names, outs))
        return outs[0] if len(outs) == 1 else list(outs)

    def enqueue(self, vals, name=None):
        """An op that adds one element (one tensor per component); blocks while full."""
        with name_scope(name, f"{self._name}_enqueue") as scope:
            ts = self._flatten_vals(vals, "enqueue")
            for i, (t, shp) in enumerate(zip(ts, self._shapes)):
                if not shp.is_compatible_with(t.shape):
                    raise ValueError(f"enqueue: component {i} has shape {t.shape}, which is "
                                     f"not compatible with the queue's shape {shp}")
            return make_op("QueueEnqueueV2", [self._queue_ref] + ts,
                           {"Tcomponents": list(self._dtypes), "timeout_ms": -1}, name=scope)

    def enqueue_many(self, vals, name=None):
        """An op that adds ``vals[i][k]`` for each ``k`` along dimension 0 of every component."""
        with name_scope(name, f"{self._name}_EnqueueMany") as scope:
            ts = self._flatten_vals(vals, "enqueue_many")
            lead = None
            for i, (t, shp) in enumerate(zip(ts, self._shapes)):
                if t.shape.ndims == 0:
                    raise ValueError(f"enqueue_many: component {i} is a scalar; it needs a "
                                     "leading batch dimension")
                if t.shape.ndims is not None:
                    if not shp.is_compatible_with(t.shape[1:]):
                        raise ValueError(f"enqueue_many: component {i} has shape {t.shape}; "
                                         f"its elements' shape {t.shape[1:]} is not compatible "
                                         f"with the queue's shape {shp}")
                    d = t.shape[0].value
                    if lead is not None and d is not None and d != lead:
                        raise ValueError(f"enqueue_many: components have different batch "
                                         f"sizes {lead} and {d} (component {i})")
                    lead = d if d is not None else lead
            return make_op("QueueEnqueueManyV2", [self._queue_ref] + ts,
                           {"Tcomponents": list(self._dtypes), "timeout_ms": -1}, name=scope)

    def dequeue(self, name=None):
        """Removes one element; blocks while the queue is empty (and not closed)."""
        op = make_op("QueueDequeueV2", [self._queue_ref],
                     dict(self._attrs(), timeout_ms=-1), name=name or f"{self._name}_Dequeue")
        return self._pack(op.outputs)

    def dequeue_many(self, n, name=None):
        """Removes ``n`` elements, stacked along a new dimension 0."""
        n_t = convert_to_tensor(n, dtype=dtypes.int32, name="n")
        op = make_op("QueueDequeueManyV2", [self._queue_ref, n_t],
                     dict(self._attrs(), timeout_ms=-1), name=name or f"{self._name}_DequeueMany")
        return self._pack(op.outputs)

    def dequeue_up_to(self, n, name=None):
        """Like ``dequeue_many``, but a closed queue yields its last < ``n`` elements."""
        n_t = convert_to_tensor(n, dtype=dtypes.int32, name="n")
        op = make_op("QueueDequeueUpToV2", [self._queue_ref, n_t],
                     dict(self._attrs(), timeout_ms=-1), name=name or f"{self._name}_DequeueUpTo")
        return self._pack(op.outputs)

    def close(self, cancel_pending_enqueues=False, name=None):
        """An op closing the queue: later enqueues fail; dequeues drain what is left."""
        return make_op("QueueCloseV2", [self._queue_ref],
                       {"cancel_pending_enqueues": bool(cancel_pending_enqueues)},
                       name=name or f"{self._name}_Close")

    def size(self, name=None):
        """The number of elements in the queue (int32 scalar)."""
        return make_op("QueueSizeV2", [self._queue_ref], {},
                       name=name or f"{self._name}_Size").outputs[0]

    def is_closed(self, name=None):
        return make_op("QueueIsClosedV2", [self._queue_ref], {},
                       name=name or f"{self._name}_IsClosed").outputs[0]


def _queue_args(capacity, dtypes_, shapes, names, what):
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
        raise ValueError(f"{what}: capacity must be a positive int, got {capacity!r}")
    if isinstance(dtypes_, (list, tuple)):
        dts = [dtypes.as_dtype(d) for d in dtypes_]
    else:
        dts = [dtypes.as_dtype(dtypes_)]
    if not dts:
        raise ValueError(f"{what}: dtypes must name at least one component dtype")
    if isinstance(shapes, TensorShape):
        shapes = [shapes]
    if shapes is not None and all(d is None or isinstance(d, int) for d in shapes):
        shapes = [shapes]  # as TF: a list of ints (even []) is one component's shape
    shapes = _as_shape_list(shapes, len(dts), what)
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        if len(names) != len(dts):
            raise ValueError(f"{what}: names has {len(names)} entries but dtypes has {len(dts)}")
    return dts, shapes, names


class FIFOQueue(QueueBase):
    """A first-in first-out queue: ``tw.FIFOQueue(capacity, [tw.float32], shapes=[[784]])``."""

    def __init__(self, capacity, dtypes, shapes=None, names=None, shared_name=None,  # noqa: A002
                 name="fifo_queue"):
        dts, shps, names = _queue_args(capacity, dtypes, shapes, names, "FIFOQueue")
        g = get_default_graph()
        ref = make_op("FIFOQueueV2", [], {
            "component_types": dts, "shapes": shps or [], "capacity": capacity,
            "container": "", "shared_name": shared_name or ""}, name=name, graph=g).outputs[0]
        super().__init__(dts, shps, names, ref)


class RandomShuffleQueue(QueueBase):
    """Dequeues elements in random order, keeping at least ``min_after_dequeue`` elements
    until closed (so shuffling mixes well): ``tw.RandomShuffleQueue(100, 20, [tw.int32])``."""

    def __init__(self, capacity, min_after_dequeue, dtypes, shapes=None, names=None,  # noqa: A002
                 seed=None, shared_name=None, name="random_shuffle_queue"):
        dts, shps, names = _queue_args(capacity, dtypes, shapes, names, "RandomShuffleQueue")
        if not isinstance(min_after_dequeue, int) or not 0 <= min_after_dequeue < capacity:
            raise ValueError(f"RandomShuffleQueue: min_after_dequeue must be an int in "
                             f"[0, capacity={capacity}), got {min_after_dequeue!r}")
        g = get_default_graph()
        seed1, seed2 = _seeds(g, seed)
        ref = make_op("RandomShuffleQueueV2", [], {
            "component_types": dts, "shapes": shps or [], "capacity": capacity,
            "min_after_dequeue": min_after_dequeue, "seed": seed1, "seed2": seed2,
            "container": "", "shared_name": shared_name or ""}, name=name, graph=g).outputs[0]
        super().__init__(dts, shps, names, ref)


def _seeds(graph, op_seed):
    """(seed, seed2) by TF1's rule (the graph seed combined with the op seed); 0, 0: unseeded."""
    from tensorweave.ops.random_ops import get_seed

    with graph.as_default():
        s1, s2 = get_seed(op_seed)
    return s1 or 0, s2 or 0


# --- iterators (the graph side of tw.data) ----------------------------------------------------
def iterator_op(output_types, output_shapes, shared_name="", dataset=None, name=None):
    """The handle op of an iterator: ``IteratorV2`` (initialized by ``MakeIterator``) or, when
    ``dataset`` is given, ``OneShotIterator`` (initializes itself on first use)."""
    attrs = {"output_types": list(output_types), "output_shapes": list(output_shapes),
             "container": "", "shared_name": shared_name or ""}
    if dataset is not None:
        attrs["dataset"] = dataset
        return make_op("OneShotIterator", [], attrs, name=name or "OneShotIterator",
                       graph=get_default_graph()).outputs[0]
    return make_op("IteratorV2", [], attrs, name=name or "Iterator",
                   graph=get_default_graph()).outputs[0]


def make_iterator(handle, dataset, captures=(), name=None):
    """The op that (re)starts ``handle``'s iterator on ``dataset``; ``captures`` are tensors
    the dataset reads (placeholders fed when the initializer runs)."""
    if not isinstance(handle, Tensor):
        raise TypeError(f"make_iterator: handle must be a Tensor, got {handle!r}")
    return make_op("MakeIterator", [handle] + list(captures), {"dataset": dataset},
                   name=name or "MakeIterator")


def iterator_to_string_handle(handle, name=None):
    """A string scalar naming ``handle``'s iterator, to feed a ``from_string_handle`` one."""
    return make_op("IteratorToStringHandle", [handle], {},
                   name=name or "IteratorToStringHandle").outputs[0]


def iterator_from_string_handle(string_handle, output_types, output_shapes, name=None):
    """An iterator handle chosen at run time by the fed string."""
    return make_op("IteratorFromStringHandleV2", [convert_to_tensor(string_handle)], {
        "output_types": list(output_types), "output_shapes": list(output_shapes)},
        name=name or "IteratorFromStringHandle").outputs[0]


def iterator_get_next(handle, output_types, output_shapes, name=None):
    """The op producing the next element, one output per component."""
    return make_op("IteratorGetNext", [handle], {
        "output_types": list(output_types), "output_shapes": list(output_shapes)},
        name=name or "IteratorGetNext").outputs


__all__ = ["QueueBase", "FIFOQueue", "RandomShuffleQueue"]
