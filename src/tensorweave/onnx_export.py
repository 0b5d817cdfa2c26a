"""``tw.onnx.export``: inference graphs as ONNX models (for onnxruntime, phones, production).

The sub-graph from ``inputs`` (placeholders) to ``outputs`` is converted op by op with the
``onnx.helper`` API; variables become initializers with their current values in ``sess``, and
tensors whose value is known when the graph is built (shapes, axes) are folded into constants.
NHWC convolutions and pools are wrapped in transposes to ONNX's NCHW. The model is checked with
``onnx.checker`` before it is written. Every op type without a converter is named in one error.

Example::

    tw.onnx.export(sess, [probs], "model.onnx", inputs=[x])
    import onnxruntime as ort
    ort.InferenceSession("model.onnx").run(None, {"x": batch})
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.constant_op import constant_value
from tensorweave.framework.ops import Tensor

__all__ = ["export", "SUPPORTED_OPS", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
_CONVERTERS: dict = {}


def _converter(*types):
    def deco(fn):
        for t in types:
            _CONVERTERS[t] = fn
        return fn
    return deco


class _Exporter:
    def __init__(self, sess, inputs, opset):
        import onnx
        from onnx import helper
        self.onnx, self.helper = onnx, helper
        self.sess = sess
        self.opset = opset
        self.nodes, self.initializers = [], []
        self.names: dict = {}  # Tensor -> ONNX value name
        self.var_values: dict = {}
        self._uid = 0
        self.inputs = list(inputs)
        for t in self.inputs:
            self.names[t] = t.op.name if t.value_index == 0 else t.name

    # --- values ----------------------------------------------------------------------------
    def known(self, t: Tensor):
        """The value of ``t`` when it does not depend on the inputs (constants, variables)."""
        if t in self.names and t in self.inputs:
            return None
        v = constant_value(t)
        if v is not None:
            return np.asarray(v)
        if t.op.type in ("VariableV2", "Variable"):
            return self.var_values.get(t.op.name)
        if t.op.type in ("Identity", "StopGradient") and not t.op.control_inputs:
            return self.known(t.op.inputs[0])
        return None

    def const(self, value, hint="const"):
        self._uid += 1
        name = f"{hint}__{self._uid}"
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def value(self, t: Tensor) -> str:
        name = self.names.get(t)
        if name is None:
            v = self.known(t)
            if v is None:
                raise RuntimeError(f"internal: {t.name} was not converted before its use")
            name = self.names[t] = self.const(v, t.op.name)
        return name

    def node(self, op_type, inputs, attrs=None, n_out=1, hint="n"):
        self._uid += 1
        outs = [f"{hint}__{op_type}__{self._uid}_{i}" for i in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=f"{hint}/{op_type}_{self._uid}",
                                                **(attrs or {})))
        return outs[0] if n_out == 1 else outs

    def attr_const(self, t: Tensor, what: str):
        v = self.known(t)
        if v is None:
            raise ValueError(f"ONNX export: {what} ({t.name}) must be known when the graph is "
                             "exported (a constant), not computed from the inputs")
        return v

    def ints64(self, values, hint):
        return self.const(np.asarray(values, np.int64).reshape(-1), hint)


def _onnx_dtype(dt):
    from onnx import helper
    return helper.np_dtype_to_tensor_dtype(dtypes.as_dtype(dt).as_numpy_dtype)


# --- converters: fn(ex, op, ins) -> list of output names (one per op output) -------------------
_SAME = {"Relu": "Relu", "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Exp": "Exp", "Log": "Log",
         "Sqrt": "Sqrt", "Neg": "Neg", "Abs": "Abs", "Floor": "Floor", "Ceil": "Ceil",
         "Reciprocal": "Reciprocal", "Softplus": "Softplus", "Softsign": "Softsign",
         "Erf": "Erf", "Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Sign": "Sign",
         "Round": "Round", "Identity": "Identity", "StopGradient": "Identity",
         "LogicalNot": "Not", "Elu": "Elu",
         "AddV2": "Add", "Add": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
         "Maximum": "Max", "Minimum": "Min", "Pow": "Pow", "Equal": "Equal",
         "Greater": "Greater", "Less": "Less", "GreaterEqual": "GreaterOrEqual",
         "LessEqual": "LessOrEqual", "LogicalAnd": "And", "LogicalOr": "Or",
         "SelectV2": "Where"}


@_converter(*_SAME)
def _same(ex, op, ins):
    return [ex.node(_SAME[op.type], ins, hint=op.name)]


@_converter("AddN")
def _add_n(ex, op, ins):
    return [ex.node("Sum", ins, hint=op.name)]


@_converter("Square")
def _square(ex, op, ins):
    return [ex.node("Mul", [ins[0], ins[0]], hint=op.name)]


@_converter("Rsqrt")
def _rsqrt(ex, op, ins):
    return [ex.node("Reciprocal", [ex.node("Sqrt", ins, hint=op.name)], hint=op.name)]


@_converter("SquaredDifference")
def _sqdiff(ex, op, ins):
    d = ex.node("Sub", ins, hint=op.name)
    return [ex.node("Mul", [d, d], hint=op.name)]


@_converter("Relu6")
def _relu6(ex, op, ins):
    dt = op.outputs[0].dtype.as_numpy_dtype
    return [ex.node("Clip", [ins[0], ex.const(np.array(0, dt)), ex.const(np.array(6, dt))],
                    hint=op.name)]


@_converter("LeakyRelu")
def _leaky(ex, op, ins):
    return [ex.node("LeakyRelu", ins, {"alpha": float(op.attrs.get("alpha", 0.2))},
                    hint=op.name)]


@_converter("Softmax", "LogSoftmax")
def _softmax(ex, op, ins):
    return [ex.node(op.type, ins, {"axis": -1}, hint=op.name)]


@_converter("MatMul", "BatchMatMulV2")
def _matmul(ex, op, ins):
    ta = op.attrs.get("transpose_a", op.attrs.get("adj_x", False))
    tb = op.attrs.get("transpose_b", op.attrs.get("adj_y", False))
    a, b = ins
    if ta:
        a = ex.node("Transpose", [a], {"perm": _swap_last(op.inputs[0])}, hint=op.name)
    if tb:
        b = ex.node("Transpose", [b], {"perm": _swap_last(op.inputs[1])}, hint=op.name)
    return [ex.node("MatMul", [a, b], hint=op.name)]


def _swap_last(t):
    n = t.shape.ndims
    if n is None:
        raise ValueError(f"ONNX export: transposed matmul operand {t.name} needs a known rank")
    return list(range(n - 2)) + [n - 1, n - 2]


@_converter("BiasAdd")
def _bias_add(ex, op, ins):
    if op.attrs.get("data_format", "NHWC") not in ("NHWC", "N..C"):
        raise ValueError(f"ONNX export: BiasAdd {op.name} with data_format "
                         f"{op.attrs['data_format']} is not supported (use NHWC)")
    return [ex.node("Add", ins, hint=op.name)]


@_converter("Reshape")
def _reshape(ex, op, ins):
    shape = ex.known(op.inputs[1])
    s = ex.ints64(shape, op.name + "/shape") if shape is not None else \
        ex.node("Cast", [ins[1]], {"to": _onnx_dtype(np.int64)}, hint=op.name)
    return [ex.node("Reshape", [ins[0], s], hint=op.name)]


@_converter("Cast")
def _cast(ex, op, ins):
    return [ex.node("Cast", ins[:1], {"to": _onnx_dtype(op.attrs["DstT"])}, hint=op.name)]


@_converter("Transpose")
def _transpose(ex, op, ins):
    perm = ex.attr_const(op.inputs[1], "the permutation")
    return [ex.node("Transpose", ins[:1], {"perm": [int(p) for p in perm]}, hint=op.name)]


@_converter("ConcatV2")
def _concat(ex, op, ins):
    axis = int(ex.attr_const(op.inputs[-1], "the concat axis"))
    return [ex.node("Concat", ins[:-1], {"axis": axis}, hint=op.name)]


@_converter("Pack")
def _pack(ex, op, ins):
    axis = int(op.attrs.get("axis", 0))
    ax = ex.ints64([axis], op.name + "/axis")
    parts = [ex.node("Unsqueeze", [i, ax], hint=op.name) for i in ins]
    return [ex.node("Concat", parts, {"axis": axis}, hint=op.name)]


@_converter("ExpandDims")
def _expand_dims(ex, op, ins):
    axis = int(np.asarray(ex.attr_const(op.inputs[1], "the axis")).reshape(()))
    return [ex.node("Unsqueeze", [ins[0], ex.ints64([axis], op.name + "/axis")], hint=op.name)]


@_converter("Squeeze")
def _squeeze(ex, op, ins):
    dims = list(op.attrs.get("squeeze_dims", []) or [])
    args = [ins[0]] + ([ex.ints64(dims, op.name + "/axes")] if dims else [])
    return [ex.node("Squeeze", args, hint=op.name)]


_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin",
           "Prod": "ReduceProd"}


@_converter(*_REDUCE)
def _reduce(ex, op, ins):
    axes = [int(a) for a in np.asarray(ex.attr_const(op.inputs[1], "the axes")).reshape(-1)]
    keep = int(bool(op.attrs.get("keep_dims", False)))
    if not axes:
        return [ex.node("Identity", ins[:1], hint=op.name)]
    kind = _REDUCE[op.type]
    if kind == "ReduceSum" or ex.opset >= 18:  # axes became an input
        return [ex.node(kind, [ins[0], ex.ints64(axes, op.name + "/axes")],
                        {"keepdims": keep}, hint=op.name)]
    return [ex.node(kind, ins[:1], {"axes": axes, "keepdims": keep}, hint=op.name)]


@_converter("ArgMax", "ArgMin")
def _argmax(ex, op, ins):
    axis = int(np.asarray(ex.attr_const(op.inputs[1], "the axis")).reshape(()))
    r = ex.node(op.type, ins[:1], {"axis": axis, "keepdims": 0}, hint=op.name)
    out_t = op.attrs.get("output_type", dtypes.int64)
    if dtypes.as_dtype(out_t) is not dtypes.int64:
        r = ex.node("Cast", [r], {"to": _onnx_dtype(out_t)}, hint=op.name)
    return [r]


@_converter("Shape")
def _shape(ex, op, ins):
    r = ex.node("Shape", ins, hint=op.name)
    out_t = op.attrs.get("out_type", dtypes.int32)
    if dtypes.as_dtype(out_t) is not dtypes.int64:
        r = ex.node("Cast", [r], {"to": _onnx_dtype(out_t)}, hint=op.name)
    return [r]


@_converter("GatherV2")
def _gather(ex, op, ins):
    axis = int(np.asarray(ex.attr_const(op.inputs[2], "the gather axis")).reshape(()))
    if op.attrs.get("batch_dims", 0):
        raise ValueError(f"ONNX export: GatherV2 {op.name} with batch_dims is not supported")
    return [ex.node("Gather", ins[:2], {"axis": axis}, hint=op.name)]


@_converter("Pad", "PadV2", "MirrorPad")
def _pad(ex, op, ins):
    p = np.asarray(ex.attr_const(op.inputs[1], "the paddings"), np.int64)
    pads = ex.ints64(np.concatenate([p[:, 0], p[:, 1]]), op.name + "/pads")
    args = [ins[0], pads]
    attrs = {"mode": "constant"}
    if op.type == "PadV2":
        args.append(ins[2])
    if op.type == "MirrorPad":
        mode = op.attrs.get("mode", "REFLECT")
        if mode != "REFLECT":
            raise ValueError(f"ONNX export: MirrorPad mode {mode} is not supported")
        attrs["mode"] = "reflect"
    return [ex.node("Pad", args, attrs, hint=op.name)]


@_converter("StridedSlice")
def _strided_slice(ex, op, ins):
    begin, end, strides = (np.asarray(ex.attr_const(t, "slice bounds"), np.int64).reshape(-1)
                           for t in op.inputs[1:4])
    a = {k: int(op.attrs.get(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                               "new_axis_mask", "shrink_axis_mask")}
    if a["ellipsis_mask"] or a["new_axis_mask"]:
        raise ValueError(f"ONNX export: StridedSlice {op.name} with an ellipsis or new axis "
                         "is not supported")
    big = np.iinfo(np.int64).max
    starts, ends, steps, squeeze = [], [], [], []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        if a["shrink_axis_mask"] >> i & 1:
            starts.append(b)
            ends.append(big if b == -1 else b + 1)
            steps.append(1)
            squeeze.append(i)
            continue
        starts.append((0 if s > 0 else -1) if a["begin_mask"] >> i & 1 else b)
        ends.append((big if s > 0 else -big - 1) if a["end_mask"] >> i & 1 else e)
        steps.append(s)
    n = len(starts)
    y = ex.node("Slice", [ins[0], ex.ints64(starts, op.name + "/starts"),
                          ex.ints64(ends, op.name + "/ends"),
                          ex.ints64(list(range(n)), op.name + "/axes"),
                          ex.ints64(steps, op.name + "/steps")], hint=op.name)
    if squeeze:
        y = ex.node("Squeeze", [y, ex.ints64(squeeze, op.name + "/squeeze")], hint=op.name)
    return [y]


@_converter("Tile")
def _tile(ex, op, ins):
    reps = ex.known(op.inputs[1])
    r = ex.ints64(reps, op.name + "/repeats") if reps is not None else \
        ex.node("Cast", [ins[1]], {"to": _onnx_dtype(np.int64)}, hint=op.name)
    return [ex.node("Tile", [ins[0], r], hint=op.name)]


# NHWC <-> NCHW around the image ops
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _spatial(op, key):
    v = list(op.attrs[key])
    return v[2:4] if op.attrs.get("data_format", "NHWC") == "NCHW" else v[1:3]


def _image_op(ex, op, x, onnx_type, extra_inputs, attrs):
    nhwc = op.attrs.get("data_format", "NHWC") == "NHWC"
    padding = op.attrs["padding"]
    if padding == "SAME":
        attrs["auto_pad"] = "SAME_UPPER"  # TF puts the odd padding pixel at the end
    elif padding == "VALID":
        attrs["auto_pad"] = "VALID"
    elif padding == "EXPLICIT":
        p = np.asarray(op.attrs["explicit_paddings"]).reshape(-1, 2)
        p = p[1:3] if nhwc else p[2:4]
        attrs["pads"] = [int(v) for v in list(p[:, 0]) + list(p[:, 1])]
    else:
        raise ValueError(f"ONNX export: padding {padding!r} of {op.name} is not supported")
    if nhwc:
        x = ex.node("Transpose", [x], {"perm": _TO_NCHW}, hint=op.name)
    y = ex.node(onnx_type, [x] + extra_inputs, attrs, hint=op.name)
    if nhwc:
        y = ex.node("Transpose", [y], {"perm": _TO_NHWC}, hint=op.name)
    return y


def _filter(ex, op, t, perm, reshape=None):
    w = ex.known(t)
    if w is not None:  # transpose the weights once, at export time
        if reshape is not None:
            w = w.reshape(reshape)
        return ex.const(np.ascontiguousarray(np.transpose(w, perm)), op.name + "/filter")
    f = ex.value(t)
    if reshape is not None:
        f = ex.node("Reshape", [f, ex.ints64(reshape, op.name + "/shape")], hint=op.name)
    return ex.node("Transpose", [f], {"perm": perm}, hint=op.name)


@_converter("Conv2D")
def _conv2d(ex, op, ins):
    w = _filter(ex, op, op.inputs[1], [3, 2, 0, 1])  # HWIO -> OIHW
    attrs = {"strides": _spatial(op, "strides"), "dilations": _spatial(op, "dilations")}
    return [_image_op(ex, op, ins[0], "Conv", [w], attrs)]


@_converter("DepthwiseConv2dNative")
def _depthwise(ex, op, ins):
    h, w_, c, m = op.inputs[1].shape.as_list()
    if None in (h, w_, c, m):
        raise ValueError(f"ONNX export: depthwise filter of {op.name} needs a static shape")
    # [H, W, C, M] -> [H, W, 1, C*M] (output channel c*M + m, as TensorFlow) -> [C*M, 1, H, W]
    w = _filter(ex, op, op.inputs[1], [3, 2, 0, 1], reshape=[h, w_, 1, c * m])
    attrs = {"strides": _spatial(op, "strides"), "group": c,
             "dilations": _spatial(op, "dilations") if "dilations" in op.attrs else [1, 1]}
    return [_image_op(ex, op, ins[0], "Conv", [w], attrs)]


@_converter("MaxPool", "AvgPool")
def _pool(ex, op, ins):
    attrs = {"kernel_shape": _spatial(op, "ksize"), "strides": _spatial(op, "strides")}
    kind = "MaxPool" if op.type == "MaxPool" else "AveragePool"
    return [_image_op(ex, op, ins[0], kind, [], attrs)]


@_converter("FusedBatchNorm", "FusedBatchNormV3")
def _fused_bn(ex, op, ins):
    if op.attrs.get("is_training", True):
        raise ValueError(f"ONNX export: {op.name} is in training mode (is_training=True); "
                         "export the inference graph (training=False)")
    nhwc = op.attrs.get("data_format", "NHWC") == "NHWC"
    x = ins[0]
    if nhwc:
        x = ex.node("Transpose", [x], {"perm": _TO_NCHW}, hint=op.name)
    y = ex.node("BatchNormalization", [x] + ins[1:5],
                {"epsilon": float(op.attrs.get("epsilon", 1e-3))}, hint=op.name)
    if nhwc:
        y = ex.node("Transpose", [y], {"perm": _TO_NHWC}, hint=op.name)
    return [y] + [None] * (len(op.outputs) - 1)


SUPPORTED_OPS = sorted(_CONVERTERS)


# --- the walk ----------------------------------------------------------------------------------------
def _plan(ex, outputs):
    """Ops to convert, inputs first; (order, unsupported types, unfed placeholders)."""
    order, seen, missing, unfed = [], set(), set(), set()
    stack = [(t.op, False) for t in outputs if t not in ex.inputs and ex.known(t) is None]
    while stack:
        op, done = stack.pop()
        if done:
            order.append(op)
            continue
        if op in seen:
            continue
        seen.add(op)
        if op.type == "Placeholder":
            unfed.add(op.name)
            continue
        if op.type == "PlaceholderWithDefault":
            pass
        elif op.type not in _CONVERTERS:
            missing.add(op.type)
        stack.append((op, True))
        for t in op.inputs:
            if t in ex.inputs or ex.known(t) is not None:
                continue
            stack.append((t.op, False))
    return order, missing, unfed


def export(sess, outputs, path, inputs=None, opset=DEFAULT_OPSET, model_name="tensorweave"):
    """Writes the graph computing ``outputs`` (tensors, or a dict name -> tensor) from
    ``inputs`` (placeholders; default: every placeholder they need) as an ONNX model at
    ``path``; returns the ``onnx.ModelProto``.

    Graph inputs are named after the placeholders' op names (``x``), outputs after the
    tensors' op names or the dict keys.
    """
    import onnx
    from onnx import helper

    if isinstance(outputs, Tensor):
        outputs = [outputs]
    out_names = None
    if isinstance(outputs, dict):
        out_names, outputs = list(outputs), list(outputs.values())
    outputs = list(outputs)
    graph = sess.graph
    if inputs is None:
        inputs = _placeholders(outputs)
    inputs = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    ex = _Exporter(sess, inputs, opset)
    # variable values, read once from the session
    var_ops = [op for op in graph.get_operations() if op.type in ("VariableV2", "Variable")]
    needed_vars = _reachable_vars(outputs, inputs)
    names = [op.name for op in var_ops if op in needed_vars]
    if names:
        ex.var_values = dict(zip(names, sess.run([n + ":0" for n in names])))
    order, missing, unfed = _plan(ex, outputs)
    if missing:
        raise ValueError(f"ONNX export: no converter for op types {', '.join(sorted(missing))}"
                         f"; supported: {', '.join(SUPPORTED_OPS)}")
    if unfed:
        raise ValueError(f"ONNX export: placeholders {sorted(unfed)} are needed but not among "
                         "`inputs`")
    for op in order:
        if op.type == "PlaceholderWithDefault":
            outs = [ex.node("Identity", [ex.value(op.inputs[0])], hint=op.name)]
        else:
            outs = _CONVERTERS[op.type](ex, op, [ex.value(t) for t in op.inputs])
        for t, n in zip(op.outputs, outs):
            if n is not None:
                ex.names[t] = n
    out_values = []
    for i, t in enumerate(outputs):
        name = out_names[i] if out_names else (t.op.name if t.value_index == 0 else t.name)
        ex.nodes.append(helper.make_node("Identity", [ex.value(t)], [name],
                                         name=f"output/{name}"))
        out_values.append(_value_info(name, t))
    in_values = [_value_info(ex.names[t], t) for t in inputs]
    # converters that read an input as an attribute (axes, filters) leave its value unused
    used = {i for n in ex.nodes for i in n.input}
    inits = [i for i in ex.initializers if i.name in used]
    g = helper.make_graph(ex.nodes, model_name, in_values, out_values, inits)
    model = helper.make_model(g, producer_name="tensorweave",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)  # readable by older runtimes (ORT >= 1.10)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def _value_info(name, t):
    from onnx import helper
    dims = None if t.shape.ndims is None else \
        [d if d is not None else "N" if i == 0 else f"d{i}" for i, d in
         enumerate(t.shape.as_list())]
    return helper.make_tensor_value_info(name, _onnx_dtype(t.dtype), dims)


def _placeholders(outputs):
    found, seen, stack = [], set(), [t.op for t in outputs]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type == "Placeholder":
            found.append(op.outputs[0])
        stack += [t.op for t in op.inputs]
    return sorted(found, key=lambda t: t.op._id)


def _reachable_vars(outputs, inputs):
    stop = set(inputs)
    seen, stack = set(), [t for t in outputs]
    while stack:
        t = stack.pop()
        if t in stop or t.op in seen:
            continue
        seen.add(t.op)
        stack += list(t.op.inputs)
    return {op for op in seen if op.type in ("VariableV2", "Variable")}
