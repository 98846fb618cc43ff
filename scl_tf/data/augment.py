"""Training augmentation of Zhu et al. (2019): random scale, crop, flip, colour jitter, blur.

Scale, crop and flip run in tf.data; the photometric part (jitter and blur) is only drawn there
(`photometric_params`, 5 floats an image) and applied to whole batches in the train step
(`apply_photometric`), like the CutMix masks: on 2 cores it cost as much host time as a third
of the PNG decoding, and on an accelerator it costs next to nothing.

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
PHOTOMETRIC_PARAMS = 5
# ITU-R 601 luma and the YIQ transform, whose chroma plane (I, Q) a hue shift rotates.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32
)


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
        return tf.cast(
            tf.round(tf.cast((position - top_left) * crop, tf.float32) / tf.cast(size, tf.float32)),
            tf.int32,
        )

    slot_start = tf.clip_by_value(to_crop(start), 0, crop - 1)
    slot_end = tf.clip_by_value(to_crop(end), slot_start + 1, crop)
    slot_left, slot_right = tf.cond(
        flip,
        lambda: (crop[1] - slot_end[1], crop[1] - slot_start[1]),
        lambda: (slot_start[1], slot_end[1]),
    )
    region = tf.concat([start, end], axis=0)
    slot = tf.stack([slot_start[0], slot_left, slot_end[0], slot_right])
    return region, slot


def _cut(image, region, slot, flip):
    """The (flipped) region and the (height, width) it is resized to."""
    part = image[region[0] : region[2], region[1] : region[3]]
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


def _nearest_indices(size_in, size_out) -> tf.Tensor:
    """TensorFlow's half-pixel nearest sampling: min(floor((i + 0.5) * in / out), in - 1)."""
    scale = tf.cast(size_in, tf.float32) / tf.cast(size_out, tf.float32)
    position = (tf.range(size_out, dtype=tf.float32) + 0.5) * scale
    return tf.minimum(tf.cast(tf.floor(position), tf.int32), size_in - 1)


def resize_nearest(values, size) -> tf.Tensor:
    """[H, W] -> [h, w], the pixels `tf.image.resize(method="nearest")` picks, 4-5x faster on
    CPU: whole rows are gathered, then (transposed) whole columns, instead of single pixels.

    Args:
      values: [H, W] any dtype; size: int32 [2] (h, w).
    """
    rows = tf.gather(values, _nearest_indices(tf.shape(values)[0], size[0]))
    columns = tf.gather(tf.transpose(rows), _nearest_indices(tf.shape(values)[1], size[1]))
    return tf.transpose(columns)


def crop_label(values, window, crop_size, flip, value_to_train_id, path) -> tf.Tensor:
    """uint8 [H, W] stored values -> int32 [h, w] train ids, nearest, IGNORE_LABEL outside the
    image; fails naming `path` if the crop holds a value the dataset does not define."""
    region, slot = _placement(window, tf.shape(values)[:2], crop_size, flip)
    part, size = _cut(values, region, slot, flip)
    train_ids = to_train_ids(resize_nearest(part, size), value_to_train_id, path)
    cropped = _pad_to_crop(train_ids, slot, crop_size, IGNORE_LABEL)
    cropped.set_shape(crop_size)
    return cropped


def photometric_params(seed, color_strength: float, blur_prob: float) -> tf.Tensor:
    """The random photometric change of one image, drawn in the pipeline and applied in the
    train step by `apply_photometric` (on the accelerator, where it is nearly free).

    Brightness, contrast and saturation factors in [1 - s, 1 + s] and a hue shift in [-s, s] of
    the colour circle (torchvision's ColorJitter(s, s, s, s) ranges; 1, 1, 1, 0 when s is 0),
    and with probability `blur_prob` a blur sigma ~ U(0.15, 1.3) (0: no blur).

    Args:
      seed: int [2].
    Returns:
      float32 [PHOTOMETRIC_PARAMS]: (brightness, contrast, saturation, hue, blur sigma).
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    factors = tf.random.stateless_uniform([4], seeds[0], 1 - color_strength, 1 + color_strength)
    draw = tf.random.stateless_uniform([2], seeds[1])
    sigma = BLUR_SIGMA_MIN + draw[1] * (BLUR_SIGMA_MAX - BLUR_SIGMA_MIN)
    sigma = tf.where(draw[0] < blur_prob, sigma, 0.0)
    return tf.concat([factors[:3], factors[3:] - 1.0, sigma[None]], axis=0)


def jitter_matrix(brightness, contrast, saturation, hue):
    """The colour jitter as one affine map y = A x + b of RGB, from factors of shape [B].

    Brightness multiplies, contrast blends with the mean grey level m, saturation blends with the
    pixel's grey level, hue rotates the YIQ chroma plane by 2 pi * hue (in the direction that
    takes red towards yellow, as a positive HSV hue shift does). All fix the grey axis,
    which is what lets them fold into one matrix: A = contrast * brightness * H S and
    b = (1 - contrast) * brightness * m (times [1, 1, 1]).

    Returns:
      A: float32 [B, 3, 3]; the factor of m in b: float32 [B].
    """
    grey = tf.constant(np.outer(np.ones(3), LUMA), tf.float32)
    saturation = saturation[:, None, None]
    saturate = saturation * tf.eye(3) + (1.0 - saturation) * grey
    angle = -2.0 * np.pi * hue
    cos, sin = tf.cos(angle), tf.sin(angle)
    zero, one = tf.zeros_like(angle), tf.ones_like(angle)
    rotate = tf.stack(
        [
            tf.stack([one, zero, zero], -1),
            tf.stack([zero, cos, -sin], -1),
            tf.stack([zero, sin, cos], -1),
        ],
        axis=1,
    )
    yiq = tf.constant(RGB_TO_YIQ)
    hue_shift = tf.linalg.inv(yiq) @ rotate @ yiq
    gain = (contrast * brightness)[:, None, None]
    return gain * hue_shift @ saturate, (1.0 - contrast) * brightness


def color_jitter(images, factors) -> tf.Tensor:
    """Each image's affine colour map (see `jitter_matrix`), clipped once at the end.

    Args:
      images: float32 [B, h, w, 3] in [0, 255].
      factors: float32 [B, 4]: brightness, contrast, saturation, hue (`photometric_params`).
    Returns:
      float32 [B, h, w, 3] in [0, 255].
    """
    matrix, mean_weight = jitter_matrix(*tf.unstack(factors, axis=1))
    # Rows first: one reduction over both image axes is 4-5x slower on CPU.
    mean_colour = tf.reduce_mean(tf.reduce_mean(images, axis=1), axis=1)
    mean_grey = tf.tensordot(mean_colour, tf.constant(LUMA), 1)
    jittered = (
        tf.einsum("bhwc,bdc->bhwd", images, matrix) + (mean_weight * mean_grey)[:, None, None, None]
    )
    return tf.clip_by_value(jittered, 0.0, 255.0)


def gaussian_kernels(sigmas) -> tf.Tensor:
    """1-D Gaussian kernels truncated at ceil(3 sigma) taps, a unit impulse where sigma is 0.

    Args:
      sigmas: float32 [B] in {0} or (0, BLUR_SIGMA_MAX].
    Returns:
      float32 [B, 2 * BLUR_RADIUS + 1], each summing to 1.
    """
    taps = tf.range(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=tf.float32)[None]
    sigmas = sigmas[:, None]
    radius = tf.clip_by_value(tf.math.ceil(3.0 * sigmas), 1.0, BLUR_RADIUS)
    gaussian = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigmas, BLUR_SIGMA_MIN)))
    kernels = tf.where(tf.abs(taps) <= radius, gaussian, 0.0)
    kernels = tf.where(sigmas > 0, kernels, tf.cast(tf.equal(taps, 0.0), tf.float32))
    return kernels / tf.reduce_sum(kernels, axis=1, keepdims=True)


def gaussian_blur(images, sigmas) -> tf.Tensor:
    """Separable Gaussian blur of each image with its own sigma (0: unchanged), edges reflected.

    The batch is folded into the channels, so one pair of depthwise convolutions blurs every
    image (also faster on CPU than 3-channel ones).

    Args:
      images: float32 [B, h, w, 3] with h, w > BLUR_RADIUS; sigmas: float32 [B].
    Returns:
      float32 [B, h, w, 3].
    """
    batch, height, width = tf.unstack(tf.shape(images)[:3])
    channels = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, batch * 3])
    padded = tf.pad(
        channels, [[0, 0], [BLUR_RADIUS] * 2, [BLUR_RADIUS] * 2, [0, 0]], mode="REFLECT"
    )
    kernels = tf.transpose(tf.repeat(gaussian_kernels(sigmas), 3, axis=0))  # [taps, B * 3]
    blurred = tf.nn.depthwise_conv2d(padded, kernels[:, None, :, None], [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, kernels[None, :, :, None], [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(blurred, [height, width, batch, 3]), [2, 0, 1, 3])


def apply_photometric(images, params) -> tf.Tensor:
    """Colour jitter, then blur, of each image with its `photometric_params`.

    Args:
      images: float32 [B, h, w, 3] in [0, 255]; params: float32 [B, PHOTOMETRIC_PARAMS].
    Returns:
      float32 [B, h, w, 3] in [0, 255].
    """
    return gaussian_blur(color_jitter(images, params[:, :4]), params[:, 4])
