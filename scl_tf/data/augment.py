"""Training augmentation of Zhu et al. (2019): random scale, crop, flip, colour jitter, blur.

Scale, crop and flip touch only the part of the image that the crop covers: the covered region
is sliced out of the decoded image (uint8), flipped, resized to its place in the crop and padded
(0 for images, 255 = ignore for labels). No rescaled full frame is ever made: scaling a
2048x1024 frame by 2.0 first and cropping after would cost more than decoding it. Label values
are mapped to train ids (and checked) on the crop only, the pixels that are trained on.

All randomness is stateless and comes from an int [2] seed, so a pipeline is reproducible
given its seed whatever the parallelism.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from scl_tf.data.decode import to_train_ids
from scl_tf.data.labels import IGNORE_LABEL

BLUR_SIGMA_MIN = 0.15
BLUR_SIGMA_MAX = 1.3
BLUR_RADIUS = math.ceil(3 * BLUR_SIGMA_MAX)
# ITU-R 601 luma and the YIQ transform, whose chroma plane (I, Q) a hue shift rotates.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]], np.float32)


def crop_window(seed, image_size, crop_size, scale_range, center=None) -> tf.Tensor:
    """A random scaled crop window in the original image's pixels.

    The image is (conceptually) scaled by s ~ U(scale_range) and a crop_size window taken at a
    uniform offset, or centred on `center` and moved inside the image. When the scaled image is
    smaller than the crop, the image lies at a random place inside the window.

    Args:
      seed: int [2].
      image_size: int [2] (H, W) of the original image.
      crop_size: (h, w) Python ints.
      scale_range: (min, max) Python floats.
      center: None or int [2] (y, x) pixel of the original image to centre the crop on.

    Returns:
      int32 [4]: (top, left, height, width); the window may extend outside the image.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    scale = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    size = tf.maximum(tf.round(tf.constant(crop_size, tf.float32) / scale), 1.0)
    slack = tf.cast(image_size, tf.float32) - size
    low, high = tf.minimum(slack, 0.0), tf.maximum(slack, 0.0)
    if center is None:
        offset = tf.floor(low + tf.random.stateless_uniform([2], seeds[1]) * (high - low + 1))
    else:
        offset = tf.cast(center, tf.float32) - tf.floor(size / 2)
    offset = tf.clip_by_value(offset, low, high)
    return tf.cast(tf.concat([offset, size], axis=0), tf.int32)


def _placement(window, image_size, crop_size, flip):
    """The part of the image inside `window`, and where it lands in the crop.

    Returns (region, slot): int32 [4] each, (top, left, bottom, right): `region` in image pixels
    (non-empty), `slot` in crop pixels, mirrored when `flip`.
    """
    top_left, size = window[:2], window[2:]
    start = tf.maximum(top_left, 0)
    end = tf.maximum(tf.minimum(top_left + size, image_size), start + 1)
    crop = tf.constant(crop_size, tf.int32)

    def to_crop(position):
        return tf.cast(tf.round(tf.cast((position - top_left) * crop, tf.float32)
                                / tf.cast(size, tf.float32)), tf.int32)

    slot_start = tf.clip_by_value(to_crop(start), 0, crop - 1)
    slot_end = tf.clip_by_value(to_crop(end), slot_start + 1, crop)
    slot_left, slot_right = tf.cond(flip, lambda: (crop[1] - slot_end[1], crop[1] - slot_start[1]),
                                    lambda: (slot_start[1], slot_end[1]))
    region = tf.concat([start, end], axis=0)
    slot = tf.stack([slot_start[0], slot_left, slot_end[0], slot_right])
    return region, slot


def _cut(image, region, slot, flip):
    """The (flipped) region and the (height, width) it is resized to."""
    part = image[region[0]:region[2], region[1]:region[3]]
    part = tf.cond(flip, lambda: tf.reverse(part, [1]), lambda: part)
    return part, slot[2:] - slot[:2]


def _pad_to_crop(part, slot, crop_size, fill):
    paddings = [[slot[0], crop_size[0] - slot[2]], [slot[1], crop_size[1] - slot[3]]]
    paddings += [[0, 0]] * (part.shape.rank - 2)
    return tf.pad(part, paddings, constant_values=fill)


def crop_image(image, window, crop_size, flip) -> tf.Tensor:
    """uint8 [H, W, 3] -> float32 [h, w, 3] in [0, 255], bilinear, zero outside the image."""
    region, slot = _placement(window, tf.shape(image)[:2], crop_size, flip)
    part, size = _cut(image, region, slot, flip)
    resized = tf.image.resize(tf.cast(part, tf.float32), size, method="bilinear")
    cropped = _pad_to_crop(resized, slot, crop_size, 0.0)
    cropped.set_shape([*crop_size, 3])
    return cropped


def crop_label(values, window, crop_size, flip, value_to_train_id, path) -> tf.Tensor:
    """uint8 [H, W] stored values -> int32 [h, w] train ids, nearest, IGNORE_LABEL outside the
    image; fails naming `path` if the crop holds a value the dataset does not define."""
    region, slot = _placement(window, tf.shape(values)[:2], crop_size, flip)
    part, size = _cut(values, region, slot, flip)
    resized = tf.image.resize(part[..., None], size, method="nearest")[..., 0]
    cropped = _pad_to_crop(to_train_ids(resized, value_to_train_id, path), slot, crop_size,
                           IGNORE_LABEL)
    cropped.set_shape(crop_size)
    return cropped


def jitter_matrix(brightness, contrast, saturation, hue):
    """The colour jitter as one affine map y = A x + b of RGB, from scalar factors.

    Brightness multiplies, contrast blends with the mean grey level m, saturation blends with the
    pixel's grey level, hue rotates the YIQ chroma plane by 2 pi * hue (in the direction that
    takes red towards yellow, as a positive HSV hue shift does). All fix the grey axis,
    which is what lets them fold into one matrix: A = contrast * brightness * H S and
    b = (1 - contrast) * brightness * m (times [1, 1, 1]).

    Returns:
      A: float32 [3, 3]; the factor of m in b: float32 scalar.
    """
    grey = tf.constant(np.outer(np.ones(3), LUMA), tf.float32)
    saturate = saturation * tf.eye(3) + (1.0 - saturation) * grey
    angle = -2.0 * np.pi * hue
    cos, sin = tf.cos(angle), tf.sin(angle)
    rotate = tf.stack([[1.0, 0.0, 0.0], tf.stack([0.0, cos, -sin]), tf.stack([0.0, sin, cos])])
    yiq = tf.constant(RGB_TO_YIQ)
    hue_shift = tf.linalg.inv(yiq) @ rotate @ yiq
    return contrast * brightness * hue_shift @ saturate, (1.0 - contrast) * brightness


def color_jitter(image, seed, strength: float) -> tf.Tensor:
    """Random brightness, contrast and saturation factors in [1 - s, 1 + s] and a hue shift in
    [-s, s] of the colour circle (torchvision's ColorJitter(s, s, s, s) ranges), applied as one
    affine colour map and clipped once at the end.

    Args:
      image: float32 [h, w, 3] in [0, 255]. Returns the same.
    """
    factors = tf.random.stateless_uniform([4], seed, 1 - strength, 1 + strength)
    matrix, mean_weight = jitter_matrix(factors[0], factors[1], factors[2], factors[3] - 1.0)
    # Rows first: one reduction over axes (0, 1) of [h, w, 3] is 4-5x slower on CPU.
    mean_colour = tf.reduce_mean(tf.reduce_mean(image, axis=0), axis=0)
    mean_grey = tf.tensordot(mean_colour, tf.constant(LUMA), 1)
    jittered = tf.tensordot(image, tf.transpose(matrix), 1) + mean_weight * mean_grey
    return tf.clip_by_value(jittered, 0.0, 255.0)


def gaussian_blur(image, sigma) -> tf.Tensor:
    """Separable Gaussian blur truncated at ceil(3 sigma) pixels, edges reflected.

    Args:
      image: float32 [h, w, 3]; sigma: float32 scalar in (0, BLUR_SIGMA_MAX].
    Returns:
      float32 [h, w, 3].
    """
    radius = tf.clip_by_value(tf.cast(tf.math.ceil(3.0 * sigma), tf.int32), 1, BLUR_RADIUS)

    def blur_with_radius(radius):
        taps = tf.range(-radius, radius + 1, dtype=tf.float32)
        kernel = tf.exp(-0.5 * tf.square(taps / sigma))
        kernel /= tf.reduce_sum(kernel)
        padded = tf.pad(image[None], [[0, 0], [radius] * 2, [radius] * 2, [0, 0]],
                        mode="REFLECT")
        vertical = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])
        horizontal = tf.tile(kernel[None, :, None, None], [1, 1, 3, 1])
        blurred = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
        return tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], "VALID")[0]

    # A static kernel size per branch: small sigmas do not pay for the widest kernel.
    return tf.switch_case(radius - 1, [lambda r=r: blur_with_radius(r)
                                       for r in range(1, BLUR_RADIUS + 1)])


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
