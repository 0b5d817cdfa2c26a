"""Plan-time graph rewrites (DESIGN.md rule 3). Nothing here mutates the graph: each pass
records, for the plan being compiled, which tensors alias others and which are constants.

- identity removal: Identity-like ops without control edges become aliases of their input;
- constant folding: pure ops whose inputs are all constants run once at compile time, and
  Shape/Size/Rank of statically known shapes become constants;
- common-subexpression elimination: pure ops of one type with the same (resolved) inputs and
  equal attrs are computed once.

Every pass can be switched off with ``ConfigProto(graph_options=GraphOptions(...))``; tests run
models both ways and compare results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_IDENTITY_OPS = {"Identity", "StopGradient", "PlaceholderWithDefault", "Snapshot"}
_NONDETERMINISTIC = ("Random", "TruncatedNormal", "Multinomial", "Dropout", "Shuffle",
                     "Iterator", "Queue", "Print")
_MAX_FOLD_ELEMENTS = 1 << 20


@dataclass
class Rewrite:
    alias: dict = field(default_factory=dict)  # Tensor -> Tensor computing the same value
    consts: dict = field(default_factory=dict)  # Tensor -> ndarray known at compile time
    removed: dict = field(default_factory=dict)  # Operation -> Operation it merged into, or None
    stats: dict = field(default_factory=lambda: {"identities": 0, "folded": 0, "cse": 0})

    def resolve(self, t):
        while t in self.alias:
            t = self.alias[t]
        return t


def _pure(op) -> bool:
    d = op._op_def
    return not d.stateful and not d.ref_inputs and not op.type.startswith(_NONDETERMINISTIC) \
        and not any(s in op.type for s in ("Random", "Queue", "Iterator"))


def _attr_key(v):
    if isinstance(v, np.ndarray):
        return ("nd", v.dtype.str, v.shape, v.tobytes()) if v.size <= 64 else ("id", id(v))
    if isinstance(v, (list, tuple)):
        return tuple(_attr_key(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _attr_key(x)) for k, x in v.items()))
    try:
        hash(v)
        return v
    except TypeError:
        return ("id", id(v))


def rewrite(ops, feed_tensors, ctx, options) -> Rewrite:
    """Runs the enabled passes over ``ops`` (a pruned list in topological order)."""
    rw = Rewrite()
    fed = set(feed_tensors)
    seen: dict = {}
    for op in ops:
        if op._control_inputs or any(t in fed for t in op.outputs):
            continue
        ins = [rw.resolve(t) for t in op._inputs]
        if options.remove_identities and op.type in _IDENTITY_OPS and not op._control_outputs:
            rw.alias[op.outputs[0]] = ins[0]
            rw.removed[op] = ins[0].op
            rw.stats["identities"] += 1
            continue
        if not _pure(op):
            continue
        if options.constant_folding and _fold(op, ins, rw, ctx, fed):
            continue
        if options.common_subexpression_elimination and op.outputs:
            key = (op.type, tuple(ins), _attr_key(op.attrs))
            prev = seen.get(key)
            if prev is not None:
                for a, b in zip(op.outputs, prev.outputs):
                    rw.alias[a] = b
                rw.removed[op] = prev
                rw.stats["cse"] += 1
            else:
                seen[key] = op
    return rw


def _fold(op, ins, rw, ctx, fed) -> bool:
    if op.type == "Const":
        return False
    if op.type in ("Shape", "Size", "Rank") and ins[0].shape.is_fully_defined():
        shape = ins[0].shape.as_list()
        npd = op.outputs[0].dtype.as_numpy_dtype
        val = {"Shape": lambda: np.array(shape, npd), "Size": lambda: np.array(
            int(np.prod(shape)), npd), "Rank": lambda: np.array(len(shape), npd)}[op.type]()
    elif ins and all(t in rw.consts or (t.op.type == "Const" and t not in fed) for t in ins):
        from tensorweave.runtime.plan import _kernel_for
        vals = [rw.consts[t] if t in rw.consts else t.op.attrs["value"] for t in ins]
        if sum(np.size(v) for v in vals) > _MAX_FOLD_ELEMENTS:
            return False
        try:
            with np.errstate(all="ignore"):  # the same value the run would compute, silently
                val = _kernel_for(op, ctx, "CPU")(*vals)
        except Exception:  # noqa: BLE001  (leave it to fail at run time, with the op named)
            return False
    else:
        return False
    outs = val if len(op.outputs) > 1 else (val,)
    if any(not isinstance(v, np.ndarray) and not np.isscalar(v) for v in outs):
        return False
    for t, v in zip(op.outputs, outs):
        arr = np.array(v, copy=True)
        arr.setflags(write=False)
        rw.consts[t] = arr
    rw.removed[op] = None
    rw.stats["folded"] += 1
    return True
