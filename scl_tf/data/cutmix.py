"""CutMix boxes for unlabeled pairs, and the masks built from them in the train step.

Only the boxes (int32 [N, 4]) travel through tf.data; masks at full crop resolution are built
where the step runs (painting 32 boxes per image in the input pipeline cost more than decoding
the PNGs). Boxes are pasted in order, later over earlier: pixel (y, x) shows the second image
where any box covers it, and belongs to the last box that covers it.

Box sizes: area a * U(0.5, 1.5) of the image, aspect ratio log-uniform in [1/2, 2], placed
uniformly so the box lies inside the image. The base area `a` is solved once per
(height, width, N, area) so that the expected union of the N boxes is `area`.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

AREA_SPREAD = 0.5  # box area = base * U(1 - spread, 1 + spread)
MAX_ASPECT = 2.0  # aspect ratio h / w log-uniform in [1 / MAX_ASPECT, MAX_ASPECT]


def _box_sides(base_area: float, area_factor, log_aspect, height: int, width: int, xp=np):
    """Side lengths (h, w) >= 1 of boxes of area base_area * area_factor * H * W."""
    box_area = base_area * area_factor * height * width
    aspect = xp.exp(log_aspect)
    box_h = xp.clip(xp.round(xp.sqrt(box_area * aspect)), 1, height)
    box_w = xp.clip(xp.round(xp.sqrt(box_area / aspect)), 1, width)
    return box_h, box_w


def _cover_probability(side: np.ndarray, length: int, positions: np.ndarray) -> np.ndarray:
    """P(a segment of `side` pixels placed uniformly inside [0, length) covers each position).

    Args:
      side: [S] segment lengths; positions: [P] pixel indices. Returns [S, P].
    """
    side = side[:, None]
    starts = length - side + 1  # number of placements
    first = np.maximum(positions[None, :] - side + 1, 0)
    last = np.minimum(positions[None, :], length - side)
    return np.maximum(last - first + 1, 0) / starts


def expected_union(
    base_area: float, height: int, width: int, num_boxes: int, grid: int = 96
) -> float:
    """Expected share of the image covered by `num_boxes` i.i.d. boxes of base area `base_area`,
    by quadrature over box shapes and a grid of pixel positions."""
    quantiles = (np.arange(32) + 0.5) / 32
    area_factor = 1 - AREA_SPREAD + 2 * AREA_SPREAD * quantiles
    log_aspect = np.log(MAX_ASPECT) * (2 * quantiles - 1)
    area_factor, log_aspect = (a.ravel() for a in np.meshgrid(area_factor, log_aspect))
    box_h, box_w = _box_sides(base_area, area_factor, log_aspect, height, width)
    ys = np.unique(np.linspace(0, height - 1, grid).round()).astype(np.int64)
    xs = np.unique(np.linspace(0, width - 1, grid).round()).astype(np.int64)
    cover_y = _cover_probability(box_h, height, ys)  # [S, Py]
    cover_x = _cover_probability(box_w, width, xs)  # [S, Px]
    cover = np.einsum("sy,sx->yx", cover_y, cover_x) / len(box_h)
    return float(np.mean(1.0 - (1.0 - cover) ** num_boxes))


@functools.lru_cache(maxsize=64)
def base_box_area(height: int, width: int, num_boxes: int, area: float) -> float:
    """The base area (share of the image) that gives an expected union of `area`."""
    low, high = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (low + high)
        if expected_union(mid, height, width, num_boxes) < area:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def typical_box_cells(
    height: int, width: int, num_boxes: int, area: float, output_stride: int
) -> float:
    """Side, in output cells, of the typical box: a square of the base area (the sampler's
    boxes are 0.5 to 1.5 times that area, aspect 1/2 to 2)."""
    return (base_box_area(height, width, num_boxes, area) * height * width) ** 0.5 / output_stride


def box_count_for_min_cells(
    height: int, width: int, output_stride: int, min_cells: float, max_boxes: int, area: float
) -> int:
    """The box rule: the largest N <= max_boxes whose typical box spans >= min_cells cells.

    Fewer boxes covering the same `area` are larger; N = 32 over half of a 256x320 crop at
    output stride 16 gives boxes of 2.8 cells a side, N = 4 gives 8.1. The paper's N = 32 over
    half of an 896x896 crop at stride 8 gives 17.5.

    Returns:
      N in 1..max_boxes, or 0 where even one box of `area` is smaller than min_cells.
    """

    def large_enough(num_boxes: int) -> bool:
        return typical_box_cells(height, width, num_boxes, area, output_stride) >= min_cells

    # The side shrinks as N grows: a binary search for the last N that is large enough.
    low, high = 0, max_boxes
    while low < high:
        middle = (low + high + 1) // 2
        if large_enough(middle):
            low = middle
        else:
            high = middle - 1
    return low


def sample_boxes(
    seed, height: int, width: int, num_boxes: int = 32, area: float = 0.5
) -> tf.Tensor:
    """N random boxes, pasted in order (later over earlier).

    Args:
      seed: int [2] stateless-RNG seed (a tensor inside tf.data or a graph).
      height, width: image size in pixels (Python ints).
      num_boxes: N.
      area: expected share of the image covered by the union of the boxes.

    Returns:
      int32 [N, 4]: (y0, x0, y1, x1) with 0 <= y0 < y1 <= height, 0 <= x0 < x1 <= width.
    """
    base = base_box_area(height, width, num_boxes, area)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    area_factor = tf.random.stateless_uniform(
        [num_boxes], seeds[0], 1 - AREA_SPREAD, 1 + AREA_SPREAD
    )
    log_aspect = tf.random.stateless_uniform(
        [num_boxes], seeds[1], -np.log(MAX_ASPECT), np.log(MAX_ASPECT)
    )
    box_h, box_w = _box_sides(base, area_factor, log_aspect, height, width, xp=_TfMath)
    y0 = tf.floor(tf.random.stateless_uniform([num_boxes], seeds[2]) * (height - box_h + 1))
    x0 = tf.floor(tf.random.stateless_uniform([num_boxes], seeds[3]) * (width - box_w + 1))
    return tf.cast(tf.stack([y0, x0, y0 + box_h, x0 + box_w], axis=-1), tf.int32)


class _TfMath:
    """The few NumPy functions `_box_sides` needs, in TensorFlow."""

    exp = staticmethod(tf.exp)
    sqrt = staticmethod(tf.sqrt)
    round = staticmethod(tf.round)

    @staticmethod
    def clip(x, low, high):
        return tf.clip_by_value(x, float(low), float(high))


def box_owner(boxes, height: int, width: int) -> tf.Tensor:
    """Index of the last box covering each pixel, -1 where none does.

    Args:
      boxes: int32 [..., N, 4] (y0, x0, y1, x1).
    Returns:
      int32 [..., H, W].
    """
    boxes = tf.convert_to_tensor(boxes, tf.int32)
    ys = tf.range(height)[:, None]
    xs = tf.range(width)[None, :]
    y0, x0, y1, x1 = (boxes[..., i, None, None] for i in range(4))
    inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)  # [..., N, H, W]
    order = tf.range(1, tf.shape(boxes)[-2] + 1)[:, None, None]
    return tf.reduce_max(tf.where(inside, order, 0), axis=-3) - 1


def cutmix_masks(boxes, height: int, width: int, num_scl_boxes: int = 16):
    """The mix mask and the visible masks of the last `num_scl_boxes` boxes.

    Args:
      boxes: int32 [..., N, 4] from `sample_boxes` (a leading batch axis is allowed).
      height, width: image size.
      num_scl_boxes: Nbox <= N.

    Returns:
      mix: float32 [..., H, W, 1], 1 where the pasted (second) image shows.
      box_masks: float32 [..., Nbox, H, W]: box_masks[n] is 1 where box N - Nbox + n is the last
        box covering the pixel; the masks are disjoint and lie inside their boxes.
    """
    owner = box_owner(boxes, height, width)
    num_boxes = tf.shape(boxes)[-2]
    mix = tf.cast(owner >= 0, tf.float32)[..., None]
    scored = num_boxes - num_scl_boxes + tf.range(num_scl_boxes)[:, None, None]
    box_masks = tf.cast(owner[..., None, :, :] == scored, tf.float32)
    return mix, box_masks


def paste(mix, base, pasted):
    """CutMix of two tensors by a mix mask: `mix * pasted + (1 - mix) * base`.

    Args:
      mix: float [..., H, W, 1] from `cutmix_masks`, 1 where the pasted image shows.
      base, pasted: float [..., H, W, C] (images, or probabilities).
    """
    return mix * pasted + (1.0 - mix) * base
