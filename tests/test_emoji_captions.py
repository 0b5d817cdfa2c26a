"""The emoji caption generator: deterministic under a seed, held-out combinations, grammar."""

import itertools
import os
import re

import numpy as np
import pytest

from tensorweave.data import emoji_captions as ec

pytestmark = pytest.mark.skipif(not os.path.exists(ec.EMOJI_FONT),
                                reason="needs fonts-noto-color-emoji")

NAME = "(?:" + "|".join(re.escape(n) for n in ec.CLASS_NAMES) + ")"
OBJ = rf"(?:a|an|some) {NAME}"
GRAMMAR = re.compile(rf"^(?:{OBJ}|{OBJ} (?:left of|above) {OBJ}|"
                     rf"{OBJ} , {OBJ} and {OBJ} from left to right)$")


def test_same_seed_same_pictures_other_seed_other_pictures():
    a = ec.generate(12, "train", seed=5)
    b = ec.generate(12, "train", seed=5)
    c = ec.generate(12, "train", seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[2] == b[2]
    assert a[1] != c[1]
    assert a[0].shape == (12, 64, 64, 3) and a[0].dtype == np.uint8


def test_picture_i_depends_only_on_seed_split_and_i():
    small = ec.generate(3, "test", seed=1)
    large = ec.generate(6, "test", seed=1)
    np.testing.assert_array_equal(small[0], large[0][:3])
    assert small[1] == large[1][:3]
    assert ec.generate(3, "train", seed=1)[1] != small[1]


def test_held_out_pairs_never_meet_in_training_and_always_in_test():
    held = ec.held_out_pairs()
    assert len(held) == round(0.2 * len(list(itertools.combinations(range(32), 2))))
    _, _, train_objects = ec.generate(150, "train", seed=2)
    _, test_captions, test_objects = ec.generate(40, "test", seed=2)
    assert not any(ec.is_held_out(o, held) for o in train_objects)
    assert all(ec.is_held_out(o, held) and len(o) >= 2 for o in test_objects)
    assert {len(o) for o in train_objects} == {1, 2, 3}
    # no test caption can have been seen in training: its pair never was
    train_pairs = {frozenset(p) for o in train_objects for p in itertools.combinations(o, 2)}
    assert not train_pairs & held


def test_captions_follow_the_grammar_and_name_the_objects():
    _, captions, objects = ec.generate(60, "train", seed=3)
    for caption, objs in zip(captions, objects):
        assert GRAMMAR.match(caption), caption
        positions = [caption.index(ec.CLASS_NAMES[c]) for c in objs]
        assert positions == sorted(positions), (caption, objs)  # caption order


def test_caption_for_articles_relations_and_errors():
    apple, octopus, grapes = (ec.CLASS_NAMES.index(n) for n in ("red apple", "octopus",
                                                                 "grapes"))
    assert ec.caption_for([apple]) == "a red apple"
    assert ec.caption_for([octopus, grapes], "above") == "an octopus above some grapes"
    assert ec.caption_for([apple, octopus, grapes]) == \
        "a red apple , an octopus and some grapes from left to right"
    with pytest.raises(ValueError, match="relation"):
        ec.caption_for([apple, octopus], "below")
    with pytest.raises(ValueError, match="split"):
        ec.generate(1, "dev")
    with pytest.raises(ValueError, match="2 or 3 objects"):
        ec.generate(1, "test", counts=(1, 0, 0))


def test_relation_and_order_follow_the_boxes():
    # boxes are (x, y, side): class 7 is drawn right of class 3, then below it
    assert ec._relation_order([7, 3], [(40, 5, 20), (2, 8, 20)]) == ([3, 7], "left of")
    assert ec._relation_order([7, 3], [(5, 40, 20), (8, 2, 20)]) == ([3, 7], "above")
    assert ec._relation_order([1, 2, 3], [(40, 0, 16), (0, 30, 16), (20, 10, 16)]) == \
        ([2, 3, 1], None)
    img = ec.render([0], [(0, 0, 30)], size=64)
    ink = img.astype(int).sum(-1) < 740
    assert ink[:30, :30].any() and not ink[32:, :].any() and not ink[:, 32:].any()


def test_missing_font_names_the_package(tmp_path):
    ec._glyphs.cache_clear()
    try:
        with pytest.raises(ec.EmojiFontNotFoundError, match="fonts-noto-color-emoji"):
            ec.generate(1, font_path=str(tmp_path / "none.ttf"))
    finally:
        ec._glyphs.cache_clear()
