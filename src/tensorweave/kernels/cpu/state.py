"""Variable storage and updates. Variables live in the session's context, keyed by op name;
update kernels write into that storage in place."""

from __future__ import annotations

import numpy as np

from tensorweave.framework import errors
from tensorweave.framework.registry import register_kernel


def variable_name(op, ref_index=0):
    """The storage key of the variable behind ``op.inputs[ref_index]``."""
    t = op.inputs[ref_index]
    while t.op.type in ("Identity", "RefIdentity"):
        t = t.op.inputs[0]
    if not t.op.type.startswith("Variable"):
        raise errors.InvalidArgumentError(
            None, op, f"{op.type} op {op.name!r} must update a variable, but its input "
            f"{t.name!r} is produced by a {t.op.type} op")
    return t.op.name


def uninitialized(op, name):
    return errors.FailedPreconditionError(
        None, op, f"Attempting to use uninitialized value {name}: run its initializer first "
        "(sess.run(tw.global_variables_initializer())) or restore it from a checkpoint.")


def read_var(store, op, name):
    try:
        return store[name]
    except KeyError:
        raise uninitialized(op, name) from None


@register_kernel("VariableV2")
def _variable(op, ctx):
    store, name = ctx.variables, op.name

    def run():
        try:
            return store[name]
        except KeyError:
            raise uninitialized(op, name) from None

    return run


@register_kernel("Assign")
def _assign(op, ctx):
    store, name = ctx.variables, variable_name(op)
    npd = op.inputs[0].dtype.as_numpy_dtype
    validate = op.attrs.get("validate_shape", True)
    declared = op.inputs[0].shape

    def run(value):
        cur = store.get(name)
        if cur is not None and cur.shape == np.shape(value):
            np.copyto(cur, value)
            return cur
        if validate and not declared.is_compatible_with(np.shape(value)):
            raise errors.InvalidArgumentError(
                None, op, f"Assign requires shapes of both tensors to match: variable {name} "
                f"has shape {declared}, value has shape {np.shape(value)}")
        new = np.array(value, dtype=npd, copy=True)
        store[name] = new
        return new

    return run


def _assign_update(ufunc):
    def factory(op, ctx):
        store, name = ctx.variables, variable_name(op)

        def run(value):
            cur = read_var(store, op, name)
            ufunc(cur, value, out=cur)
            return cur

        return run

    return factory


register_kernel("AssignAdd")(_assign_update(np.add))
register_kernel("AssignSub")(_assign_update(np.subtract))


def _scatter(kind):
    def factory(op, ctx):
        store, name = ctx.variables, variable_name(op)

        def run(indices, updates):
            cur = read_var(store, op, name)
            if kind == "update":
                cur[indices] = updates
            elif kind == "add":
                np.add.at(cur, indices, updates)
            else:
                np.subtract.at(cur, indices, updates)
            return cur

        return run

    return factory


register_kernel("ScatterUpdate")(_scatter("update"))
register_kernel("ScatterAdd")(_scatter("add"))
register_kernel("ScatterSub")(_scatter("sub"))


@register_kernel("IsVariableInitialized")
def _is_initialized(op, ctx):
    store, name = ctx.variables, variable_name(op)
    return lambda: np.bool_(name in store)


@register_kernel("NoOp")
def _no_op(op, ctx):
    return lambda: None
