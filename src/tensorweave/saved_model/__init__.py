"""``tw.saved_model``: self-contained, versioned model directories for serving.

``simple_save`` writes ``export_dir/<version>/`` (the next integer version, unless
``export_dir`` already ends in a version number)::

    export_dir/3/saved_model.pb            SavedModel protobuf: a MetaGraphDef tagged "serve" whose
                                           GraphDef is the inference graph with variables frozen
                                           into constants, and a "serving_default" signature
    export_dir/3/variables/variables.npz   the trained variable values, by variable name

The layout and protobuf are TensorFlow's (the proto schema comes from the ``tensorboard``
package), so TensorFlow's SavedModel loader and TF Serving read it too. A version directory is
written under a temporary name and renamed, so a server watching ``export_dir`` never sees a
half-written model.

Example::

    path = tw.saved_model.simple_save(sess, "/tmp/models/mnist", {"x": x}, {"probs": probs})
    predictor = tw.saved_model.load("/tmp/models/mnist")      # the latest version
    predictor({"x": batch})["probs"]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

import numpy as np

from tensorweave.framework.ops import Graph, Tensor

__all__ = ["simple_save", "load", "loader", "Predictor", "latest_version_dir", "tag_constants",
           "signature_constants", "read_saved_model", "SAVED_MODEL_FILENAME"]

SAVED_MODEL_FILENAME = "saved_model.pb"
VARIABLES_FILENAME = os.path.join("variables", "variables.npz")


class tag_constants:  # noqa: N801  (TensorFlow's module name)
    SERVING = "serve"
    TRAINING = "train"


class signature_constants:  # noqa: N801
    DEFAULT_SERVING_SIGNATURE_DEF_KEY = "serving_default"
    PREDICT_METHOD_NAME = "tensorflow/serving/predict"


def _saved_model_class():
    """TensorFlow's ``SavedModel`` message (``tensorboard`` ships MetaGraphDef, not this small
    wrapper): built from a descriptor with the same field numbers, so the bytes are the same."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from tensorboard.compat.proto import meta_graph_pb2

    pool = descriptor_pool.Default()
    fname = "tensorweave/saved_model.proto"
    try:
        fd = pool.FindFileByName(fname)
    except KeyError:
        F = descriptor_pb2.FieldDescriptorProto
        fdp = descriptor_pb2.FileDescriptorProto(name=fname, package="tensorweave_compat",
                                                 syntax="proto3",
                                                 dependency=[meta_graph_pb2.DESCRIPTOR.name])
        m = fdp.message_type.add(name="SavedModel")
        m.field.add(name="saved_model_schema_version", number=1, type=F.TYPE_INT64,
                    label=F.LABEL_OPTIONAL)
        m.field.add(name="meta_graphs", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                    type_name="." + meta_graph_pb2.MetaGraphDef.DESCRIPTOR.full_name)
        fd = pool.AddSerializedFile(fdp.SerializeToString())
        if not hasattr(fd, "message_types_by_name"):
            fd = pool.FindFileByName(fname)
    return message_factory.GetMessageClass(fd.message_types_by_name["SavedModel"])


# --- writing -----------------------------------------------------------------------------------
def _versions(base):
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base)
                  if d.isdigit() and os.path.isfile(os.path.join(base, d, SAVED_MODEL_FILENAME)))


def _needed_ops(roots):
    seen, stack = set(), list(roots)
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack += [t.op for t in op.inputs]
        stack += op.control_inputs
    return seen


def _tensor_info(t: Tensor, meta_graph_pb2):
    from tensorweave.framework.graph_def import shape_to_proto
    info = meta_graph_pb2.TensorInfo(name=t.name, dtype=t.dtype.as_datatype_enum)
    info.tensor_shape.CopyFrom(shape_to_proto(t.shape))
    return info


def simple_save(session, export_dir, inputs, outputs, legacy_init_op=None, version=None):
    """Exports the inference graph from ``inputs`` (name -> placeholder) to ``outputs``
    (name -> tensor) with the current variable values; returns the version directory.

    ``export_dir`` is the model's base directory (a new version ``N+1`` is written), or a
    version directory ``.../<int>`` that must not exist yet.
    """
    from tensorboard.compat.proto import meta_graph_pb2

    from tensorweave.framework import graph_def as gdef

    if not inputs or not outputs:
        raise ValueError("simple_save needs at least one input and one output tensor")
    for kind, d in (("inputs", inputs), ("outputs", outputs)):
        for k, t in d.items():
            if not isinstance(t, Tensor):
                raise TypeError(f"simple_save: {kind}[{k!r}] must be a tw.Tensor, got "
                                f"{type(t).__name__}")
            if t.graph is not session.graph:
                raise ValueError(f"simple_save: {kind}[{k!r}] ({t.name}) is not in the "
                                 "session's graph")
    export_dir = os.path.abspath(str(export_dir))
    if version is not None:
        base, final = export_dir, os.path.join(export_dir, str(int(version)))
    elif os.path.basename(export_dir).isdigit():
        base, final = os.path.dirname(export_dir), export_dir
    else:
        base = export_dir
        final = os.path.join(base, str((_versions(base) or [0])[-1] + 1))
    if os.path.exists(final):
        raise FileExistsError(f"simple_save: export directory {final} already exists")

    roots = [t.op for t in list(inputs.values()) + list(outputs.values())]
    needed = _needed_ops(roots)
    ops_in_order = [op for op in session.graph.get_operations() if op in needed]
    try:
        full = gdef.as_graph_def(session.graph, strict=True, ops_=ops_in_order)
    except TypeError as e:
        raise ValueError(f"simple_save: the inference graph cannot be stored as a GraphDef "
                         f"({e}); control-flow ops holding sub-graphs are not exportable") from None
    frozen = gdef.convert_variables_to_constants(session, full, sorted({op.name for op in roots}))
    var_names = [op.name for op in ops_in_order if op.type in ("VariableV2", "Variable")]
    var_values = dict(zip(var_names, session.run([n + ":0" for n in var_names]))) \
        if var_names else {}

    mg = meta_graph_pb2.MetaGraphDef()
    mg.meta_info_def.tags.append(tag_constants.SERVING)
    mg.meta_info_def.tensorflow_git_version = "tensorweave"  # a version string goes elsewhere
    mg.graph_def.CopyFrom(frozen)
    sig = mg.signature_def[signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY]
    sig.method_name = signature_constants.PREDICT_METHOD_NAME
    for k, t in inputs.items():
        sig.inputs[k].CopyFrom(_tensor_info(t, meta_graph_pb2))
    for k, t in outputs.items():
        sig.outputs[k].CopyFrom(_tensor_info(t, meta_graph_pb2))
    sm = _saved_model_class()(saved_model_schema_version=1)
    sm.meta_graphs.add().CopyFrom(mg)

    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=base, prefix=".tmp-export-")
    try:
        with open(os.path.join(tmp, SAVED_MODEL_FILENAME), "wb") as f:
            f.write(sm.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.makedirs(os.path.join(tmp, "variables"))
        with open(os.path.join(tmp, VARIABLES_FILENAME), "wb") as f:
            np.savez(f, **{k.replace("/", "__"): v for k, v in var_values.items()})
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# --- reading -----------------------------------------------------------------------------------
def latest_version_dir(export_dir) -> str:
    """``export_dir`` itself when it holds a saved_model.pb, else its highest version."""
    export_dir = os.path.abspath(str(export_dir))
    if os.path.isfile(os.path.join(export_dir, SAVED_MODEL_FILENAME)):
        return export_dir
    versions = _versions(export_dir)
    if not versions:
        raise FileNotFoundError(f"no SavedModel in {export_dir}: expected {SAVED_MODEL_FILENAME} "
                                "there or in a numbered version directory under it")
    return os.path.join(export_dir, str(versions[-1]))


def read_saved_model(export_dir):
    """The ``SavedModel`` message of ``export_dir`` (or of its latest version)."""
    path = os.path.join(latest_version_dir(export_dir), SAVED_MODEL_FILENAME)
    with open(path, "rb") as f:
        return _saved_model_class().FromString(f.read())


def read_variables(export_dir) -> dict:
    """The exported variable values (name -> ndarray)."""
    path = os.path.join(latest_version_dir(export_dir), VARIABLES_FILENAME)
    if not os.path.isfile(path):
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def _meta_graph(sm, tags):
    want = set(tags)
    for mg in sm.meta_graphs:
        if set(mg.meta_info_def.tags) == want:
            return mg
    have = [sorted(mg.meta_info_def.tags) for mg in sm.meta_graphs]
    raise RuntimeError(f"MetaGraphDef associated with tags {sorted(want)} could not be found "
                       f"in SavedModel; available tag sets: {have}")


class loader:  # noqa: N801  (TensorFlow's module name: tw.saved_model.loader.load)
    @staticmethod
    def load(sess, tags, export_dir, import_scope=None):
        """Imports the MetaGraphDef tagged ``tags`` into ``sess.graph``; returns it."""
        from tensorweave.framework.graph_def import import_graph_def
        mg = _meta_graph(read_saved_model(export_dir), tags)
        with sess.graph.as_default():
            import_graph_def(mg.graph_def, name=import_scope or "")
        return mg

    @staticmethod
    def maybe_saved_model_directory(export_dir):
        try:
            latest_version_dir(export_dir)
            return True
        except FileNotFoundError:
            return False


class Predictor:
    """A loaded model: ``predictor({"x": array})`` -> ``{"probs": array}``.

    ``inputs``/``outputs`` map signature keys to tensors; ``input_specs`` to (dtype, shape).
    Calls are serialized by a lock, so one Predictor may serve many threads.
    """

    def __init__(self, export_dir, tags=(tag_constants.SERVING,),
                 signature_key=signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY,
                 config=None):
        from tensorweave.runtime.session import Session
        self.export_dir = latest_version_dir(export_dir)
        base = os.path.basename(self.export_dir)
        self.version = int(base) if base.isdigit() else 0
        self.graph = Graph()
        self.session = Session(graph=self.graph, config=config)
        mg = loader.load(self.session, tags, self.export_dir)
        if signature_key not in mg.signature_def:
            raise KeyError(f"signature {signature_key!r} not in the SavedModel; it has "
                           f"{sorted(mg.signature_def)}")
        self.signature = mg.signature_def[signature_key]
        self.inputs = {k: self.graph.get_tensor_by_name(v.name)
                       for k, v in self.signature.inputs.items()}
        self.outputs = {k: self.graph.get_tensor_by_name(v.name)
                        for k, v in self.signature.outputs.items()}
        self.input_specs = {k: (t.dtype, t.shape) for k, t in self.inputs.items()}
        self._lock = threading.Lock()

    def __call__(self, feeds: dict) -> dict:
        missing = set(self.inputs) - set(feeds)
        extra = set(feeds) - set(self.inputs)
        if missing or extra:
            raise ValueError(f"inputs must be exactly {sorted(self.inputs)}; missing "
                             f"{sorted(missing)}, unexpected {sorted(extra)}")
        feed = {self.inputs[k]: v for k, v in feeds.items()}
        keys = list(self.outputs)
        with self._lock:
            vals = self.session.run([self.outputs[k] for k in keys], feed)
        return dict(zip(keys, vals))

    predict = __call__

    def close(self):
        self.session.close()

    def describe(self) -> dict:
        """Signature as plain data: {"inputs": {name: {dtype, shape}}, "outputs": ...}."""
        def spec(t):
            return {"dtype": t.dtype.name, "shape": t.shape.as_list()
                    if t.shape.ndims is not None else None}
        return {"inputs": {k: spec(t) for k, t in self.inputs.items()},
                "outputs": {k: spec(t) for k, t in self.outputs.items()}}


def load(export_dir, tags=(tag_constants.SERVING,),
         signature_key=signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY, config=None):
    """Loads ``export_dir`` (a version directory, or a base directory: its latest version)
    into a fresh graph and session; returns a :class:`Predictor`."""
    return Predictor(export_dir, tags, signature_key, config)
