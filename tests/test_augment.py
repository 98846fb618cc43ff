"""Scaled crops, flips, padding and photometric changes against NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from scl_tf.data import augment

SEED = tf.constant([1, 2], tf.int64)


def label_and_image(height=40, width=60):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (height, width)).astype(np.int32)
    image = np.repeat((label * 10.0)[..., None], 3, axis=-1).astype(np.float32)
    return label, image


def round_half_away(x):
    """C's roundf, which crop_and_resize's nearest mode uses."""
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(int)


def reference_crop(label, window, crop, fill):
    """Nearest sample at the crop's pixel centres mapped back to the original image."""
    top, left, bottom, right = window
    rows = top + (np.arange(crop[0]) + 0.5) * (bottom - top) / crop[0] - 0.5
    cols = left + (np.arange(crop[1]) + 0.5) * (right - left) / crop[1] - 0.5
    rows, cols = round_half_away(rows), round_half_away(cols)
    out = np.full(crop, fill, label.dtype)
    inside_r = (rows >= 0) & (rows < label.shape[0])
    inside_c = (cols >= 0) & (cols < label.shape[1])
    out[np.ix_(inside_r, inside_c)] = label[np.ix_(rows[inside_r], cols[inside_c])]
    return out


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.4])  # no rounding ties
def test_label_crop_matches_reference_and_image_stays_aligned(scale):
    label, image = label_and_image()
    crop = (24, 32)
    for seed in range(5):
        window = augment.crop_window(tf.constant([seed, 0]), tf.constant(label.shape), crop,
                                     (scale, scale))
        no_flip = tf.constant(False)
        cropped_label = augment.crop_label(label, window, crop, no_flip).numpy()
        np.testing.assert_array_equal(cropped_label,
                                      reference_crop(label, window.numpy(), crop, 255))
        if scale == 1.0:  # integer offsets: bilinear samples are the pixels themselves
            cropped_image = augment.crop_image(image, window, crop, no_flip).numpy()
            inside = cropped_label != 255
            np.testing.assert_allclose(cropped_image[..., 0][inside],
                                       cropped_label[inside] * 10.0, atol=1e-3)


def test_flip_mirrors_the_crop():
    label, image = label_and_image()
    window = augment.crop_window(SEED, tf.constant(label.shape), (16, 16), (1.3, 1.3))
    plain = augment.crop_label(label, window, (16, 16), tf.constant(False)).numpy()
    flipped = augment.crop_label(label, window, (16, 16), tf.constant(True)).numpy()
    np.testing.assert_array_equal(flipped, plain[:, ::-1])
    plain_image = augment.crop_image(image, window, (16, 16), tf.constant(False)).numpy()
    flipped_image = augment.crop_image(image, window, (16, 16), tf.constant(True)).numpy()
    np.testing.assert_allclose(flipped_image, plain_image[:, ::-1], atol=1e-3)


def test_small_image_is_padded_with_zero_and_ignore():
    label, image = label_and_image(10, 12)
    window = augment.crop_window(SEED, tf.constant(label.shape), (32, 32), (1.0, 1.0))
    cropped_label = augment.crop_label(label, window, (32, 32), tf.constant(False)).numpy()
    cropped_image = augment.crop_image(image + 1, window, (32, 32), tf.constant(False)).numpy()
    assert (cropped_label != 255).sum() == 10 * 12  # the whole image is inside the crop
    assert (cropped_image[cropped_label == 255] == 0).all()


def test_centered_window_contains_the_center_pixel_near_the_middle():
    for seed, center in enumerate([(20, 30), (0, 0), (39, 59), (5, 50)]):
        window = augment.crop_window(tf.constant([seed, 9]), tf.constant([40, 60]), (16, 16),
                                     (1.0, 1.0), tf.constant(center)).numpy()
        top, left = window[:2]
        assert top <= center[0] < top + 16 and left <= center[1] < left + 16
        assert 0 <= top <= 40 - 16 and 0 <= left <= 60 - 16  # moved inside the image
    window = augment.crop_window(SEED, tf.constant([40, 60]), (16, 16), (1.0, 1.0),
                                 tf.constant([20, 30])).numpy()
    assert abs(20 - (window[0] + 8)) <= 1 and abs(30 - (window[1] + 8)) <= 1


def test_scale_range_is_respected():
    for seed in range(20):
        window = augment.crop_window(tf.constant([seed, 4]), tf.constant([100, 100]), (20, 20),
                                     (0.5, 2.0)).numpy()
        size = window[2] - window[0]
        assert 10 - 1e-3 <= size <= 40 + 1e-3


def test_color_jitter_identity_at_zero_and_bounded():
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (8, 8, 3)), tf.float32)
    np.testing.assert_allclose(augment.color_jitter(image, SEED, 0.0), image, atol=0.05)
    jittered = augment.color_jitter(image, SEED, 0.25).numpy()
    assert jittered.min() >= 0 and jittered.max() <= 255
    assert np.abs(jittered - image.numpy()).max() > 1
    np.testing.assert_array_equal(jittered, augment.color_jitter(image, SEED, 0.25))


def test_gaussian_blur_matches_numpy_reference():
    image = np.random.default_rng(2).uniform(0, 255, (12, 14, 3)).astype(np.float32)
    sigma = 0.9
    taps = np.arange(-augment.BLUR_RADIUS, augment.BLUR_RADIUS + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, [(augment.BLUR_RADIUS,) * 2, (augment.BLUR_RADIUS,) * 2, (0, 0)],
                    mode="reflect")
    expected = np.zeros_like(image)
    for dy, ky in zip(taps, kernel):
        for dx, kx in zip(taps, kernel):
            expected += ky * kx * padded[augment.BLUR_RADIUS + dy: augment.BLUR_RADIUS + dy + 12,
                                         augment.BLUR_RADIUS + dx: augment.BLUR_RADIUS + dx + 14]
    np.testing.assert_allclose(augment.gaussian_blur(image, sigma), expected, rtol=1e-4,
                               atol=1e-3)
