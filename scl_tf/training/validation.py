"""Single-scale validation during training (the full protocol is scl_tf.evaluate)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from scl_tf.data import pipeline
from scl_tf.data.datasets import Sample
from scl_tf.data.labels import LabelSpec
from scl_tf.eval.metrics import ConfusionMatrix


def validate(model: keras.Model, samples: list[Sample], spec: LabelSpec) -> np.ndarray:
    """Confusion matrix of `model`'s single-scale predictions on whole images.

    Args:
      model: float RGB [1, H, W, 3] -> logits [1, H, W, C].
      samples: image/label pairs.
    Returns:
      int64 [C, C] counts, [ground truth, prediction].
    """
    metric = ConfusionMatrix(spec.num_classes)

    @tf.function(reduce_retracing=True)
    def predict(image):
        return tf.argmax(model(image, training=False), axis=-1, output_type=tf.int32)

    for element in pipeline.eval_dataset(samples, spec):
        metric.update_state(element["label"], predict(element["image"]))
    return metric.confusion()
