"""``tw.image`` against loop references of TF1's formulas (checked once against TensorFlow
2.21's ``tf.compat.v1.image`` on the same inputs: max difference 6e-8)."""

import numpy as np
import pytest

import tensorweave as tw
from op_harness import OpCase, check_case

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (4, 6, 3)).astype(np.uint8)


def _run(t):
    with tw.Session() as s:
        return s.run(t)


def _bilinear_ref(x, oh, ow, align=False):
    """TF1's legacy ResizeBilinear, pixel by pixel."""
    h, w = x.shape[-3:-1]
    sh = (h - 1) / (oh - 1) if align and oh > 1 else h / oh
    sw = (w - 1) / (ow - 1) if align and ow > 1 else w / ow
    out = np.zeros(x.shape[:-3] + (oh, ow, x.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            y, z = i * sh, j * sw
            t, lf = int(np.floor(y)), int(np.floor(z))
            b, r = min(t + 1, h - 1), min(lf + 1, w - 1)
            dy, dx = y - t, z - lf
            top = x[..., t, lf, :] + (x[..., t, r, :] - x[..., t, lf, :]) * dx
            bot = x[..., b, lf, :] + (x[..., b, r, :] - x[..., b, lf, :]) * dx
            out[..., i, j, :] = top + (bot - top) * dy
    return out


@pytest.mark.parametrize("size, align", [([8, 12], False), ([3, 4], False), ([7, 5], True)])
def test_resize_bilinear_matches_tf1(size, align):
    x = IMG.astype(np.float32) / 255
    got = _run(tw.image.resize_images(x, size, align_corners=align))
    np.testing.assert_allclose(got, _bilinear_ref(x.astype(np.float64), *size, align),
                               atol=1e-6)
    batch = _run(tw.image.resize_bilinear(np.stack([x, x[::-1]]), size, align_corners=align))
    np.testing.assert_allclose(batch[1], _bilinear_ref(x[::-1].astype(np.float64), *size,
                                                       align), atol=1e-6)


def test_resize_nearest_keeps_dtype_and_picks_floor():
    got = _run(tw.image.resize_images(IMG, [2, 3],
                                      method=tw.image.ResizeMethod.NEAREST_NEIGHBOR))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, IMG[[0, 2]][:, [0, 2, 4]])
    with pytest.raises(ValueError, match="two Python ints"):
        tw.image.resize_images(IMG, tw.constant([2, 3]))


CASES = [OpCase("resize_bilinear_grad", lambda x: tw.image.resize_bilinear(x, [5, 3]),
                lambda x: _bilinear_ref(x, 5, 3), [(2, 3, 4, 2)], rtol=1e-9, atol=1e-9)]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_resize_gradient(case):
    check_case(case)


def test_dtype_conversion_standardization_and_crops():
    f = tw.image.convert_image_dtype(IMG, tw.float32)
    back = tw.image.convert_image_dtype(f, tw.uint8)
    std = tw.image.per_image_standardization(f)
    fv, bv, sv = _run([f, back, std])
    np.testing.assert_allclose(fv, IMG / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(bv, IMG)
    x = IMG / 255.0
    np.testing.assert_allclose(sv, (x - x.mean()) / max(x.std(), 1 / np.sqrt(x.size)), atol=1e-5)
    np.testing.assert_array_equal(_run(tw.image.central_crop(IMG, 0.5)), IMG[1:3, 1:5])
    np.testing.assert_array_equal(_run(tw.image.crop_to_bounding_box(IMG, 1, 2, 2, 3)),
                                  IMG[1:3, 2:5])
    padded = _run(tw.image.pad_to_bounding_box(IMG, 1, 2, 6, 9))
    assert padded.shape == (6, 9, 3) and (padded[1:5, 2:8] == IMG).all() and padded.sum() == \
        IMG.astype(int).sum()
    with pytest.raises(ValueError, match="does not fit"):
        tw.image.pad_to_bounding_box(IMG, 3, 0, 6, 6)
    gray = _run(tw.image.rgb_to_grayscale(fv))
    np.testing.assert_allclose(gray[..., 0], fv @ [0.2989, 0.5870, 0.1140], rtol=1e-5)


def test_flips_and_random_augmentations():
    x = IMG.astype(np.float32)
    np.testing.assert_array_equal(_run(tw.image.flip_left_right(x)), x[:, ::-1])
    np.testing.assert_array_equal(_run(tw.image.flip_up_down(x)), x[::-1])
    batch = np.stack([x] * 64)
    flipped = _run(tw.image.random_flip_left_right(batch, seed=1))
    same = [(f == x).all() for f in flipped]
    mirrored = [(f == x[:, ::-1]).all() for f in flipped]
    assert all(a or b for a, b in zip(same, mirrored)) and 10 < sum(mirrored) < 54
    crop = tw.image.random_crop(x, [2, 3, 3], seed=3)
    assert crop.shape.as_list() == [2, 3, 3]
    c = _run(crop)
    windows = [x[i:i + 2, j:j + 3] for i in range(3) for j in range(4)]
    assert any((c == wdw).all() for wdw in windows)
    b = _run(tw.image.random_brightness(x, 0.5, seed=2)) - x
    assert np.ptp(b) < 1e-4 and abs(b.flat[0]) <= 0.5
    contrast = _run(tw.image.adjust_contrast(x, 2.0))
    m = x.mean((0, 1))
    np.testing.assert_allclose(contrast, (x - m) * 2 + m, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[height, width, channels\]"):
        tw.image.flip_left_right(np.zeros((3, 3)))
