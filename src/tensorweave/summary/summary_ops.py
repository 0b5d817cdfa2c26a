"""Summary ops: graph ops whose output is a serialized ``Summary`` protobuf (a string scalar).

Op types and inputs follow TensorFlow 1.x (``ScalarSummary(tags, values)``,
``HistogramSummary(tag, values)``, ``ImageSummary(tag, tensor)``, ``TensorSummaryV2(tag,
tensor, serialized_summary_metadata)``, ``MergeSummary(inputs)``), so graphs holding them
interchange. Each op is declared, given its CPU kernel and marked not differentiable here, next
to each other (DESIGN.md rule 1); the protos are TensorFlow's, compiled into ``tensorboard``.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from tensorboard.compat.proto import summary_pb2

from tensorweave.framework import dtypes
from tensorweave.framework.constant_op import constant
from tensorweave.framework.ops import GraphKeys, convert_to_tensor, get_default_graph
from tensorweave.framework.registry import NotDifferentiable, register_kernel, register_op
from tensorweave.framework.tensor_shape import TensorShape

__all__ = ["scalar", "histogram", "image", "text", "tensor_summary", "merge", "merge_all"]


def _string_scalar(op):
    return [(dtypes.string, TensorShape([]))]


for _t in ("ScalarSummary", "HistogramSummary", "ImageSummary", "TensorSummaryV2",
           "MergeSummary"):
    register_op(_t)(_string_scalar)
    NotDifferentiable(_t)


def _as_str(v) -> str:
    v = v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _as_bytes(v) -> bytes:
    v = v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
    return v if isinstance(v, bytes) else str(v).encode("utf-8")


def _result(summary) -> np.ndarray:
    return np.array(summary.SerializeToString(), dtype=object)


# --- scalar ------------------------------------------------------------------------------------
@register_kernel("ScalarSummary")
def _scalar_kernel(op, ctx):
    def run(tags, values):
        tags, values = np.asarray(tags), np.asarray(values)
        if tags.shape != values.shape:
            raise ValueError(f"tags and values must have the same shape: {list(tags.shape)} "
                             f"vs {list(values.shape)}")
        s = summary_pb2.Summary()
        for t, v in zip(tags.reshape(-1), values.reshape(-1)):
            s.value.add(tag=_as_str(t), simple_value=float(v))
        return _result(s)
    return run


# --- histogram ---------------------------------------------------------------------------------
def _default_bucket_limits() -> np.ndarray:
    # TensorFlow's default layout: limits growing by 10% from 1e-12 to 1e20 on each side of 0
    pos = []
    v = 1e-12
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    pos.append(np.finfo(np.float64).max)
    return np.array([-x for x in reversed(pos)] + [0.0] + pos)


_LIMITS = _default_bucket_limits()


def histogram_proto(values) -> summary_pb2.HistogramProto:
    """A ``HistogramProto`` of ``values`` with TensorFlow's bucket layout; runs of empty
    buckets are merged into one, so the proto stays small."""
    x = np.asarray(values, np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError("Nan or Inf in histogram summary values")
    h = summary_pb2.HistogramProto()
    if x.size == 0:
        return h
    h.min, h.max, h.num = float(x.min()), float(x.max()), float(x.size)
    h.sum, h.sum_squares = float(x.sum()), float(np.dot(x, x))
    counts = np.bincount(np.searchsorted(_LIMITS, x, side="right"), minlength=len(_LIMITS))
    lo, hi = np.nonzero(counts)[0][[0, -1]]
    lo = max(lo - 1, 0)
    limits, bucket = [], []
    for i in range(lo, min(hi + 1, len(_LIMITS))):
        c = counts[i]
        if c == 0 and bucket and bucket[-1] == 0:
            limits[-1] = _LIMITS[i]  # extend the previous empty bucket
            continue
        limits.append(_LIMITS[i])
        bucket.append(float(c))
    h.bucket_limit.extend(limits)
    h.bucket.extend(bucket)
    return h


@register_kernel("HistogramSummary")
def _histogram_kernel(op, ctx):
    def run(tag, values):
        s = summary_pb2.Summary()
        s.value.add(tag=_as_str(tag), histo=histogram_proto(values))
        return _result(s)
    return run


# --- image -------------------------------------------------------------------------------------
def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of an ``[h, w, c]`` uint8 image (c = 1 grey, 3 RGB, 4 RGBA)."""
    h, w, c = img.shape
    color_type = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))  # filter type 0 per row

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _to_uint8(img: np.ndarray, bad_color: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    x = img.astype(np.float64)
    bad = ~np.isfinite(x).all(axis=-1)
    finite = x[np.isfinite(x)]
    if finite.size and finite.min() >= 0:  # all non-negative: the largest value becomes 255
        scale = 255.0 / finite.max() if finite.max() > 0 else 0.0
        offset = 0.0
    elif finite.size:  # 0.0 maps to 127, scaled so the extreme value reaches 0 or 255
        scale = min(127.0 / -finite.min(), 128.0 / max(finite.max(), 1e-30))
        offset = 127.0
    else:
        scale, offset = 0.0, 0.0
    out = np.clip(np.nan_to_num(x) * scale + offset + 0.5, 0, 255).astype(np.uint8)
    out[bad] = bad_color[:out.shape[-1]]
    return out


@register_kernel("ImageSummary")
def _image_kernel(op, ctx):
    max_images = int(op.attrs.get("max_images", 3))
    bad_color = np.asarray(op.attrs.get("bad_color", np.array([255, 0, 0, 255])), np.uint8)

    def run(tag, tensor):
        tag = _as_str(tag)
        t = np.asarray(tensor)
        if t.ndim != 4 or t.shape[-1] not in (1, 3, 4):
            raise ValueError(f"image summary needs a [batch, height, width, channels] tensor "
                             f"with 1, 3 or 4 channels, got shape {list(t.shape)}")
        s = summary_pb2.Summary()
        n = min(max_images, t.shape[0])
        for i in range(n):
            img = _to_uint8(t[i], bad_color)
            name = f"{tag}/image" if max_images == 1 else f"{tag}/image/{i}"
            s.value.add(tag=name, image=summary_pb2.Summary.Image(
                height=img.shape[0], width=img.shape[1], colorspace=img.shape[2],
                encoded_image_string=encode_png(img)))
        return _result(s)
    return run


# --- tensor (text) -----------------------------------------------------------------------------
@register_kernel("TensorSummaryV2")
def _tensor_summary_kernel(op, ctx):
    from tensorweave.framework.graph_def import ndarray_to_tensor_proto

    def run(tag, tensor, metadata):
        s = summary_pb2.Summary()
        t = np.asarray(tensor)
        dt = dtypes.string if t.dtype.kind in "OUS" else dtypes.as_dtype(t.dtype)
        v = s.value.add(tag=_as_str(tag),
                        metadata=summary_pb2.SummaryMetadata.FromString(_as_bytes(metadata)))
        v.tensor.CopyFrom(ndarray_to_tensor_proto(
            np.vectorize(_as_bytes, otypes=[object])(t) if dt is dtypes.string else t, dt))
        return _result(s)
    return run


# --- merge ---------------------------------------------------------------------------------------
@register_kernel("MergeSummary")
def _merge_kernel(op, ctx):
    def run(*inputs):
        out = summary_pb2.Summary()
        seen = set()
        for x in inputs:
            for v in summary_pb2.Summary.FromString(_as_bytes(x)).value:
                if v.tag in seen:
                    raise ValueError(f"Duplicate tag {v.tag!r} found in summary inputs")
                seen.add(v.tag)
                out.value.add().CopyFrom(v)
        return _result(out)
    return run


# --- builders ------------------------------------------------------------------------------------
def _summary_op(op_type, name, family, build_inputs, attrs, collections):
    g = get_default_graph()
    scope_name = f"{family}/{name}" if family else name
    with g.name_scope(scope_name) as scope:
        tag = scope[:-1]
        inputs = build_inputs(tag)
        op = g.create_op(op_type, inputs, attrs, name=scope)
    for c in (collections if collections is not None else [GraphKeys.SUMMARIES]):
        g.add_to_collection(c, op.outputs[0])
    return op.outputs[0]


def _tag_const(tag, name):
    return constant(tag, dtype=dtypes.string, name=name)


def scalar(name, tensor, collections=None, family=None):
    """A summary of one scalar value, tagged by ``name`` under the current name scope.

    Example::

        tw.summary.scalar("loss", loss)
        merged = tw.summary.merge_all()
    """
    tensor = convert_to_tensor(tensor)
    if tensor.shape.ndims not in (None, 0):
        raise ValueError(f"tw.summary.scalar needs a scalar tensor; {tensor.name} has shape "
                         f"{tensor.shape}")
    return _summary_op("ScalarSummary", name, family,
                       lambda tag: [_tag_const(tag, "tags"), tensor], {"T": tensor.dtype},
                       collections)


def histogram(name, values, collections=None, family=None):
    """A histogram of all the values of ``values`` (e.g. a weight matrix)."""
    values = convert_to_tensor(values)
    return _summary_op("HistogramSummary", name, family,
                       lambda tag: [_tag_const(tag, "tag"), values], {"T": values.dtype},
                       collections)


def image(name, tensor, max_outputs=3, collections=None, family=None):
    """Images from a ``[batch, height, width, channels]`` tensor (uint8, or floats that are
    rescaled to 0..255), at most ``max_outputs`` of them."""
    tensor = convert_to_tensor(tensor)
    if tensor.shape.ndims not in (None, 4) or (
            tensor.shape.ndims == 4 and tensor.shape[3].value not in (None, 1, 3, 4)):
        raise ValueError(f"tw.summary.image needs a [batch, height, width, 1|3|4] tensor; "
                         f"{tensor.name} has shape {tensor.shape}")
    attrs = {"T": tensor.dtype, "max_images": int(max_outputs),
             "bad_color": np.array([255, 0, 0, 255], np.uint8)}
    return _summary_op("ImageSummary", name, family,
                       lambda tag: [_tag_const(tag, "tag"), tensor], attrs, collections)


def _plugin_metadata(plugin_name, content=b""):
    m = summary_pb2.SummaryMetadata()
    m.plugin_data.plugin_name = plugin_name
    m.plugin_data.content = content
    return m.SerializeToString()


def tensor_summary(name, tensor, summary_description=None, collections=None,
                   summary_metadata=None, family=None, display_name=None):
    """A summary holding a whole tensor (with optional ``SummaryMetadata``)."""
    tensor = convert_to_tensor(tensor)
    meta = summary_metadata.SerializeToString() if summary_metadata is not None else b""
    return _summary_op(
        "TensorSummaryV2", name, family,
        lambda tag: [_tag_const(tag, "tag"), tensor,
                     constant(np.array(meta, dtype=object), dtype=dtypes.string,
                              name="serialized_summary_metadata")],
        {"T": tensor.dtype}, collections)


def text(name, tensor, collections=None):
    """A string tensor shown in TensorBoard's text dashboard (markdown is rendered)."""
    tensor = convert_to_tensor(tensor)
    if tensor.dtype is not dtypes.string:
        raise ValueError(f"tw.summary.text needs a string tensor; {tensor.name} is "
                         f"{tensor.dtype.name}")
    meta = summary_pb2.SummaryMetadata.FromString(_plugin_metadata("text"))
    return tensor_summary(name, tensor, collections=collections, summary_metadata=meta)


def merge(inputs, collections=None, name=None):
    """One summary holding the values of every summary in ``inputs``."""
    inputs = [convert_to_tensor(t) for t in inputs]
    g = inputs[0].graph if inputs else get_default_graph()
    op = g.create_op("MergeSummary", inputs, {"N": len(inputs)}, name=name or "Merge/MergeSummary")
    for c in collections or []:
        g.add_to_collection(c, op.outputs[0])
    return op.outputs[0]


def merge_all(key=GraphKeys.SUMMARIES, scope=None, name=None):
    """Merges every summary in the ``key`` collection; None when there are none."""
    summaries = get_default_graph().get_collection(key, scope=scope)
    if not summaries:
        return None
    return merge(summaries, name=name)
