"""tensorweave: dataflow graphs, symbolic gradients and a low-overhead runtime, with the
TensorFlow 1.x graph-mode API (``import tensorweave as tw``).

Example::

    import tensorweave as tw
    x = tw.placeholder(tw.float32, [None, 2])
    w = tw.Variable(tw.ones([2, 1]))
    loss = tw.reduce_mean(tw.square(tw.matmul(x, w)))
    train_op = tw.train.GradientDescentOptimizer(0.1).minimize(loss)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        sess.run(train_op, {x: [[1.0, 2.0]]})
"""

from __future__ import annotations

import importlib as _importlib
import pkgutil as _pkgutil

__version__ = "0.1.0"

from tensorweave.framework import errors  # noqa: E402
from tensorweave.framework.constant_op import constant  # noqa: E402
from tensorweave.framework.dtypes import (  # noqa: E402
    DType,
    as_dtype,
    bfloat16,
    complex64,
    complex128,
    double,
    float16,
    float32,
    float64,
    half,
    int8,
    int16,
    int32,
    int64,
    string,
    uint8,
    uint16,
)
from tensorweave.framework.dtypes import bool_ as bool
from tensorweave.framework.ops import (  # noqa: E402
    Graph,
    GraphKeys,
    IndexedSlices,
    Operation,
    Tensor,
    add_to_collection,
    add_to_collections,
    colocate_with,
    control_dependencies,
    convert_to_tensor,
    convert_to_tensor_or_indexed_slices,
    device,
    get_collection,
    get_collection_ref,
    get_default_graph,
    get_default_session,
    name_scope,
    register_tensor_conversion_function,
    reset_default_graph,
)
from tensorweave.framework.registry import NotDifferentiable, RegisterGradient, no_gradient  # noqa: E402
from tensorweave.framework.tensor_shape import Dimension, TensorShape  # noqa: E402
from tensorweave.runtime.config import (  # noqa: E402
    ConfigProto,
    GPUOptions,
    GraphOptions,
    RunMetadata,
    RunOptions,
)
from tensorweave.runtime.session import InteractiveSession, Session  # noqa: E402

# Op families: each module's __all__ is re-exported at the top level (tw.matmul, tw.reshape...).
# Add a family by appending its module name here.
_OP_FAMILIES = [
    "array_ops",
    "math_ops",
    "state_ops",
    "control_flow_ops",
    "variables",
    "data_flow_ops",
    "random_ops",
    "init_ops",
    "variable_scope",
    "clip_ops",
    "script_ops",
    "tensor_array_ops",
]
for _m in _OP_FAMILIES:
    _mod = _importlib.import_module(f"tensorweave.ops.{_m}")
    for _n in getattr(_mod, "__all__", []):
        globals()[_n] = getattr(_mod, _n)

from tensorweave.gradients.gradients_impl import gradients, hessians  # noqa: E402
from tensorweave.ops.control_flow_ops import group, no_op  # noqa: E402,A001
from tensorweave.ops.control_flow_ops import tuple_ as tuple
from tensorweave.ops.state_ops import (  # noqa: E402
    assign,
    assign_add,
    assign_sub,
    scatter_add,
    scatter_sub,
    scatter_update,
)
from tensorweave.ops.variables import (  # noqa: E402
    Variable,
    all_variables,
    global_variables,
    global_variables_initializer,
    initialize_all_variables,
    is_variable_initialized,
    local_variables,
    local_variables_initializer,
    model_variables,
    report_uninitialized_variables,
    trainable_variables,
    variables_initializer,
)


def _load_registrations():
    """Kernels and gradient rules register themselves on import, after every op family in
    ops/ has declared its types."""
    _o = _importlib.import_module("tensorweave.ops")
    for m in _pkgutil.iter_modules(_o.__path__):
        _importlib.import_module(f"tensorweave.ops.{m.name}")
    _g = _importlib.import_module("tensorweave.gradients")
    _k = _importlib.import_module("tensorweave.kernels")
    _k.load_cpu_kernels()
    for m in _pkgutil.iter_modules(_g.__path__):
        _importlib.import_module(f"tensorweave.gradients.{m.name}")


# Sub-namespaces, as in TensorFlow: tw.nn, tw.train, ... (they declare op families too, so
# they are imported before kernels and gradients register against those declarations).
from tensorweave import (  # noqa: E402,F401
    data,  # noqa: E402,F401  (tw.data)
    layers,  # noqa: E402,F401  (tw.layers)
    nn,
    random,  # noqa: E402,F401  (tw.random)
    train,
)

_load_registrations()

newaxis = None

def disable_v2_behavior():
    """A no-op: tensorweave is TF1 graph mode (``tf.compat.v1.disable_v2_behavior()``)."""


def disable_eager_execution():
    """A no-op: tensorweave always builds graphs."""


def executing_eagerly():
    """False: ops build graph nodes; values come from ``Session.run``."""
    return False


def enable_eager_execution(*args, **kwargs):
    raise NotImplementedError("tensorweave runs TF1 graph mode only: build the graph and run "
                              "it with tw.Session (eager execution is not available)")


enable_v2_behavior = enable_eager_execution


_LAZY_TOOLS = {  # name -> (module, attribute or None for the module itself)
    "summary": ("tensorweave.summary", None),
    "losses": ("tensorweave.losses", None),
    "debugging": ("tensorweave.ops.script_ops", None),
    "math": ("tensorweave.math", None),
    "linalg": ("tensorweave.linalg", None),
    "image": ("tensorweave.image", None),
    "logging": ("tensorweave.tf_logging", None),
    "gfile": ("tensorweave.gfile", None),
    "io": ("tensorweave.io_namespace", None),
    "compat": ("tensorweave.compat", None),
    "metrics": ("tensorweave.metrics", None),
    "timeline": ("tensorweave.timeline", None),
    "saved_model": ("tensorweave.saved_model", None),
    "onnx": ("tensorweave.onnx_export", None),
    "graph_util": ("tensorweave.framework.graph_def", None),
    "import_graph_def": ("tensorweave.framework.graph_def", "import_graph_def"),
}


def __getattr__(name):
    # tw.app / tw.flags import absl (~50 ms) only when first used
    if name in ("app", "flags"):
        app = _importlib.import_module("tensorweave.app")
        return app if name == "app" else app.flags
    # tools import protobuf/tensorboard/onnx only when first used
    if name in _LAZY_TOOLS:
        mod = _importlib.import_module(_LAZY_TOOLS[name][0])
        return getattr(mod, _LAZY_TOOLS[name][1]) if _LAZY_TOOLS[name][1] else mod
    raise AttributeError(f"module 'tensorweave' has no attribute {name!r}")
