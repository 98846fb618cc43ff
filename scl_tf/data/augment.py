"""Training augmentation of Zhu et al. (2019): random scale, crop, flip, colour jitter, blur.

Scale, crop and flip are one `crop_and_resize` of the window that the crop covers in the
original image, so no full-size rescaled copy is ever made: scaling a 2048x1024 frame by 2.0
first and cropping after would cost more than decoding it. Parts of the crop outside the image
are padded with 0 (image) and 255 (ignore, labels).

All randomness is stateless and comes from an int [2] seed, so a pipeline is reproducible
given its seed whatever the parallelism.
"""

from __future__ import annotations

import math

import tensorflow as tf

from scl_tf.data.labels import IGNORE_LABEL

BLUR_SIGMA_MIN = 0.15
BLUR_SIGMA_MAX = 1.3
BLUR_RADIUS = math.ceil(3 * BLUR_SIGMA_MAX)


def crop_window(seed, image_size, crop_size, scale_range, center=None) -> tf.Tensor:
    """A random scaled crop window in the original image's pixel coordinates.

    The image is (conceptually) scaled by s ~ U(scale_range) and a crop_size window taken from
    it, at a uniform offset, or centred on `center` (scaled) and moved inside the image.

    Args:
      seed: int [2].
      image_size: int [2] (H, W) of the original image.
      crop_size: (h, w) Python ints.
      scale_range: (min, max) Python floats.
      center: None or int [2] (y, x) pixel of the original image to centre the crop on.

    Returns:
      float32 [4]: (top, left, bottom, right) edges in original pixels; may extend outside.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    scaled = tf.cast(image_size, tf.float32) * scale
    crop = tf.constant(crop_size, tf.float32)
    # Offsets from min(0, slack) to max(0, slack): inside the image if the crop fits in it,
    # else the image lies at a random place inside the crop.
    slack = scaled - crop
    low, high = tf.minimum(slack, 0.0), tf.maximum(slack, 0.0)
    if center is None:
        offset = low + tf.random.stateless_uniform([2], seeds[1]) * (high - low)
    else:
        offset = (tf.cast(center, tf.float32) + 0.5) * scale - crop / 2
        offset = tf.clip_by_value(tf.round(offset), low, high)
    offset = tf.round(offset)
    return tf.concat([offset, offset + crop], axis=0) / scale


def _normalized_boxes(window, image_size, crop_size, flip) -> tf.Tensor:
    """crop_and_resize box [1, 4] that samples pixel centres of the crop within `window`."""
    size = tf.cast(image_size, tf.float32)
    crop = tf.constant(crop_size, tf.float32)
    step = (window[2:] - window[:2]) / crop
    first = window[:2] + 0.5 * step - 0.5  # centre of the crop's first pixel
    last = window[2:] - 0.5 * step - 0.5
    denominator = tf.maximum(size - 1.0, 1.0)
    y1, x1 = tf.unstack(first / denominator)
    y2, x2 = tf.unstack(last / denominator)
    x1, x2 = tf.cond(flip, lambda: (x2, x1), lambda: (x1, x2))
    return tf.stack([y1, x1, y2, x2])[None]


def crop_image(image, window, crop_size, flip) -> tf.Tensor:
    """float32 [H, W, 3] -> float32 [h, w, 3], bilinear, zero outside the image."""
    boxes = _normalized_boxes(window, tf.shape(image)[:2], crop_size, flip)
    return tf.image.crop_and_resize(image[None], boxes, [0], crop_size,
                                    extrapolation_value=0.0)[0]


def crop_label(label, window, crop_size, flip) -> tf.Tensor:
    """int32 [H, W] train ids -> int32 [h, w], nearest, IGNORE_LABEL outside the image."""
    boxes = _normalized_boxes(window, tf.shape(label)[:2], crop_size, flip)
    cropped = tf.image.crop_and_resize(tf.cast(label, tf.uint8)[None, ..., None], boxes, [0],
                                       crop_size, method="nearest",
                                       extrapolation_value=float(IGNORE_LABEL))
    return tf.cast(cropped[0, ..., 0], tf.int32)


def color_jitter(image, seed, strength: float) -> tf.Tensor:
    """Random brightness, contrast and saturation factors in [1 - s, 1 + s] and a hue shift in
    [-s, s] of the colour circle, as torchvision's ColorJitter(s, s, s, s).

    Args:
      image: float32 [h, w, 3] in [0, 255]. Returns the same.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)

    def factor(i):
        return tf.random.stateless_uniform([], seeds[i], 1 - strength, 1 + strength)

    image = tf.clip_by_value(image / 255.0 * factor(0), 0.0, 1.0)
    image = tf.clip_by_value(tf.image.adjust_contrast(image, factor(1)), 0.0, 1.0)
    image = tf.clip_by_value(tf.image.adjust_saturation(image, factor(2)), 0.0, 1.0)
    image = tf.image.adjust_hue(image, factor(3) - 1.0)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def gaussian_blur(image, sigma) -> tf.Tensor:
    """Separable Gaussian blur with a (2 * BLUR_RADIUS + 1)-tap kernel, edges reflected.

    Args:
      image: float32 [h, w, 3]; sigma: float32 scalar. Returns float32 [h, w, 3].
    """
    taps = tf.range(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel /= tf.reduce_sum(kernel)
    padded = tf.pad(image[None], [[0, 0], [BLUR_RADIUS] * 2, [BLUR_RADIUS] * 2, [0, 0]],
                    mode="REFLECT")
    vertical = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])
    horizontal = tf.tile(kernel[None, :, None, None], [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], "VALID")
    return blurred[0]


def photometric(image, seed, color_strength: float, blur_prob: float) -> tf.Tensor:
    """Colour jitter, then with probability `blur_prob` a blur of sigma U(0.15, 1.3)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if color_strength > 0:
        image = color_jitter(image, seeds[0], color_strength)
    if blur_prob > 0:
        draw = tf.random.stateless_uniform([2], seeds[1])
        sigma = BLUR_SIGMA_MIN + draw[1] * (BLUR_SIGMA_MAX - BLUR_SIGMA_MIN)
        image = tf.cond(draw[0] < blur_prob, lambda: gaussian_blur(image, sigma),
                        lambda: image)
    return image
