"""Scaled crops, flips, padding and photometric changes against NumPy references."""

import colorsys

import numpy as np
import pytest
import tensorflow as tf

from scl_tf.data import augment
from scl_tf.data.labels import camvid

SEED = tf.constant([1, 2], tf.int64)
TABLE = camvid().value_to_train_id
PATH = tf.constant("label.png")
NO_FLIP, FLIP = tf.constant(False), tf.constant(True)


def label_and_image(height=40, width=60):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 11, (height, width)).astype(np.uint8)
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    return values, image


def resize_bilinear(image, size):
    """Half-pixel-centre bilinear resize, edge clamped, written out per axis."""

    def axis_weights(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low

    out = image.astype(np.float64)
    low, high, w = axis_weights(out.shape[0], size[0])
    out = out[low] * (1 - w)[:, None, None] + out[high] * w[:, None, None]
    low, high, w = axis_weights(out.shape[1], size[1])
    return out[:, low] * (1 - w)[None, :, None] + out[:, high] * w[None, :, None]


def resize_nearest(values, size):
    """TensorFlow's half-pixel nearest: input index floor((out + 0.5) * (in / out)), in float32
    as TensorFlow computes it (float64 picks other pixels where the product is near a whole)."""

    def indices(size_in, size_out):
        scale = np.float32(size_in) / np.float32(size_out)
        position = (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * scale
        return np.minimum(np.floor(position), size_in - 1).astype(int)

    return values[np.ix_(indices(values.shape[0], size[0]), indices(values.shape[1], size[1]))]


@pytest.mark.parametrize("size_in", [(7, 9), (40, 60), (333, 517)])
def test_resize_nearest_picks_the_pixels_of_tensorflows_nearest(size_in):
    values = np.random.default_rng(3).integers(0, 256, size_in).astype(np.uint8)
    for size_out in [(5, 4), (7, 9), (19, 31), (640, 897)]:
        expected = tf.image.resize(values[..., None], size_out, method="nearest")[..., 0]
        got = augment.resize_nearest(tf.constant(values), tf.constant(size_out))
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, resize_nearest(values, size_out))


@pytest.mark.parametrize("scale", [1.0, 1.7, 0.8])
def test_crop_inside_the_image_matches_reference_resize(scale):
    values, image = label_and_image(80, 100)
    crop = (24, 32)
    for seed in range(4):
        window = augment.crop_window(
            tf.constant([seed, 0]), tf.constant(values.shape), crop, (scale, scale)
        ).numpy()
        top, left, height, width = window
        assert (height, width) == (round(24 / scale), round(32 / scale))
        assert 0 <= top and top + height <= 80 and 0 <= left and left + width <= 100
        got_image = augment.crop_image(image, window, crop, NO_FLIP).numpy()
        expected = resize_bilinear(image[top : top + height, left : left + width], crop)
        np.testing.assert_allclose(got_image, expected, atol=1e-3)
        got_label = augment.crop_label(values, window, crop, NO_FLIP, TABLE, PATH).numpy()
        expected = resize_nearest(values[top : top + height, left : left + width], crop)
        np.testing.assert_array_equal(got_label, TABLE[expected])


def test_flip_mirrors_the_crop_also_when_padded():
    values, image = label_and_image(20, 30)
    for scale in (1.3, 0.6):  # inside, and padded because the scaled image is smaller
        window = augment.crop_window(SEED, tf.constant(values.shape), (24, 32), (scale, scale))
        plain = augment.crop_label(values, window, (24, 32), NO_FLIP, TABLE, PATH).numpy()
        flipped = augment.crop_label(values, window, (24, 32), FLIP, TABLE, PATH).numpy()
        np.testing.assert_array_equal(flipped, plain[:, ::-1])
        plain_image = augment.crop_image(image, window, (24, 32), NO_FLIP).numpy()
        flipped_image = augment.crop_image(image, window, (24, 32), FLIP).numpy()
        np.testing.assert_allclose(flipped_image, plain_image[:, ::-1], atol=1e-3)


def test_small_image_is_padded_with_zero_and_ignore_and_stays_aligned():
    values, _ = label_and_image(10, 12)
    image = np.repeat(values[..., None] * 20 + 5, 3, axis=-1).astype(np.uint8)
    for seed in range(5):
        window = augment.crop_window(
            tf.constant([seed, 1]), tf.constant(values.shape), (32, 32), (1.0, 1.0)
        )
        label = augment.crop_label(values, window, (32, 32), NO_FLIP, TABLE, PATH).numpy()
        cropped = augment.crop_image(image, window, (32, 32), NO_FLIP).numpy()
        assert (label != 255).sum() == 10 * 12  # the whole image, unscaled, inside the crop
        assert (cropped[label == 255] == 0).all()
        np.testing.assert_allclose(
            cropped[..., 0][label != 255], label[label != 255] * 20.0 + 5, atol=1e-3
        )


def test_undefined_value_in_the_crop_names_the_file():
    values, _ = label_and_image(10, 12)
    values[3, 4] = 99
    window = tf.constant([0, 0, 10, 12])
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?s)label.png.*does not define.*99"):
        augment.crop_label(values, window, (10, 12), NO_FLIP, TABLE, PATH)


def test_centered_window_contains_the_center_pixel_near_the_middle():
    for seed, center in enumerate([(20, 30), (0, 0), (39, 59), (5, 50)]):
        top, left, height, width = augment.crop_window(
            tf.constant([seed, 9]), tf.constant([40, 60]), (16, 16), (1.0, 1.0), tf.constant(center)
        ).numpy()
        assert top <= center[0] < top + height and left <= center[1] < left + width
        assert 0 <= top <= 40 - 16 and 0 <= left <= 60 - 16  # moved inside the image
    top, left, _, _ = augment.crop_window(
        SEED, tf.constant([40, 60]), (16, 16), (1.0, 1.0), tf.constant([20, 30])
    ).numpy()
    assert (top + 8, left + 8) == (20, 30)


def test_scale_range_is_respected():
    for seed in range(20):
        _, _, height, width = augment.crop_window(
            tf.constant([seed, 4]), tf.constant([100, 100]), (20, 20), (0.5, 2.0)
        ).numpy()
        assert 10 <= height == width <= 40


NTSC_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def jitter_reference(image, brightness, contrast, saturation, hue):
    """Step by step: scale, blend with the mean grey, blend with the pixel grey, rotate each
    pixel's YIQ chroma (I, Q) by -2 pi hue (red towards yellow); clip once."""
    luma = NTSC_YIQ[0]
    out = image.astype(np.float64) * brightness
    out = contrast * out + (1 - contrast) * (out @ luma).mean()
    out = saturation * out + (1 - saturation) * (out @ luma)[..., None]
    angle = -2 * np.pi * hue
    result = np.empty_like(out)
    for index in np.ndindex(out.shape[:2]):
        y, i, q = NTSC_YIQ @ out[index]
        rotated = [y, np.cos(angle) * i - np.sin(angle) * q, np.sin(angle) * i + np.cos(angle) * q]
        result[index] = np.linalg.solve(NTSC_YIQ, rotated)
    return np.clip(result, 0, 255)


def test_jitter_matrix_matches_stepwise_reference():
    image = np.random.default_rng(1).uniform(0, 255, (6, 7, 3)).astype(np.float32)
    factors = np.array([(1.2, 0.8, 1.1, 0.05), (0.9, 1.2, 0.75, -0.2)], np.float32)
    matrices, mean_weights = augment.jitter_matrix(*tf.unstack(factors, axis=1))
    assert matrices.shape == (2, 3, 3) and mean_weights.shape == (2,)
    mean_grey = (image @ augment.LUMA).mean()
    for matrix, mean_weight, row in zip(matrices.numpy(), mean_weights.numpy(), factors):
        got = np.clip(image @ matrix.T + mean_weight * mean_grey, 0, 255)
        np.testing.assert_allclose(got, jitter_reference(image, *row), atol=1e-3)


def test_color_jitter_matches_stepwise_reference_per_image():
    images = np.random.default_rng(2).uniform(0, 255, (3, 9, 11, 3)).astype(np.float32)
    factors = np.array([(1.3, 0.7, 1.2, 0.1), (0.8, 1.1, 0.6, -0.3), (1, 1, 1, 0)], np.float32)
    got = augment.color_jitter(tf.constant(images), tf.constant(factors)).numpy()
    for image, row, result in zip(images, factors, got):
        np.testing.assert_allclose(result, jitter_reference(image, *row), atol=1e-3)


def test_hue_shift_keeps_grey_and_moves_hue():
    matrix, _ = augment.jitter_matrix(*tf.unstack(tf.constant([[1.0, 1.0, 1.0, 0.25]]), axis=1))
    np.testing.assert_allclose(np.full(3, 100.0) @ matrix[0].numpy().T, 100.0, atol=1e-3)
    red = np.array([200.0, 40.0, 40.0]) @ matrix[0].numpy().T
    hue = colorsys.rgb_to_hsv(*np.clip(red, 0, 255) / 255)[0]
    assert 0.15 < hue < 0.5  # about a quarter turn away from red (0)


def test_photometric_params_ranges_blur_share_and_identity():
    strength, blur_prob = 0.25, 0.3
    params = np.stack(
        [
            augment.photometric_params(tf.constant([seed, 5]), strength, blur_prob).numpy()
            for seed in range(400)
        ]
    )
    assert params.shape == (400, augment.PHOTOMETRIC_PARAMS)
    assert np.all(np.abs(params[:, :3] - 1) <= strength) and np.all(np.abs(params[:, 3]) <= 0.25)
    assert params[:, :4].std(axis=0).min() > 0.1  # every factor varies
    sigmas = params[:, 4]
    blurred = sigmas > 0
    assert abs(blurred.mean() - blur_prob) < 0.07
    assert np.all(
        (sigmas[blurred] >= augment.BLUR_SIGMA_MIN) & (sigmas[blurred] <= augment.BLUR_SIGMA_MAX)
    )
    np.testing.assert_array_equal(
        augment.photometric_params(SEED, strength, blur_prob),
        augment.photometric_params(SEED, strength, blur_prob),
    )
    np.testing.assert_array_equal(augment.photometric_params(SEED, 0.0, 0.0), [1, 1, 1, 0, 0])


def test_apply_photometric_identity_without_change_and_bounded_with():
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)), tf.float32)
    unchanged = tf.stack([augment.photometric_params(SEED, 0.0, 0.0)] * 2)
    np.testing.assert_allclose(augment.apply_photometric(images, unchanged), images, atol=1e-3)
    params = tf.stack(
        [augment.photometric_params(tf.constant([s, 0]), 0.25, 1.0) for s in range(2)]
    )
    changed = augment.apply_photometric(images, params).numpy()
    assert changed.min() >= 0 and changed.max() <= 255
    assert np.abs(changed - images.numpy()).max() > 1


def blur_reference(image, sigma):
    """Separable Gaussian truncated at ceil(3 sigma), reflected edges, as a 2-D sum of taps."""
    height, width = image.shape[:2]
    radius = int(np.ceil(3 * sigma))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    expected = np.zeros_like(image)
    for dy, ky in zip(taps, kernel):
        for dx, kx in zip(taps, kernel):
            expected += (
                ky
                * kx
                * padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
            )
    return expected


def test_gaussian_blur_matches_numpy_reference_with_a_sigma_per_image():
    sigmas = np.array([0.2, 0.0, 0.6, 1.3, 0.31], np.float32)
    images = np.random.default_rng(2).uniform(0, 255, (5, 12, 14, 3)).astype(np.float32)
    got = augment.gaussian_blur(tf.constant(images), tf.constant(sigmas)).numpy()
    np.testing.assert_array_equal(got[1], images[1])  # sigma 0: untouched
    for index in (0, 2, 3, 4):
        np.testing.assert_allclose(
            got[index], blur_reference(images[index], sigmas[index]), rtol=1e-4, atol=1e-3
        )


def test_gaussian_kernels_truncate_at_three_sigma():
    kernels = augment.gaussian_kernels(tf.constant([0.0, 0.3, 1.3])).numpy()
    np.testing.assert_allclose(kernels.sum(axis=1), 1.0, rtol=1e-6)
    center = augment.BLUR_RADIUS
    np.testing.assert_array_equal(np.nonzero(kernels[0])[0], [center])
    np.testing.assert_array_equal(np.nonzero(kernels[1])[0], [center - 1, center, center + 1])
    assert np.count_nonzero(kernels[2]) == 2 * augment.BLUR_RADIUS + 1
