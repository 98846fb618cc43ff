"""Streaming confusion matrix, per-class IoU, mIoU and pixel accuracy.

The scores follow cityscapesscripts' pixel-level evaluation: a class's IoU is
TP / (TP + FP + FN) over pixels whose ground truth is not ignored, a class with an empty
denominator (never in the ground truth, never predicted) has no IoU (NaN) and is left out of
the mean. Counts are int64: a Cityscapes val pass is ~10^9 pixels, beyond float32's exact range.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def confusion_counts(labels, predictions, num_classes: int, ignore_label: int = 255):
    """Confusion matrix of one batch.

    Args:
      labels: int [...] ground-truth train ids, `ignore_label` for unscored pixels.
      predictions: int [...] predicted train ids in [0, C), same shape.
      num_classes: C.
    Returns:
      int32 [C, C]: [ground truth, prediction] pixel counts.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), [-1])
    predictions = ops.reshape(ops.cast(predictions, "int32"), [-1])
    scored = ops.logical_and(
        labels != ignore_label, ops.logical_and(labels >= 0, labels < num_classes)
    )
    pairs = ops.where(scored, labels * num_classes + predictions, num_classes * num_classes)
    counts = ops.bincount(pairs, minlength=num_classes * num_classes + 1)
    return ops.reshape(counts[: num_classes * num_classes], [num_classes, num_classes])


def iou_terms(confusion):
    """IoU of each class from a [C, C] confusion matrix, with which ones are defined.

    Returns:
      ious: float64 [C], 0 where undefined; defined: bool [C], TP + FP + FN > 0.
    """
    confusion = ops.cast(confusion, "float64")
    true_positive = ops.diagonal(confusion)
    denominator = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1) - true_positive
    defined = denominator > 0
    return ops.where(defined, true_positive / ops.maximum(denominator, 1.0), 0.0), defined


def class_iou(confusion) -> np.ndarray:
    """float64 [C] IoU per class from a [C, C] confusion matrix; NaN where undefined."""
    ious, defined = (ops.convert_to_numpy(term) for term in iou_terms(confusion))
    return np.where(defined, ious, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of the defined class IoUs (cityscapesscripts' average); NaN if none is."""
    ious = class_iou(confusion)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Share of scored pixels predicted right."""
    confusion = np.asarray(confusion, np.float64)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total > 0 else float("nan")


class ConfusionMatrix(keras.metrics.Metric):
    """Streaming confusion matrix; `result()` is the mIoU, read the rest with
    `confusion()` and the functions above.

    Works inside a distribution strategy: the counts are summed over replicas when read.
    """

    def __init__(self, num_classes: int, ignore_label: int = 255, name="miou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.counts = self.add_variable(
            shape=(num_classes, num_classes),
            initializer="zeros",
            dtype="int64",
            aggregation="sum",
            name="counts",
        )

    def update_state(self, labels, predictions, sample_weight=None):
        """labels: int [B, H, W] train ids; predictions: int [B, H, W] train ids."""
        if sample_weight is not None:
            raise ValueError("ConfusionMatrix: sample_weight is not supported")
        batch = confusion_counts(labels, predictions, self.num_classes, self.ignore_label)
        self.counts.assign_add(ops.cast(batch, "int64"))

    def confusion(self) -> np.ndarray:
        """int64 [C, C] counts so far."""
        return ops.convert_to_numpy(self.counts.value)

    def result(self):
        ious, defined = iou_terms(self.counts.value)
        return ops.sum(ious) / ops.maximum(ops.sum(ops.cast(defined, "float64")), 1.0)

    def reset_state(self):
        self.counts.assign(ops.zeros((self.num_classes, self.num_classes), "int64"))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
        }
