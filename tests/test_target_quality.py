"""research/camvid/target_quality.py: the CutMixed targets scored against the pasted labels."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def quality(import_script):
    return import_script("target_quality", folder="research/camvid")


def one_hot_probs(labels, classes, top):
    """Probabilities with `top` on each pixel's label and the rest spread evenly."""
    probs = np.full((*labels.shape, classes), (1 - top) / (classes - 1), np.float32)
    np.put_along_axis(probs, np.clip(labels, 0, classes - 1)[..., None], top, axis=-1)
    return probs


def test_targets_are_scored_against_the_cutmix_of_the_labels(quality):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (4, 24, 32)).astype(np.int32)
    labels[:, :2] = 255  # void rows are not scored
    images = rng.uniform(0, 255, (4, 24, 32, 3)).astype(np.float32)
    mix, mixed_labels = quality.mixed_pairs(images, labels, num_boxes=4, area=0.5)
    mask = mix.numpy()[..., 0] > 0
    assert 0.2 < mask.mean() < 0.8
    np.testing.assert_array_equal(mixed_labels.numpy(), np.where(mask, labels[1::2], labels[0::2]))
    # A teacher right everywhere, sure (0.99) on frame 0 of each pair and unsure (0.6) on 1.
    probs = one_hot_probs(labels, 3, 0.99)
    probs[1::2] = one_hot_probs(labels[1::2], 3, 0.6)
    scores = quality.score_targets(probs, mix, mixed_labels, 3, threshold=0.97)
    assert scores["pixel_accuracy"] == 1.0 and scores["miou"] == 1.0
    assert scores["confident_share"] == pytest.approx(1 - mask.mean())
    assert scores["confident_accuracy"] == 1.0
    # Wrong on the pasted frames: accuracy is the share of base pixels among scored ones.
    wrong = probs.copy()
    wrong[1::2] = one_hot_probs((labels[1::2] + 1) % 3, 3, 0.6)
    scores = quality.score_targets(wrong, mix, mixed_labels, 3, threshold=0.97)
    scored = mixed_labels.numpy() != 255
    assert scores["pixel_accuracy"] == pytest.approx((~mask & scored).sum() / scored.sum())
    assert scores["confident_accuracy"] == 1.0  # only the sure, right base pixels pass the gate
