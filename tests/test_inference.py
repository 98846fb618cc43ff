"""Multi-scale, flip and tiled inference on models whose output is known."""

import tracemalloc

import keras
import numpy as np
import pytest
import tensorflow as tf

from scl_tf.config import ConfigError, InferenceConfig
from scl_tf.eval import inference
from scl_tf.eval.predictors import keras_predictor

NUM_CLASSES = 5
MIXING = np.random.default_rng(0).normal(size=(3, NUM_CLASSES)).astype(np.float32) / 40.0


def softmax(logits):
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def pointwise(images):
    """A network with a 1-pixel receptive field: softmax of a linear map of each pixel."""
    return softmax(images @ MIXING).astype(np.float32)


def expected_pointwise(image, scales):
    """Whole-image reference: mean over scales of resize(pointwise(resize(image)))."""
    height, width = image.shape[:2]
    maps = []
    for scale in scales:
        size = inference.scaled_size((height, width), scale)
        scaled = tf.image.resize(image, size).numpy() if size != (height, width) else image
        maps.append(tf.image.resize(pointwise(scaled[None])[0], (height, width)).numpy())
    return np.mean(maps, axis=0)


def random_image(seed=0, height=37, width=53):
    return np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)


def test_tile_starts_cover_the_axis_with_overlap():
    assert inference.tile_starts(40, None, None) == [0]
    assert inference.tile_starts(40, 64, 43) == [0]
    assert inference.tile_starts(25, 10, 7) == [0, 7, 14, 15]
    for length, tile, stride in ((2048, 1024, 683), (4096, 1024, 683), (1025, 1024, 683)):
        starts = inference.tile_starts(length, tile, stride)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize(
    "length,tile,stride", [(40, None, None), (25, 10, 7), (100, 30, 11), (31, 30, 30)]
)
def test_tile_weights_sum_to_one_at_every_pixel(length, tile, stride):
    starts = inference.tile_starts(length, tile, stride)
    weights = inference.tile_weights(length, tile, starts)
    total = np.zeros(length)
    for start, weight in zip(starts, weights):
        assert np.all(weight > 0)
        total[start : start + len(weight)] += weight
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)


@pytest.mark.parametrize("in_size,out_size", [(17, 40), (40, 17), (33, 33), (1, 5), (64, 32)])
def test_bilinear_taps_reproduce_tf_resize(in_size, out_size):
    values = np.random.default_rng(1).random((in_size, 3)).astype(np.float32)
    lower, upper, lerp = inference.bilinear_taps(out_size, in_size)
    ours = values[lower] + lerp[:, None] * (values[upper] - values[lower])
    theirs = tf.image.resize(values[:, None], (out_size, 1)).numpy()[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize(
    "config",
    [
        InferenceConfig(),
        InferenceConfig(scales=(0.5, 1.0, 2.0), flip=True),
        InferenceConfig(scales=(0.5, 1.0, 2.0), flip=True, tile=(16, 16)),
        InferenceConfig(scales=(0.75, 1.5), tile=(9, 13), tile_stride=(5, 7)),
    ],
)
def test_scales_flip_and_tiles_give_the_whole_image_result(config):
    """With a 1-pixel receptive field, tiles and flips change nothing: the result is the
    whole-image multi-scale average, computed here with tf.image.resize."""
    image = random_image()
    result = inference.predict_probabilities(pointwise, image, config)
    np.testing.assert_allclose(result, expected_pointwise(image, config.scales), atol=2e-6)
    np.testing.assert_allclose(result.sum(axis=-1), 1.0, atol=1e-5)


def test_flip_averages_the_mirrored_prediction():
    """A model that prefers class 0 towards the right edge: with flip, each pixel averages
    its own prediction and the mirror pixel's."""

    def rightward(images):
        width = images.shape[2]
        logits = np.zeros(images.shape[:3] + (2,), np.float32)
        logits[..., 0] = 4.0 * np.arange(width) / width
        return softmax(logits)

    image = random_image(height=6, width=9)
    plain = rightward(image[None])[0]
    flipped = inference.predict_probabilities(rightward, image, InferenceConfig(flip=True))
    np.testing.assert_allclose(flipped, 0.5 * (plain + plain[:, ::-1]), atol=1e-6)
    np.testing.assert_allclose(inference.predict_probabilities(rightward, image), plain)


def test_tiled_keras_model_equals_whole_image_where_receptive_field_allows():
    """A Keras network of 1x1 convolutions (receptive field 1 pixel) run through the Keras
    predictor: tiles at 3 scales with flip equal the untiled run."""
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(8, 1, activation="relu"),
            keras.layers.Conv2D(NUM_CLASSES, 1),
        ]
    )
    predictor = keras_predictor(model, "test model")
    image = random_image(seed=2, height=30, width=44)
    whole = inference.predict_probabilities(
        predictor, image, InferenceConfig(scales=(0.5, 1.0, 2.0), flip=True)
    )
    tiled = inference.predict_probabilities(
        predictor, image, InferenceConfig(scales=(0.5, 1.0, 2.0), flip=True, tile=(12, 16))
    )
    np.testing.assert_allclose(tiled, whole, atol=2e-6)


def test_tiles_bound_the_network_input_and_the_memory():
    """At scale 2 of a 256x512 image with 64x64 tiles the network never sees more than a tile,
    and NumPy's peak memory is the input, the output and a fifth of the probability map that
    the scale would take whole. (TensorFlow's buffers, invisible to tracemalloc, are measured
    with the real network by benchmarks/bench_inference.py --memory.)"""
    seen = []

    def recording(images):
        seen.append(images.shape[1:3])
        return pointwise(images)

    image = random_image(height=256, width=512)
    config = InferenceConfig(scales=(2.0,), tile=(64, 64))
    tracemalloc.start()
    result = inference.predict_probabilities(recording, image, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert max(seen) == (64, 64) and len(seen) == 12 * 24
    scale_map = 512 * 1024 * NUM_CLASSES * 4
    output_map = result.nbytes
    assert peak < output_map + image.nbytes + 0.2 * scale_map, (peak, scale_map)


def test_wrong_output_size_is_reported():
    with pytest.raises(ValueError, match="at the input's size"):
        inference.predict_probabilities(lambda images: pointwise(images[:, ::2]), random_image())


def test_config_checks_name_the_flag():
    with pytest.raises(ConfigError, match="--scales"):
        InferenceConfig(scales=(0.0,))
    with pytest.raises(ConfigError, match="--tile_stride"):
        InferenceConfig(tile=(8, 8), tile_stride=(9, 4))
    assert InferenceConfig(tile=(1024, 1024)).stride == (683, 683)
