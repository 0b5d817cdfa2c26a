"""Send/Recv kernels: hand tensors to the task transport and wait for them at the rendezvous."""

from __future__ import annotations

from tensorweave.framework.registry import register_kernel


def rendezvous_key(step_id, op) -> str:
    a = op.attrs
    return f"{int(step_id)};{a['tensor_name']};{a['send_device']};{a['recv_device']}"


@register_kernel("_Send")
def _send(op, ctx):
    dst = op.attrs["recv_device"]
    # the task's Outbox (distributed/task.py): a send marked ``batch`` by the partitioner may
    # wait there for the step's other sends; any other send goes out now, with those held
    sender = ctx.resources.get("sender")
    if sender is not None:
        hold = bool(op.attrs.get("batch", False))

        def run(value, step_id):
            sender.send(dst, rendezvous_key(step_id, op), value, hold)

        return run
    transport = ctx.resources["transport"]

    def run(value, step_id):
        transport.send(dst, rendezvous_key(step_id, op), value)

    return run


@register_kernel("_Recv")
def _recv(op, ctx):
    rendezvous = ctx.resources["rendezvous"]
    timeout = ctx.resources.get("recv_timeout", 120.0)

    def run(step_id):
        return rendezvous.recv(rendezvous_key(step_id, op), timeout, op)

    return run
