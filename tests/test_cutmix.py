"""CutMix boxes and masks against plain NumPy painting."""

import numpy as np
import pytest
import tensorflow as tf

from scl_tf.data import cutmix


def paint(boxes, height, width):
    """NumPy reference: paste boxes in order; owner = last box covering each pixel."""
    owner = np.full((height, width), -1)
    for index, (y0, x0, y1, x1) in enumerate(boxes):
        owner[y0:y1, x0:x1] = index
    return owner


@pytest.mark.parametrize("height, width", [(64, 96), (120, 80)])
def test_union_is_about_half_the_image_over_many_seeds(height, width):
    sample = tf.function(lambda seed: cutmix.sample_boxes(seed, height, width, 32, 0.5))
    unions = [
        np.mean(paint(sample(tf.constant([seed, 3])).numpy(), height, width) >= 0)
        for seed in range(200)
    ]
    assert abs(np.mean(unions) - 0.5) < 0.05


def test_boxes_lie_inside_the_image_and_are_deterministic():
    boxes = cutmix.sample_boxes(tf.constant([5, 6]), 50, 70, 32).numpy()
    again = cutmix.sample_boxes(tf.constant([5, 6]), 50, 70, 32).numpy()
    other = cutmix.sample_boxes(tf.constant([5, 7]), 50, 70, 32).numpy()
    assert boxes.shape == (32, 4) and boxes.dtype == np.int32
    assert np.array_equal(boxes, again) and not np.array_equal(boxes, other)
    y0, x0, y1, x1 = boxes.T
    assert (0 <= y0).all() and (y0 < y1).all() and (y1 <= 50).all()
    assert (0 <= x0).all() and (x0 < x1).all() and (x1 <= 70).all()


def test_masks_match_painting_later_boxes_cover_earlier():
    height, width, num_scl = 48, 64, 16
    boxes = np.stack(
        [
            cutmix.sample_boxes(tf.constant([seed, 0]), height, width, 32).numpy()
            for seed in range(3)
        ]
    )
    mix, box_masks = cutmix.cutmix_masks(boxes, height, width, num_scl)
    assert mix.shape == (3, height, width, 1) and box_masks.shape == (3, num_scl, height, width)
    for b in range(3):
        owner = paint(boxes[b], height, width)
        np.testing.assert_array_equal(mix[b, ..., 0], owner >= 0)
        for n in range(num_scl):
            box = 32 - num_scl + n
            np.testing.assert_array_equal(box_masks[b, n], owner == box)
            y0, x0, y1, x1 = boxes[b, box]
            outside = np.ones((height, width), bool)
            outside[y0:y1, x0:x1] = False
            assert not box_masks[b, n].numpy()[outside].any()
        assert box_masks[b].numpy().sum(axis=0).max() <= 1  # disjoint
    # The last box is never covered: its mask is its whole box.
    y0, x0, y1, x1 = boxes[0, -1]
    assert box_masks[0, -1].numpy().sum() == (y1 - y0) * (x1 - x0)


def test_base_area_solves_for_the_expected_union():
    base = cutmix.base_box_area(40, 60, 8, 0.3)
    assert abs(cutmix.expected_union(base, 40, 60, 8) - 0.3) < 1e-3


def test_box_rule_keeps_boxes_of_the_asked_size_in_output_cells():
    # The paper: 32 boxes over half of an 896x896 crop at stride 8 span 17.5 cells a side.
    assert cutmix.typical_box_cells(896, 896, 32, 0.5, 8) == pytest.approx(17.5, abs=0.05)
    assert cutmix.box_count_for_min_cells(896, 896, 8, 17.4, 32, 0.5) == 32
    # A 256x320 crop at stride 16: 2.8 cells with 32 boxes; 8 cells leaves 4 boxes.
    assert cutmix.typical_box_cells(256, 320, 32, 0.5, 16) == pytest.approx(2.78, abs=0.01)
    count = cutmix.box_count_for_min_cells(256, 320, 16, 8, 32, 0.5)
    assert count == 4
    assert cutmix.typical_box_cells(256, 320, count, 0.5, 16) >= 8
    assert cutmix.typical_box_cells(256, 320, count + 1, 0.5, 16) < 8
    assert cutmix.box_count_for_min_cells(256, 320, 16, 8, 3, 0.5) == 3  # at most max_boxes
    assert cutmix.box_count_for_min_cells(256, 320, 16, 13, 32, 0.5) == 0  # not even one
