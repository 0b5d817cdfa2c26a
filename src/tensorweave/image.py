"""``tw.image``: TF1's image functions for [height, width, channels] images or
[batch, height, width, channels] batches, built from ops (so they differentiate where TF1's
do): resizing (bilinear, nearest neighbour; TF1's corner conventions), flips, crops and pads,
dtype conversion, per-image standardization, random brightness/contrast/flips/crops.

Example::

    images = tw.image.convert_image_dtype(uint8_images, tw.float32)     # to [0, 1]
    images = tw.image.resize_images(images, [224, 224])
    images = tw.map_fn(tw.image.random_flip_left_right, images)
    images = tw.image.per_image_standardization(images[0])

Imported on first use of ``tw.image``.
"""

from __future__ import annotations

import numpy as np

from tensorweave.framework import dtypes
from tensorweave.framework.ops import convert_to_tensor, name_scope

__all__ = ["ResizeMethod", "resize_images", "resize", "resize_bilinear",
           "resize_nearest_neighbor", "flip_left_right", "flip_up_down",
           "random_flip_left_right", "random_flip_up_down", "convert_image_dtype",
           "per_image_standardization", "central_crop", "crop_to_bounding_box",
           "pad_to_bounding_box", "random_crop", "random_brightness", "random_contrast",
           "adjust_brightness", "adjust_contrast", "rgb_to_grayscale"]


def _tw():
    import tensorweave as tw
    return tw


class ResizeMethod:
    BILINEAR = 0
    NEAREST_NEIGHBOR = 1


def _image(x, what):
    """(tensor, is_batch, (h, w, c) static dims) for a 3-D image or a 4-D batch."""
    x = convert_to_tensor(x, name="image")
    n = x.shape.ndims
    if n not in (3, 4):
        raise ValueError(f"{what}: expected a [height, width, channels] image or a "
                         f"[batch, height, width, channels] batch, got shape {x.shape}")
    return x, n == 4, x.shape.as_list()[-3:]


def _static_image(x, what):
    """(tensor, is_batch, height, width) for an image whose height and width are static."""
    x, batch, (h, w, _) = _image(x, what)
    if h is None or w is None:
        raise ValueError(f"{what} needs a static height and width, got shape {x.shape}")
    return x, batch, h, w


def _source_coords(out_size, in_size, align_corners):
    """TF1's legacy mapping from output to input pixel coordinates."""
    if align_corners and out_size > 1:
        scale = (in_size - 1) / (out_size - 1)
    else:
        scale = in_size / out_size
    return np.arange(out_size) * scale


def _static_hw(size, what):
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: size must be two Python ints [new_height, new_width], got "
                         f"{size!r} (sizes computed at run time are not supported)") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{what}: size must be positive, got {[h, w]}")
    return h, w


def resize_nearest_neighbor(images, size, align_corners=False, name=None):
    """Each output pixel copies its nearest input pixel (TF1: ``floor(out * in / out_size)``,
    or rounded with ``align_corners``)."""
    tw = _tw()
    with name_scope(name, "ResizeNearestNeighbor"):
        x, batch, h, w = _static_image(images, "resize_nearest_neighbor")
        oh, ow = _static_hw(size, "resize_nearest_neighbor")
        # TF1: floor, or C's roundf (halves away from zero) with align_corners
        def pick(v):
            return np.floor(v + 0.5) if align_corners else np.floor(v)

        rows = np.minimum(pick(_source_coords(oh, h, align_corners)), h - 1).astype(np.int32)
        cols = np.minimum(pick(_source_coords(ow, w, align_corners)), w - 1).astype(np.int32)
        ax = 1 if batch else 0
        return tw.gather(tw.gather(x, rows, axis=ax), cols, axis=ax + 1)


def resize_bilinear(images, size, align_corners=False, name=None):
    """Bilinear interpolation between the four nearest input pixels (TF1's legacy corner
    convention: input coordinate ``out * in / out_size``, or the corners aligned). Float
    output; differentiable with respect to the images."""
    tw = _tw()
    with name_scope(name, "ResizeBilinear"):
        x, batch, h, w = _static_image(images, "resize_bilinear")
        oh, ow = _static_hw(size, "resize_bilinear")
        if not x.dtype.is_floating:
            x = tw.cast(x, dtypes.float32)
        # interpolation matrices [out, in]: two weights per row, (1 - frac) and frac; as
        # products (einsum) the gradient with respect to the images is dense, as TF1's is
        npd = x.dtype.as_numpy_dtype
        a_h = tw.constant(_interpolation(oh, h, align_corners).astype(npd))
        a_w = tw.constant(_interpolation(ow, w, align_corners).astype(npd))
        if batch:
            return tw.einsum("pw,bowc->bopc", a_w, tw.einsum("oh,bhwc->bowc", a_h, x))
        return tw.einsum("pw,owc->opc", a_w, tw.einsum("oh,hwc->owc", a_h, x))


def _interpolation(out, n, align_corners):
    src = _source_coords(out, n, align_corners)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    m = np.zeros((out, n))
    m[np.arange(out), lo] += 1.0 - frac
    m[np.arange(out), hi] += frac
    return m


def resize_images(images, size, method=ResizeMethod.BILINEAR, align_corners=False,
                  preserve_aspect_ratio=False):
    """``resize_bilinear`` (the default; float output) or ``resize_nearest_neighbor`` (keeps
    the dtype), to ``size = [new_height, new_width]`` (Python ints)."""
    if preserve_aspect_ratio:
        raise NotImplementedError("resize_images(preserve_aspect_ratio=True) is not "
                                  "implemented: compute the size and pass it")
    if method == ResizeMethod.BILINEAR:
        return resize_bilinear(images, size, align_corners)
    if method == ResizeMethod.NEAREST_NEIGHBOR:
        return resize_nearest_neighbor(images, size, align_corners)
    raise ValueError(f"resize_images: method must be ResizeMethod.BILINEAR or "
                     f"NEAREST_NEIGHBOR, got {method!r}")


resize = resize_images


def _axis(batch, which):
    return (2 if batch else 1) if which == "w" else (1 if batch else 0)


def flip_left_right(image):
    """Mirrors the width axis."""
    x, batch, _ = _image(image, "flip_left_right")
    return _tw().reverse(x, [_axis(batch, "w")])


def flip_up_down(image):
    """Mirrors the height axis."""
    x, batch, _ = _image(image, "flip_up_down")
    return _tw().reverse(x, [_axis(batch, "h")])


def _random_flip(image, seed, which, what):
    tw = _tw()
    with name_scope(None, what):
        x, batch, _ = _image(image, what)
        flipped = tw.reverse(x, [_axis(batch, which)])
        if not batch:
            coin = tw.random_uniform([], seed=seed) < 0.5
            return tw.where(tw.fill(tw.shape(x), coin), flipped, x)
        coin = tw.random_uniform(tw.shape(x)[:1], seed=seed) < 0.5  # one coin per image
        return tw.where(tw.broadcast_to(tw.reshape(coin, [-1, 1, 1, 1]), tw.shape(x)),
                        flipped, x)


def random_flip_left_right(image, seed=None):
    """Mirrors each image left-right with probability 1/2."""
    return _random_flip(image, seed, "w", "random_flip_left_right")


def random_flip_up_down(image, seed=None):
    """Mirrors each image upside down with probability 1/2."""
    return _random_flip(image, seed, "h", "random_flip_up_down")


def _max_of(dtype):
    return float(np.iinfo(dtype.as_numpy_dtype).max)


def convert_image_dtype(image, dtype, saturate=False, name=None):
    """Converts between integer images (0 to the type's max) and float images (0 to 1),
    rescaling as TF1 does (integer to integer by the ratio of ``max + 1``); float to float only
    casts. ``saturate`` clips to the target type's range before the cast."""
    tw = _tw()
    dtype = dtypes.as_dtype(dtype)
    with name_scope(name, "convert_image"):
        x = convert_to_tensor(image, name="image")
        src = x.dtype
        if src == dtype:
            return tw.identity(x)
        if src.is_floating and dtype.is_floating:
            return tw.cast(x, dtype)
        if src.is_integer and dtype.is_floating:
            return tw.cast(x, dtype) * (1.0 / _max_of(src))
        info = np.iinfo(dtype.as_numpy_dtype)
        if src.is_floating and dtype.is_integer:
            scaled = x * (_max_of(dtype) + 0.5)
            if saturate:
                scaled = tw.clip_by_value(scaled, float(info.min), float(info.max))
            return tw.cast(scaled, dtype)
        if src.is_integer and dtype.is_integer:
            src_range, dst_range = int(_max_of(src)) + 1, int(_max_of(dtype)) + 1
            if src_range > dst_range:  # floor-divide by the ratio, then cast
                return tw.cast(tw.floordiv(x, tw.cast(src_range // dst_range, src)), dtype)
            return tw.cast(x, dtype) * tw.cast(dst_range // src_range, dtype)
        raise TypeError(f"convert_image_dtype: cannot convert {src.name} to {dtype.name}")


def per_image_standardization(image):
    """``(x - mean) / max(stddev, 1 / sqrt(N))`` over each image's N values."""
    tw = _tw()
    with name_scope(None, "per_image_standardization"):
        x, batch, _ = _image(image, "per_image_standardization")
        if not x.dtype.is_floating:
            x = tw.cast(x, dtypes.float32)
        axes = [1, 2, 3] if batch else [0, 1, 2]
        mean = tw.reduce_mean(x, axes, keepdims=True)
        var = tw.reduce_mean(tw.square(x - mean), axes, keepdims=True)
        n = tw.cast(tw.reduce_prod(tw.shape(x)[-3:]), x.dtype)
        return (x - mean) / tw.maximum(tw.sqrt(var), tw.rsqrt(n))


def crop_to_bounding_box(image, offset_height, offset_width, target_height, target_width):
    """The window of ``target_height`` x ``target_width`` pixels from the given offsets."""
    tw = _tw()
    x, batch, _ = _image(image, "crop_to_bounding_box")
    begin = [offset_height, offset_width, 0]
    size = [target_height, target_width, -1]
    if batch:
        begin, size = [0] + begin, [-1] + size
    return tw.slice(x, tw.stack(begin), tw.stack(size))


def pad_to_bounding_box(image, offset_height, offset_width, target_height, target_width):
    """Zero-pads to ``target_height`` x ``target_width``, the image at the given offsets."""
    tw = _tw()
    x, batch, h, w = _static_image(image, "pad_to_bounding_box")
    bottom, right = target_height - offset_height - h, target_width - offset_width - w
    if min(offset_height, offset_width, bottom, right) < 0:
        raise ValueError(f"pad_to_bounding_box: a {h}x{w} image at ({offset_height}, "
                         f"{offset_width}) does not fit {target_height}x{target_width}")
    pads = [[offset_height, bottom], [offset_width, right], [0, 0]]
    return tw.pad(x, ([[0, 0]] if batch else []) + pads)


def central_crop(image, central_fraction):
    """The centre ``central_fraction`` (0, 1] of the height and width."""
    if not 0.0 < central_fraction <= 1.0:
        raise ValueError(f"central_fraction must be in (0, 1], got {central_fraction}")
    x, batch, h, w = _static_image(image, "central_crop")
    if central_fraction == 1.0:
        return x
    top, left = int((h - h * central_fraction) / 2), int((w - w * central_fraction) / 2)
    return crop_to_bounding_box(x, top, left, h - 2 * top, w - 2 * left)


def random_crop(value, size, seed=None, name=None):
    """A window of shape ``size`` (a list, one entry per axis of ``value``) at a uniformly
    random offset."""
    tw = _tw()
    with name_scope(name, "random_crop"):
        x = convert_to_tensor(value, name="value")
        size = convert_to_tensor(size, dtype=dtypes.int32, name="size")
        limit = tw.shape(x) - size + 1
        with tw.control_dependencies([tw.assert_greater(limit, 0, message="random_crop: "
                                                        "size is larger than the value")]):
            offset = tw.random_uniform(tw.shape(limit), dtype=dtypes.int32,
                                       maxval=dtypes.int32.max, seed=seed) % limit
        out = tw.slice(x, offset, size)
        const = tw.constant_value(size)
        if const is not None:
            out.set_shape(list(const))
        return out


def _in_float(image, fn):
    """``fn`` applied to the image as float32 (in [0, 1] for integer images), converted back
    to its dtype (saturating), as TF1's adjust_* do."""
    x = convert_to_tensor(image, name="image")
    if x.dtype.is_floating:
        return fn(x)
    out = fn(convert_image_dtype(x, dtypes.float32))
    return convert_image_dtype(out, x.dtype, saturate=True)


def adjust_brightness(image, delta):
    """``image + delta`` (integer images: in [0, 1] units, then back)."""
    return _in_float(image, lambda x: x + _tw().cast(delta, x.dtype))


def random_brightness(image, max_delta, seed=None):
    """``image + delta`` with delta uniform in [-max_delta, max_delta)."""
    if max_delta < 0:
        raise ValueError(f"max_delta must be non-negative, got {max_delta}")
    delta = _tw().random_uniform([], -max_delta, max_delta, seed=seed)
    return adjust_brightness(image, delta)


def adjust_contrast(images, contrast_factor):
    """Each channel of each image: ``(x - mean) * factor + mean``, the mean over its pixels
    (integer images: computed in float, then converted back)."""
    tw = _tw()
    x, batch, _ = _image(images, "adjust_contrast")
    axes = [1, 2] if batch else [0, 1]

    def contrast(f):
        mean = tw.reduce_mean(f, axes, keepdims=True)
        return (f - mean) * tw.cast(contrast_factor, f.dtype) + mean

    return _in_float(x, contrast)


def random_contrast(image, lower, upper, seed=None):
    """``adjust_contrast`` with a factor uniform in [lower, upper)."""
    if not 0 <= lower < upper:
        raise ValueError(f"random_contrast needs 0 <= lower < upper, got {lower}, {upper}")
    factor = _tw().random_uniform([], lower, upper, seed=seed)
    return adjust_contrast(image, factor)


def rgb_to_grayscale(images, name=None):
    """One channel: ``0.2989 R + 0.5870 G + 0.1140 B`` (TF's weights)."""
    tw = _tw()
    with name_scope(name, "rgb_to_grayscale"):
        weights = [0.2989, 0.5870, 0.1140]
        return _in_float(images, lambda f: tw.reduce_sum(
            f * tw.constant(weights, f.dtype), -1, keepdims=True))
