"""scl_tf.models.build_model: shapes, strides, weights, serialisation, export, backends."""

import functools
import math
import os
import pathlib
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

# The writer of keras.applications' ImageNet files, to make such a file without downloading.
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

from scl_tf.models import build_model
from scl_tf.models.layers import BN_MOMENTUM, ImageNormalization, ResizeToMatch

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@functools.cache
def cached_model(backbone, output_stride):
    """A model with a narrow head: shapes do not depend on the filter counts, CPU time does."""
    return build_model(backbone, 7, output_stride, aspp_filters=32, decoder_filters=32)


def random_images(height, width, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


def backbone_features(model, images):
    """(low-level, high-level) backbone features of `images` (RGB in [0, 255])."""
    return model.get_layer("backbone")(model.get_layer("normalization")(images))


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, output_stride, height, width",
    [
        ("mobilenetv2", 8, 713, 713),
        ("mobilenetv2", 16, 713, 713),
        ("mobilenetv2", 8, 360, 480),
        ("mobilenetv2", 16, 360, 480),
        ("resnet50", 8, 129, 97),
        ("resnet50", 16, 360, 480),
        ("resnet101", 16, 65, 97),
        ("wrn38", 8, 33, 47),
        ("wrn38", 16, 33, 47),
        ("efficientnet_lite0", 8, 129, 97),
        ("efficientnet_lite0", 16, 360, 480),
    ],
)
def test_logits_at_input_resolution_and_feature_strides(backbone, output_stride, height, width):
    model = cached_model(backbone, output_stride)
    images = random_images(height, width)
    logits = model(images)
    assert logits.shape == (1, height, width, 7) and logits.dtype == "float32"
    assert np.isfinite(logits).all()

    low, high = backbone_features(model, images)
    low_level_stride = 2 if backbone == "wrn38" else 4
    # keras.applications' MobileNetV2 pads (0, 1) before its strided convolutions: its maps
    # round down on odd sizes, where "same" padding rounds up.
    rounding = math.floor if backbone == "mobilenetv2" else math.ceil
    for feature, stride in ((low, low_level_stride), (high, output_stride)):
        expected = [height, width]
        for _ in range(int(math.log2(stride))):
            expected = [rounding(size / 2) for size in expected]
        assert tuple(feature.shape[1:3]) == tuple(expected), (feature.shape, stride)


@pytest.mark.slow
def test_dilation_replaces_strides():
    backbone = cached_model("resnet50", 8).get_layer("backbone")
    assert backbone.get_layer("conv4_block1_1_conv").strides == (1, 1)
    assert backbone.get_layer("conv4_block3_2_conv").dilation_rate == (2, 2)
    assert backbone.get_layer("conv5_block1_0_conv").strides == (1, 1)
    assert backbone.get_layer("conv5_block2_2_conv").dilation_rate == (4, 4)
    assert backbone.get_layer("conv3_block1_1_conv").strides == (2, 2)
    aspp_rates = [
        cached_model("resnet50", 8).get_layer(f"aspp_conv3x3_{i}").dilation_rate for i in (1, 2, 3)
    ]
    assert aspp_rates == [(12, 12), (24, 24), (36, 36)]


@pytest.mark.slow
def test_lite0_dilation_keeps_the_stride_of_the_later_stages():
    def depthwise(output_stride, index):
        backbone = cached_model("efficientnet_lite0", output_stride).get_layer("backbone")
        layer = backbone.get_layer(f"blocks_{index}_depthwise_conv")
        return layer.strides, layer.dilation_rate

    # Block 5 opens the stride-16 stage, block 11 the stride-32 one.
    assert depthwise(8, 3) == ((2, 2), (1, 1))
    assert depthwise(8, 5) == ((1, 1), (2, 2)) and depthwise(8, 10) == ((1, 1), (2, 2))
    assert depthwise(8, 11) == ((1, 1), (4, 4)) and depthwise(8, 15) == ((1, 1), (4, 4))
    assert depthwise(16, 5) == ((2, 2), (1, 1)) and depthwise(16, 11) == ((1, 1), (2, 2))


@pytest.mark.slow
def test_low_level_stride_is_configurable():
    model = build_model("mobilenetv2", 3, 16, low_level_stride=2)
    low, _ = backbone_features(model, random_images(64, 96))
    assert low.shape == (1, 32, 48, 96)


@pytest.mark.slow
def test_decoder_convolutions_are_configurable():
    def decoder_kernels(model):
        return [
            layer.kernel.shape
            for layer in model.layers
            if layer.name.startswith("decoder_conv") and isinstance(layer, keras.layers.Conv2D)
        ]

    paper = build_model("mobilenetv2", 3, 16, aspp_filters=16, decoder_filters=8)
    light = build_model(
        "mobilenetv2",
        3,
        16,
        aspp_filters=16,
        decoder_filters=8,
        decoder_convs=1,
        decoder_kernel_size=1,
    )
    assert decoder_kernels(paper) == [(3, 3, 16 + 48, 8), (3, 3, 8, 8)]
    assert decoder_kernels(light) == [(1, 1, 16 + 48, 8)]
    assert light(random_images(64, 96)).shape == (1, 64, 96, 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"backbone": "resnet18"}, ValueError, "backbone='resnet18'"),
        ({"output_stride": 4}, ValueError, "output_stride=4"),
        ({"low_level_stride": 8}, ValueError, "low_level_stride=8"),
        ({"num_classes": 0}, ValueError, "num_classes=0"),
        ({"decoder_convs": 0}, ValueError, "decoder_convs=0"),
        ({"decoder_kernel_size": 5}, ValueError, "decoder_kernel_size=5"),
        ({"weights": "/nonexistent/model.weights.h5"}, FileNotFoundError, "/nonexistent/model"),
        ({"weights": "model.ckpt"}, ValueError, "weights='model.ckpt'"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    arguments = {"backbone": "mobilenetv2", "num_classes": 3, **kwargs}
    with pytest.raises(error, match=match):
        build_model(**arguments)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, application, preprocess, high_level_layer",
    [
        (
            "resnet50",
            keras.applications.ResNet50,
            keras.applications.resnet50.preprocess_input,
            "conv5_block3_out",
        ),
        (
            "mobilenetv2",
            keras.applications.MobileNetV2,
            keras.applications.mobilenet_v2.preprocess_input,
            "block_16_project_BN",
        ),
    ],
)
def test_keras_applications_imagenet_h5_loads(
    backbone, application, preprocess, high_level_layer, tmp_path
):
    """A notop `.h5` as keras.applications ships it loads; undilated outputs are identical."""
    reference = application(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(1)
    for variable in reference.weights:  # random BN statistics too, so a mix-up would show
        values = rng.normal(0, 0.05, variable.shape) + ("variance" in variable.path)
        variable.assign(values.astype("float32"))
    path = tmp_path / f"{backbone}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, reference)

    undilated = build_model(backbone, 3, output_stride=32, weights=path)
    images = random_images(65, 97, batch=2)
    expected = keras.Model(reference.input, reference.get_layer(high_level_layer).output)(
        preprocess(images.copy())
    )
    _, high = backbone_features(undilated, images)
    np.testing.assert_allclose(high, expected, rtol=1e-5, atol=1e-5)

    dilated = build_model(backbone, 3, output_stride=8, weights=path).get_layer("backbone")
    for layer in (layer for layer in dilated.layers if layer.weights):
        for ours, theirs in zip(
            layer.weights, reference.get_layer(layer.name).weights, strict=True
        ):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.slow
def test_backbone_h5_missing_layers_is_an_error(tmp_path):
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    truncated = keras.Model(reference.input, reference.get_layer("block_5_add").output)
    path = tmp_path / "truncated.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, truncated)
    with pytest.raises(ValueError, match="block_6_expand"):
        build_model("mobilenetv2", 3, weights=path)


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
        (
            "torch",
            functools.partial(keras.applications.imagenet_utils.preprocess_input, mode="torch"),
        ),
        ("lite", lambda images: (images - 127.0) / 128.0),
    ],
)
def test_normalization_matches_keras_applications(mode, reference):
    images = random_images(5, 7, batch=2)
    np.testing.assert_allclose(
        ImageNormalization(mode)(images), reference(images.copy()), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    "layer",
    [
        ImageNormalization("torch", name="norm", dtype="float32"),
        ResizeToMatch("nearest", name="resize"),
    ],
)
def test_custom_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


@pytest.mark.slow
def test_keras_file_and_full_weights_reload_identically_and_warm_start(tmp_path):
    model = cached_model("mobilenetv2", 16)
    images = random_images(65, 97)
    expected = model(images)

    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(reloaded(images), expected)

    model.save_weights(tmp_path / "model.weights.h5")
    for weights in ("model.weights.h5", "model.keras"):
        rebuilt = build_model(
            "mobilenetv2",
            7,
            16,
            weights=tmp_path / weights,
            aspp_filters=32,
            decoder_filters=32,
        )
        np.testing.assert_array_equal(rebuilt(images), expected)


@pytest.mark.slow
def test_saved_model_export_accepts_any_size(tmp_path):
    model = cached_model("mobilenetv2", 16)
    model.export(tmp_path / "saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    for images in (random_images(65, 97), random_images(40, 33, batch=2)):
        np.testing.assert_allclose(served.serve(images), model(images), rtol=1e-5, atol=1e-5)


def batch_norms(model):
    layers = model.layers + model.get_layer("backbone").layers
    return [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet50", "wrn38", "efficientnet_lite0"])
def test_sync_batchnorm_flag_and_momentum_reach_every_batchnorm(backbone):
    synchronized = batch_norms(build_model(backbone, 3, 16, sync_batchnorm=True))
    assert len(synchronized) > 30 and all(bn.synchronized for bn in synchronized)
    # keras.applications' own momenta (0.999 in MobileNetV2) are replaced by the model's one.
    assert {bn.momentum for bn in synchronized} == {BN_MOMENTUM}
    assert not any(bn.synchronized for bn in batch_norms(cached_model(backbone, 16)))


@pytest.mark.slow
def test_logits_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("mobilenetv2", 3, 16)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("backbone").get_layer("Conv1").compute_dtype == "bfloat16"
    images = random_images(33, 47)
    upsampled = keras.Model(model.input, model.get_layer("decoder_upsample").output)(images)
    assert upsampled.dtype == "bfloat16"
    assert model(images).dtype == "float32"


@pytest.mark.slow
def test_wrn38_builds_and_runs_under_jax():
    script = (
        "import keras, numpy as np\n"
        "from scl_tf.models import build_model\n"
        "model = build_model('wrn38', 5, output_stride=8)\n"
        "logits = model(np.zeros((1, 33, 47, 3), 'float32'))\n"
        "print(keras.backend.backend(), tuple(logits.shape), logits.dtype)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "jax (1, 33, 47, 5) float32"
