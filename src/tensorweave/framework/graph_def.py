"""GraphDef interchange with TensorFlow: ``Graph.as_graph_def``, ``tw.import_graph_def``,
``tw.train.write_graph`` and ``tw.graph_util`` (freezing variables into constants).

The protobuf schema is TensorFlow's own, compiled into the ``tensorboard`` package
(``tensorboard.compat.proto``), so no TensorFlow install is needed; protos are imported on
first use, which keeps ``import tensorweave`` fast. Our op types and attr names already follow
TensorFlow's; on export, type attrs TensorFlow requires but we do not keep (``T``,
``Tidx``...) are derived from the input and output dtypes using ``tf_op_table`` (TensorFlow's
op interfaces), and attrs TensorFlow does not know travel as ``_tw_<name>`` (TensorFlow skips
attrs starting with ``_``), so ours -> GraphDef -> ours loses nothing.

Example::

    gd = tw.get_default_graph().as_graph_def()
    tw.train.write_graph(gd, "/tmp/model", "graph.pbtxt")
    with tw.Graph().as_default():
        y, = tw.import_graph_def(gd, return_elements=["y:0"], name="")
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from tensorweave.framework import dtypes, ops
from tensorweave.framework.registry import registered_ops
from tensorweave.framework.tensor_shape import TensorShape

__all__ = ["write_graph"]

# GraphDef producer version: TensorFlow 1.15's, the graphs we build follow TF1 semantics.
GRAPH_DEF_VERSION = 134
_TW_PREFIX = "_tw_"
# TensorFlow op types with the same semantics as one of ours (older graphs use them).
IMPORT_ALIASES = {"Add": "AddV2", "BiasAddV1": "BiasAdd", "BatchMatMul": "BatchMatMulV2"}


class _Protos:
    """The compiled protos, imported once on first use."""

    _loaded = False

    @classmethod
    def get(cls):
        if not cls._loaded:
            from tensorboard.compat.proto import (
                attr_value_pb2,
                graph_pb2,
                node_def_pb2,
                tensor_pb2,
                tensor_shape_pb2,
                versions_pb2,
            )
            cls.attr_value_pb2, cls.graph_pb2, cls.node_def_pb2 = (
                attr_value_pb2, graph_pb2, node_def_pb2)
            cls.tensor_pb2, cls.tensor_shape_pb2, cls.versions_pb2 = (
                tensor_pb2, tensor_shape_pb2, versions_pb2)
            cls._loaded = True
        return cls


def _tf_ops():
    from tensorweave.framework.tf_op_table import TF_OPS
    return TF_OPS


# --- values <-> protos ---------------------------------------------------------------------------
def shape_to_proto(shape):
    """A TensorShape (or list) as a ``TensorShapeProto`` (-1 for unknown dimensions)."""
    p = _Protos.get().tensor_shape_pb2.TensorShapeProto()
    shape = TensorShape(shape) if not isinstance(shape, TensorShape) else shape
    if shape.ndims is None:
        p.unknown_rank = True
    else:
        for d in shape.as_list():
            p.dim.add(size=-1 if d is None else int(d))
    return p


def proto_to_shape(p) -> TensorShape:
    if p.unknown_rank:
        return TensorShape(None)
    return TensorShape([None if d.size < 0 else int(d.size) for d in p.dim])


def _dtype_from_enum(enum: int):
    return dtypes.as_dtype(enum - 100 if enum > 100 else enum)  # ref types: T_REF = T + 100


def ndarray_to_tensor_proto(value, dtype=None):
    """A NumPy value as a ``TensorProto`` (numbers in ``tensor_content``, strings in
    ``string_val``)."""
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.as_dtype(np.asarray(value).dtype)
    p = _Protos.get().tensor_pb2.TensorProto(dtype=dt.as_datatype_enum)
    arr = np.asarray(value)
    p.tensor_shape.CopyFrom(shape_to_proto(list(arr.shape)))
    if dt is dtypes.string:
        p.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8")
                            for v in arr.reshape(-1))
    else:
        npd = dt.as_numpy_dtype.newbyteorder("<")
        p.tensor_content = np.ascontiguousarray(arr, dtype=npd).tobytes()
    return p


_VAL_FIELDS = {"float32": "float_val", "float64": "double_val", "int32": "int_val",
               "int16": "int_val", "int8": "int_val", "uint8": "int_val", "uint16": "int_val",
               "int64": "int64_val", "bool": "bool_val", "complex64": "scomplex_val",
               "complex128": "dcomplex_val"}


def tensor_proto_to_ndarray(p) -> np.ndarray:
    """The value of a ``TensorProto`` (``tensor_content`` or the typed ``*_val`` fields; a
    short value list is completed with its last value, as TensorFlow does)."""
    dt = _dtype_from_enum(p.dtype)
    shape = tuple(proto_to_shape(p.tensor_shape).as_list())
    size = int(np.prod(shape, dtype=np.int64))
    if dt is dtypes.string:
        vals = np.empty(len(p.string_val), dtype=object)
        vals[:] = list(p.string_val)
    elif p.tensor_content:
        return np.frombuffer(p.tensor_content, dt.as_numpy_dtype.newbyteorder("<")) \
            .astype(dt.as_numpy_dtype).reshape(shape)
    elif dt is dtypes.float16:
        vals = np.array(p.half_val, np.uint16).view(np.float16)
    elif dt.name in _VAL_FIELDS:
        raw = np.array(getattr(p, _VAL_FIELDS[dt.name]))
        if dt.is_complex:
            raw = raw.reshape(-1, 2)
            raw = raw[:, 0] + 1j * raw[:, 1]
        vals = raw.astype(dt.as_numpy_dtype)
    else:
        raise ValueError(f"TensorProto of dtype {dt.name} is not supported")
    if vals.size == size:
        return vals.reshape(shape)
    if vals.size == 0:
        return np.zeros(shape, dt.as_numpy_dtype) if dt is not dtypes.string else \
            np.full(shape, b"", dtype=object)
    if vals.size > size:
        raise ValueError(f"TensorProto holds {vals.size} values for shape {list(shape)}")
    out = np.empty(size, dtype=vals.dtype)
    out[:vals.size] = vals
    out[vals.size:] = vals[-1]
    return out.reshape(shape)


def python_to_attr_value(v):
    """An attr value (DType, TensorShape, ndarray, bool/int/float/str or a list of one kind)
    as an ``AttrValue``; TypeError for anything else (functions, graphs)."""
    av = _Protos.get().attr_value_pb2.AttrValue()
    if isinstance(v, dtypes.DType):
        av.type = v.as_datatype_enum
    elif isinstance(v, TensorShape):
        av.shape.CopyFrom(shape_to_proto(v))
    elif isinstance(v, np.ndarray):
        av.tensor.CopyFrom(ndarray_to_tensor_proto(v))
    elif isinstance(v, (bool, np.bool_)):
        av.b = bool(v)
    elif isinstance(v, (int, np.integer)):
        av.i = int(v)
    elif isinstance(v, (float, np.floating)):
        av.f = float(v)
    elif isinstance(v, str):
        av.s = v.encode("utf-8")
    elif isinstance(v, bytes):
        av.s = v
    elif isinstance(v, (list, tuple)):
        lst = av.list
        lst.SetInParent()
        for x in v:
            if isinstance(x, dtypes.DType):
                lst.type.append(x.as_datatype_enum)
            elif isinstance(x, TensorShape):
                lst.shape.add().CopyFrom(shape_to_proto(x))
            elif isinstance(x, np.ndarray):
                lst.tensor.add().CopyFrom(ndarray_to_tensor_proto(x))
            elif isinstance(x, (bool, np.bool_)):
                lst.b.append(bool(x))
            elif isinstance(x, (int, np.integer)):
                lst.i.append(int(x))
            elif isinstance(x, (float, np.floating)):
                lst.f.append(float(x))
            elif isinstance(x, (str, bytes)):
                lst.s.append(x.encode("utf-8") if isinstance(x, str) else x)
            else:
                raise TypeError(f"cannot store a list element of type {type(x).__name__}")
    else:
        raise TypeError(f"cannot store an attr of type {type(v).__name__}")
    return av


def attr_value_to_python(av):
    """The inverse of :func:`python_to_attr_value` (bytes decode to str where they are UTF-8)."""
    kind = av.WhichOneof("value")
    if kind == "s":
        try:
            return av.s.decode("utf-8")
        except UnicodeDecodeError:
            return av.s
    if kind in ("i", "f", "b"):
        return getattr(av, kind)
    if kind == "type":
        return _dtype_from_enum(av.type)
    if kind == "shape":
        return proto_to_shape(av.shape)
    if kind == "tensor":
        arr = tensor_proto_to_ndarray(av.tensor)
        arr = np.array(arr, copy=True)
        arr.setflags(write=False)  # constants are shared by every run
        return arr
    if kind == "list":
        lst = av.list
        for field in ("s", "i", "f", "b", "type", "shape", "tensor"):
            vals = list(getattr(lst, field))
            if not vals:
                continue
            if field == "s":
                return [x.decode("utf-8", "replace") for x in vals]
            if field == "type":
                return [_dtype_from_enum(x) for x in vals]
            if field == "shape":
                return [proto_to_shape(x) for x in vals]
            if field == "tensor":
                return [tensor_proto_to_ndarray(x) for x in vals]
            return vals
        return []
    if kind is None:
        return None
    raise TypeError(f"attr kind {kind!r} (functions) is not supported")


def _default_value(d):
    if isinstance(d, tuple) and len(d) == 2 and d[0] == "dtype":
        return dtypes.as_dtype(d[1])
    if isinstance(d, tuple) and len(d) == 2 and d[0] == "shape":
        return TensorShape(d[1])
    if isinstance(d, tuple) and len(d) == 3 and d[0] == "tensor":
        arr = np.array(d[1], dtype=d[2])
        arr.setflags(write=False)
        return arr
    return d


# --- export ------------------------------------------------------------------------------------
def _bind_args(args, tensors):
    """Splits a flat tensor list across TensorFlow's argument specs (one variadic at most)."""
    n_var = sum(1 for a in args if a[1] or a[2])
    fixed = len(args) - n_var
    var_len = (len(tensors) - fixed) if n_var == 1 else 1
    out, i = [], 0
    for a in args:
        k = var_len if (a[1] or a[2]) else 1
        out.append((a, tensors[i:i + k]))
        i += k
    return out


def _tf_attrs(op) -> dict:
    """``op.attrs`` in TensorFlow's terms: derived type/length attrs added, unknown attrs moved
    under ``_tw_``."""
    spec = _tf_ops().get(op.type)
    if spec is None:
        return dict(op.attrs)
    attrs = {}
    for k, v in op.attrs.items():
        attrs[k if k in spec["attrs"] else _TW_PREFIX + k] = v
    for args, tensors in ((spec["in"], list(op.inputs)), (spec["out"], list(op.outputs))):
        for (type_attr, number_attr, list_attr), ts in _bind_args(args, tensors):
            if not ts:
                continue
            if type_attr and type_attr not in attrs:
                attrs[type_attr] = ts[0].dtype
            if number_attr and number_attr not in attrs:
                attrs[number_attr] = len(ts)
            if list_attr and list_attr not in attrs:
                attrs[list_attr] = [t.dtype for t in ts]
    return attrs


def op_to_node_def(op, add_shapes=False, strict=False):
    """One Operation as a ``NodeDef``. Attrs that have no GraphDef form (sub-graphs) are left
    out, or raise TypeError when ``strict``."""
    nd = _Protos.get().node_def_pb2.NodeDef(name=op.name, op=op.type, device=op.device or "")
    nd.input.extend(t.op.name if t.value_index == 0 else t.name for t in op.inputs)
    nd.input.extend("^" + c.name for c in op.control_inputs)
    for k, v in _tf_attrs(op).items():
        try:
            nd.attr[k].CopyFrom(python_to_attr_value(v))
        except TypeError as e:
            if strict:
                raise TypeError(f"op {op.name!r} ({op.type}): attr {k!r}: {e}") from None
            nd.attr.pop(k, None)
    if add_shapes:
        nd.attr["_output_shapes"].CopyFrom(python_to_attr_value([t.shape for t in op.outputs]))
    return nd


def as_graph_def(graph=None, from_version=None, add_shapes=False, strict=False, ops_=None):
    """The graph (or just ``ops_``) as a TensorFlow ``GraphDef`` protobuf message."""
    graph = graph or ops.get_default_graph()
    P = _Protos.get()
    gd = P.graph_pb2.GraphDef()
    gd.versions.producer = GRAPH_DEF_VERSION
    for op in (ops_ if ops_ is not None else graph.get_operations()):
        if from_version is not None and op._id <= from_version:
            continue
        gd.node.add().CopyFrom(op_to_node_def(op, add_shapes, strict))
    return gd


def _graph_as_graph_def(self, from_version=None, add_shapes=False):
    """This graph as a TensorFlow ``GraphDef`` (``add_shapes`` adds ``_output_shapes``)."""
    return as_graph_def(self, from_version, add_shapes)


ops.Graph.as_graph_def = _graph_as_graph_def


def _as_graph_def_message(obj):
    if isinstance(obj, ops.Graph):
        return obj.as_graph_def()
    if isinstance(obj, (bytes, bytearray)):
        return _Protos.get().graph_pb2.GraphDef.FromString(bytes(obj))
    if hasattr(obj, "node") and hasattr(obj, "SerializeToString"):
        if type(obj).__module__.startswith("tensorboard"):
            return obj
        # a message of TensorFlow's own compiled classes: the wire format is the same
        return _Protos.get().graph_pb2.GraphDef.FromString(obj.SerializeToString())
    raise TypeError(f"expected a tw.Graph, a GraphDef or its serialized bytes, got "
                    f"{type(obj).__name__}")


def write_graph(graph_or_graph_def, logdir, name, as_text=True):
    """Writes a graph's GraphDef to ``logdir/name`` (text format by default); returns the path.

    The file is written to a temporary name and renamed, so a reader never sees half of it.
    """
    gd = _as_graph_def_message(graph_or_graph_def)
    os.makedirs(logdir, exist_ok=True)
    path = os.path.join(logdir, name)
    if as_text:
        from google.protobuf import text_format
        data = text_format.MessageToString(gd).encode("utf-8")
    else:
        data = gd.SerializeToString()
    _atomic_write(path, data)
    return path


def _atomic_write(path, data: bytes):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_graph_def(path):
    """Reads a GraphDef from a binary ``.pb`` or a text ``.pbtxt`` file."""
    P = _Protos.get()
    with open(path, "rb") as f:
        data = f.read()
    gd = P.graph_pb2.GraphDef()
    try:
        gd.ParseFromString(data)
        return gd
    except Exception:  # noqa: BLE001  (not binary: try text format)
        from google.protobuf import text_format
        return text_format.Parse(data.decode("utf-8"), P.graph_pb2.GraphDef())


# --- import ------------------------------------------------------------------------------------
def _parse_input(s):
    if s.startswith("^"):
        return s[1:], None
    name, sep, idx = s.rpartition(":")
    if sep and idx.isdigit():
        return name, int(idx)
    return s, 0


def _node_attrs(node, op_type):
    attrs = {}
    for k, av in node.attr.items():
        if k.startswith(_TW_PREFIX):
            attrs[k[len(_TW_PREFIX):]] = attr_value_to_python(av)
        elif not k.startswith("_"):
            attrs[k] = attr_value_to_python(av)
    spec = _tf_ops().get(op_type)
    if spec is not None:
        for k, d in spec["attrs"].items():
            if k not in attrs and d is not None:
                attrs[k] = _default_value(d)
    return attrs


# Op types declared by modules imported on first use (tw.summary loads protobuf/tensorboard).
_LAZY_OP_MODULES = {t: "tensorweave.summary" for t in (
    "ScalarSummary", "HistogramSummary", "ImageSummary", "TensorSummaryV2", "MergeSummary")}


def unsupported_op_types(graph_def) -> list[str]:
    """Op types in ``graph_def`` that tensorweave has no registration for."""
    import importlib
    known = registered_ops()
    for mod in {_LAZY_OP_MODULES[n.op] for n in graph_def.node
                if n.op in _LAZY_OP_MODULES and n.op not in known}:
        importlib.import_module(mod)
        known = registered_ops()
    return sorted({n.op for n in graph_def.node
                   if IMPORT_ALIASES.get(n.op, n.op) not in known})


def import_graph_def(graph_def, input_map=None, return_elements=None, name=None,
                     op_dict=None, producer_op_list=None):
    """Imports a TensorFlow ``GraphDef`` into the default graph (TF1's ``tf.import_graph_def``).

    ``input_map`` maps tensor names in ``graph_def`` (``"x:0"`` or ``"x"``) to tensors of the
    default graph that replace them; ``return_elements`` names tensors (``"y:0"``) or ops
    (``"init"``) to return. Ops are created under the name scope ``name`` ("import" when None,
    none when ""). Op types we do not implement are all listed in one ValueError.
    """
    gd = _as_graph_def_message(graph_def)
    missing = unsupported_op_types(gd)
    if missing:
        raise ValueError(f"import_graph_def: the GraphDef uses op types tensorweave does not "
                         f"implement: {', '.join(missing)}")
    g = ops.get_default_graph()
    imap = {}
    for k, v in (input_map or {}).items():
        key = k if ":" in k or k.startswith("^") else k + ":0"
        imap[_parse_input(key)] = ops.convert_to_tensor(v)
    by_name = {n.name: n for n in gd.node}
    if len(by_name) != len(gd.node):
        raise ValueError("import_graph_def: the GraphDef has duplicate node names")
    for k in (input_map or {}):
        if _parse_input(k if ":" in k else k + ":0")[0] not in by_name:
            raise ValueError(f"import_graph_def: input_map key {k!r} names no node of the "
                             "GraphDef")
    scope_cm = g.name_scope(name if name is not None else "import") if name != "" else None
    created = {}
    with g.as_default(), (scope_cm or _Null()) as scope:
        prefix = scope or ""
        for node in _topological(gd.node, by_name):
            op_type = IMPORT_ALIASES.get(node.op, node.op)
            inputs, controls = [], []
            for s in node.input:
                src, idx = _parse_input(s)
                if idx is None:
                    controls.append(created[src])
                elif (src, idx) in imap:
                    inputs.append(imap[(src, idx)])
                else:
                    outs = created[src].outputs
                    if idx >= len(outs):
                        raise ValueError(f"import_graph_def: node {node.name!r} reads output "
                                         f"{idx} of {src!r}, which has {len(outs)} outputs")
                    inputs.append(outs[idx])
            with g.device(node.device) if node.device else _Null():
                try:
                    op = g.create_op(op_type, inputs, _node_attrs(node, op_type),
                                     name=prefix + node.name + "/", control_inputs=controls)
                except (KeyError, ValueError, TypeError) as e:
                    raise ValueError(f"import_graph_def: cannot build node {node.name!r} "
                                     f"({node.op}): {e}") from e
            created[node.name] = op
    if return_elements is None:
        return None
    out = []
    for r in return_elements:
        src, idx = _parse_input(r)
        if src not in created:
            raise ValueError(f"import_graph_def: return element {r!r} names no node of the "
                             "GraphDef")
        out.append(created[src] if ":" not in r else created[src].outputs[idx])
    return out


def _topological(nodes, by_name):
    """Nodes with every input's node before them (GraphDefs need not be ordered)."""
    order, state = [], {}
    for root in nodes:
        if root.name in state:
            continue
        stack = [(root, False)]
        while stack:
            n, done = stack.pop()
            if done:
                state[n.name] = 2
                order.append(n)
                continue
            if state.get(n.name) == 2:
                continue
            if state.get(n.name) == 1:
                raise ValueError(f"import_graph_def: the GraphDef has a cycle through "
                                 f"{n.name!r} (TF1 loops are not supported; use tw.while_loop)")
            state[n.name] = 1
            stack.append((n, True))
            for s in reversed(n.input):
                src = _parse_input(s)[0]
                if src not in by_name:
                    raise ValueError(f"import_graph_def: node {n.name!r} has input {s!r} that "
                                     "names no node of the GraphDef")
                if state.get(src) != 2:
                    stack.append((by_name[src], False))
    return order


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


# --- graph_util ----------------------------------------------------------------------------------
def extract_sub_graph(graph_def, dest_nodes):
    """The nodes ``dest_nodes`` need (data and control inputs), in their original order."""
    gd = _as_graph_def_message(graph_def)
    by_name = {n.name: n for n in gd.node}
    for d in dest_nodes:
        if d not in by_name:
            raise ValueError(f"extract_sub_graph: {d!r} is not a node of the graph")
    keep, stack = set(), list(dest_nodes)
    while stack:
        n = stack.pop()
        if n in keep:
            continue
        keep.add(n)
        stack += [_parse_input(s)[0] for s in by_name[n].input]
    out = type(gd)()
    out.versions.CopyFrom(gd.versions)
    for n in gd.node:
        if n.name in keep:
            out.node.add().CopyFrom(n)
    return out


def convert_variables_to_constants(sess, input_graph_def, output_node_names,
                                   variable_names_whitelist=None,
                                   variable_names_blacklist=None):
    """Freezes a graph: the sub-graph ``output_node_names`` need, with each variable replaced by
    a ``Const`` of its current value in ``sess`` (same node name, so ``w/read`` still works)."""
    sub = extract_sub_graph(input_graph_def, output_node_names)
    P = _Protos.get()
    var_nodes = [n.name for n in sub.node if n.op in ("VariableV2", "Variable", "VarHandleOp")
                 and (variable_names_whitelist is None or n.name in variable_names_whitelist)
                 and (variable_names_blacklist is None or n.name not in variable_names_blacklist)]
    values = dict(zip(var_nodes, sess.run([n + ":0" for n in var_nodes]))) if var_nodes else {}
    out = P.graph_pb2.GraphDef()
    out.versions.CopyFrom(sub.versions)
    for n in sub.node:
        if n.name in values:
            c = out.node.add(name=n.name, op="Const", device=n.device)
            dt = attr_value_to_python(n.attr["dtype"])
            c.attr["dtype"].CopyFrom(python_to_attr_value(dt))
            c.attr["value"].CopyFrom(python_to_attr_value(
                np.asarray(values[n.name], dt.as_numpy_dtype)))
        else:
            out.node.add().CopyFrom(n)
    return out


def remove_training_nodes(input_graph, protected_nodes=None):
    """Drops Identity/CheckNumerics nodes between ops (keeping ``protected_nodes``)."""
    gd = _as_graph_def_message(input_graph)
    protected = set(protected_nodes or ())
    skip = {n.name: n.input[0] for n in gd.node
            if n.op in ("Identity", "CheckNumerics", "StopGradient") and n.name not in protected
            and len(n.input) == 1 and not any(s.startswith("^") for s in n.input)}

    def resolve(s):
        ctrl = s.startswith("^")
        src, idx = _parse_input(s)
        while idx == 0 and src in skip:
            src, idx = _parse_input(skip[src])
        ref = src if idx in (0, None) else f"{src}:{idx}"
        return ("^" + src) if ctrl else ref

    out = type(gd)()
    out.versions.CopyFrom(gd.versions)
    for n in gd.node:
        if n.name in skip:
            continue
        m = out.node.add()
        m.CopyFrom(n)
        del m.input[:]
        m.input.extend(resolve(s) for s in n.input)
    return out
