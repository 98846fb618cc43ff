"""Streaming confusion-matrix metric against a NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from scl_tf.eval import metrics


def reference_scores(labels, predictions, num_classes, ignore=255):
    """Plain loops: per class TP, FP, FN over non-ignored pixels."""
    ious = []
    for c in range(num_classes):
        scored = labels != ignore
        tp = np.sum((labels == c) & (predictions == c) & scored)
        fp = np.sum((labels != c) & (predictions == c) & scored)
        fn = np.sum((labels == c) & (predictions != c) & scored)
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    accuracy = np.sum((labels == predictions) & (labels != ignore)) / np.sum(labels != ignore)
    return np.array(ious), np.nanmean(ious), accuracy


def random_batch(rng, num_classes, shape=(2, 17, 23)):
    labels = rng.integers(0, num_classes, shape)
    labels[rng.random(shape) < 0.2] = 255
    predictions = np.where(rng.random(shape) < 0.6, labels, rng.integers(0, num_classes, shape))
    return labels, np.clip(predictions, 0, num_classes - 1)


def test_streaming_matches_reference_over_batches():
    rng = np.random.default_rng(0)
    metric = metrics.ConfusionMatrix(num_classes=7)
    all_labels, all_predictions = [], []
    for _ in range(3):
        labels, predictions = random_batch(rng, 7)
        labels[labels == 5] = 255  # class 5 never in the ground truth ...
        predictions[predictions == 6] = 0  # ... class 6 never predicted
        metric.update_state(labels, predictions)
        all_labels.append(labels)
        all_predictions.append(predictions)
    labels, predictions = np.concatenate(all_labels), np.concatenate(all_predictions)
    expected_ious, expected_miou, expected_accuracy = reference_scores(labels, predictions, 7)
    confusion = metric.confusion()
    assert confusion.dtype == np.int64 and confusion.sum() == np.sum(labels != 255)
    np.testing.assert_allclose(metrics.class_iou(confusion), expected_ious, rtol=1e-12)
    assert metrics.mean_iou(confusion) == pytest.approx(expected_miou, rel=1e-12)
    assert float(metric.result()) == pytest.approx(expected_miou, rel=1e-12)
    assert metrics.pixel_accuracy(confusion) == pytest.approx(expected_accuracy, rel=1e-12)
    metric.reset_state()
    assert metric.confusion().sum() == 0


def test_class_absent_everywhere_is_left_out():
    confusion = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    ious = metrics.class_iou(confusion)
    assert np.isnan(ious[2])
    assert metrics.mean_iou(confusion) == pytest.approx((5 / 8 + 3 / 6) / 2)


def test_metric_updates_inside_a_strategy_run():
    cpu = tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([device.name for device in cpu[:1]])
    with strategy.scope():
        metric = metrics.ConfusionMatrix(num_classes=3)
    rng = np.random.default_rng(1)
    labels, predictions = random_batch(rng, 3)

    @tf.function
    def update(labels, predictions):
        strategy.run(metric.update_state, args=(labels, predictions))

    update(labels, predictions)
    _, expected_miou, _ = reference_scores(labels, predictions, 3)
    assert float(metric.result()) == pytest.approx(expected_miou, rel=1e-12)
