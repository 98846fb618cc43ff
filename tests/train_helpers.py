"""Small models and batches for trainer tests."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from scl_tf.data.cutmix import sample_boxes


def tiny_segmenter(num_classes=5, kernel_size=3, batchnorm=True, sync=False, seed=0):
    """RGB [B, H, W, 3] in [0, 255] -> logits [B, H, W, C]; kernel_size=1 makes every pixel's
    prediction depend on that pixel alone."""
    initializer = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, kernel_size, padding="same", kernel_initializer=initializer)(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(synchronized=sync)(x)
    x = keras.layers.ReLU()(x)
    logits = keras.layers.Conv2D(num_classes, 1, kernel_initializer=initializer)(x)
    return keras.Model(inputs, logits)


def random_batch(batch=2, size=(16, 20), num_classes=5, num_boxes=8, seed=0, ignore_share=0.2):
    """A pipeline-shaped element with random images, labels (some ignored) and boxes."""
    rng = np.random.default_rng(seed)
    height, width = size
    labels = rng.integers(0, num_classes, (batch, height, width)).astype(np.int32)
    labels[rng.random(labels.shape) < ignore_share] = 255

    def images():
        return tf.constant(rng.uniform(0, 255, (batch, height, width, 3)), tf.float32)

    boxes = tf.stack(
        [sample_boxes(tf.constant([seed, i]), height, width, num_boxes) for i in range(batch)]
    )
    return {
        "labeled": {"image": images(), "label": tf.constant(labels)},
        "unlabeled": {"u_a": images(), "u_b": images(), "boxes": boxes},
    }
