"""Test-time inference: several scales, horizontal flip and overlapping tiles, all combinable.

For each scale s the image is resized (bilinear) to round(s * H) x round(s * W) and cut into
tiles of at most `tile` pixels on a grid of step `stride`, the last tile flush with the far edge;
each tile is sampled from the input image on its own, so the scaled image is never whole.
Each tile, and with `flip` its mirror image, goes through the network on its own. A tile's
softmax probabilities are weighted by a tent window normalised over the tiles that cover each
pixel (a partition of unity, so overlaps cross-fade) and resized to the input resolution on
their own. Bilinear resizing is linear, so the sum of the resized tiles is exactly
`tf.image.resize` of the whole blended probability map. Memory holds the input image, the
[H, W, C] average at input resolution and one tile's worth of work, never an image or a
probability map at the scale: also at scale 2 of a 2048x1024 frame. The scales' maps are
averaged with equal weights, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from scl_tf.config import InferenceConfig

# float32 images [B, H, W, 3] in [0, 255] -> float32 probabilities [B, H, W, C].
ProbabilityFn = Callable[[np.ndarray], np.ndarray]
SINGLE_SCALE = InferenceConfig()


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(round(scale * H), round(scale * W)), at least 1 pixel each."""
    return tuple(max(1, round(scale * length)) for length in size)


def tile_starts(length: int, tile: int | None, stride: int | None) -> list[int]:
    """Start offsets of the tiles along one axis of `length` pixels.

    One tile when the axis fits (or `tile` is None); else every `stride` pixels, plus one last
    tile ending at the far edge. Consecutive tiles overlap by at least `tile - stride`.
    """
    if tile is None or length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tile_weights(length: int, tile: int | None, starts: list[int]) -> list[np.ndarray]:
    """Blending weights along one axis: float32 [min(tile, length)] per start.

    A tent window (highest in the middle, where the network sees most context), divided by
    the sum of the windows covering each pixel, so the weights of every pixel sum to 1.
    """
    size = length if tile is None else min(tile, length)
    window = np.minimum(np.arange(1, size + 1), np.arange(size, 0, -1)).astype(np.float64)
    total = np.zeros(length)
    for start in starts:
        total[start : start + size] += window
    return [(window / total[start : start + size]).astype(np.float32) for start in starts]


def bilinear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two source pixels and the weight of the second for each output pixel of one axis,
    as `tf.image.resize(..., "bilinear")` computes them (half-pixel centres, edges clamped,
    float32 arithmetic).

    Returns:
      lower, upper: int64 [out_size] source indices; lerp: float32 [out_size] weight of upper.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
    return lower, upper, (position - floor).astype(np.float32)


def _lerp(values: tf.Tensor, lower, upper, lerp, axis: int) -> tf.Tensor:
    """values[lower] + lerp * (values[upper] - values[lower]) along `axis`."""
    low = tf.gather(values, lower, axis=axis)
    weight = tf.reshape(lerp, [-1 if dim == axis else 1 for dim in range(values.shape.rank)])
    return low + weight * (tf.gather(values, upper, axis=axis) - low)


def _resize_axis(values: tf.Tensor, start: int, taps, axis: int):
    """Bilinear resize along `axis` of a piece of a larger map that is zero outside the piece.

    Args:
      values: float32 [h, w, C]; the piece covers [start, start + values.shape[axis]) of the
        larger map along `axis`.
      taps: `bilinear_taps` of the whole axis, or None when it keeps its size.
    Returns:
      (slice of the output axis that the piece reaches, the resized piece on that slice).
    """
    length = values.shape[axis]
    if taps is None:
        return slice(start, start + length), values
    lower, upper, lerp = taps
    reached = np.flatnonzero((upper >= start) & (lower < start + length))
    span = slice(reached[0], reached[-1] + 1)
    # Index 0 and length + 1 are the zeros just outside the piece.
    padded = tf.pad(values, [(1, 1) if dim == axis else (0, 0) for dim in range(3)])
    return span, _lerp(padded, lower[span] - start + 1, upper[span] - start + 1, lerp[span], axis)


def _run(predictor: ProbabilityFn, image: tf.Tensor) -> tf.Tensor:
    """float32 [h, w, 3] -> float32 [h, w, C] probabilities; fails if the size changed."""
    probabilities = np.asarray(predictor(image.numpy()[None]), np.float32)
    if probabilities.ndim != 4 or probabilities.shape[1:3] != tuple(image.shape[:2]):
        raise ValueError(
            f"the model returned shape {probabilities.shape} for an image of shape "
            f"{(1, *image.shape)}: expected probabilities [1, H, W, C] at the "
            "input's size"
        )
    return tf.constant(probabilities[0])


def tile_probabilities(predictor: ProbabilityFn, tile: tf.Tensor, flip: bool) -> tf.Tensor:
    """Probabilities of one tile, averaged with those of its mirror image when `flip`.

    Args:
      tile: float32 [h, w, 3] RGB in [0, 255].
    Returns:
      float32 [h, w, C].
    """
    probabilities = _run(predictor, tile)
    if not flip:
        return probabilities
    mirrored = _run(predictor, tf.reverse(tile, axis=[1]))
    return 0.5 * (probabilities + tf.reverse(mirrored, axis=[1]))


def _resized(probabilities: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """float32 [h, w, C] -> [*size, C], `tf.image.resize` bilinear."""
    if tuple(probabilities.shape[:2]) == tuple(size):
        return probabilities
    return tf.image.resize(probabilities, size, method="bilinear")


def _sample(values: tf.Tensor, taps, span: slice, axis: int) -> tf.Tensor:
    """Positions `span` of the bilinear resize of `values` along `axis` (a window of
    `tf.image.resize`, without resizing the rest).

    Args:
      taps: `bilinear_taps` from the full axis of `values` to the resized axis, or None when
        the axis keeps its size.
    """
    if taps is None:
        return values[(slice(None),) * axis + (span,)]
    return _lerp(values, *(part[span] for part in taps), axis)


def predict_probabilities(
    predictor: ProbabilityFn, image: np.ndarray, config: InferenceConfig = SINGLE_SCALE
) -> np.ndarray:
    """Class probabilities of one image under the configured scales, flip and tiles.

    Args:
      predictor: float32 [1, h, w, 3] RGB in [0, 255] -> float32 probabilities [1, h, w, C],
        for any h, w up to the tile size (e.g. scl_tf.eval.predictors.Predictor).
      image: float32 (or uint8) [H, W, 3] RGB in [0, 255].
    Returns:
      float32 [H, W, C]: the mean over scales of the (flip-averaged, tile-blended) softmax
      probabilities, resized to H x W.
    """
    image = tf.constant(image, tf.float32)
    height, width = image.shape[:2]
    tile, stride = config.tile or (None, None), config.stride or (None, None)
    total = None
    for scale in config.scales:
        rows, cols = scaled_size((height, width), scale)
        # Taps to sample the scaled image from the input, and to resize back.
        down = [
            None if new == old else bilinear_taps(new, old)
            for new, old in ((rows, height), (cols, width))
        ]
        up = [
            None if new == old else bilinear_taps(old, new)
            for new, old in ((rows, height), (cols, width))
        ]
        row_starts = tile_starts(rows, tile[0], stride[0])
        col_starts = tile_starts(cols, tile[1], stride[1])
        for y0, y_weight in zip(row_starts, tile_weights(rows, tile[0], row_starts)):
            band = _sample(image, down[0], slice(y0, y0 + len(y_weight)), axis=0)
            for x0, x_weight in zip(col_starts, tile_weights(cols, tile[1], col_starts)):
                piece = _sample(band, down[1], slice(x0, x0 + len(x_weight)), axis=1)
                probabilities = tile_probabilities(predictor, piece, config.flip)
                if total is None:
                    total = np.zeros((height, width, probabilities.shape[-1]), np.float32)
                if len(row_starts) == len(col_starts) == 1:
                    # The whole scaled image: a plain (faster) resize, the same numbers.
                    total += _resized(probabilities, (height, width)).numpy()
                    continue
                weighted = probabilities * (y_weight[:, None, None] * x_weight[None, :, None])
                row_span, weighted = _resize_axis(weighted, y0, up[0], axis=0)
                col_span, weighted = _resize_axis(weighted, x0, up[1], axis=1)
                total[row_span, col_span] += np.asarray(weighted)
    total /= len(config.scales)
    return total
