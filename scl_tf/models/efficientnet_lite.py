"""EfficientNet-Lite0 (Tan & Le, 2019; the Lite variant of TensorFlow's reference code), dilated.

Lite means: no squeeze-excite, ReLU6 everywhere, stem (32 channels) and head (1280) not
scaled. Every convolution uses TensorFlow's "same" padding and every BatchNormalization
epsilon 1e-3, as in the TensorFlow training the ImageNet weights come from; input
`(RGB - 127) / 128`. With these the converted ImageNet classifier reproduces the original
(tests/test_efficientnet_lite.py). keras-hub's EfficientNet pads its depthwise convolutions
symmetrically (PyTorch's convention), which shifts every strided layer by a pixel on even
sizes, and it has no output-stride control, hence this file.

As for MobileNetV2, the high-level feature is the last MBConv block (320 channels), not the
1x1 head to 1280 channels, which would make the ASPP four times as expensive; the low-level
feature is the expansion of the first block at the next stride (144 channels at stride 4).

Layer names are the PyTorch module paths of the ImageNet file (EfficientNet-PyTorch's layout)
with "." -> "_" and leading underscores dropped (`_blocks.3._expand_conv` ->
`blocks_3_expand_conv`, `_conv_stem` -> `conv_stem`), which the conversion relies on.
"""

import keras

from scl_tf.models.dilation import stage_dilation
from scl_tf.models.layers import ImageNormalization, batch_norm, feature_pair

NORMALIZATION = "lite"
BN_EPSILON = 1e-3
IMAGENET_CLASSES = 1000

# EfficientNet-B0's stages (Lite0 scales neither width nor depth):
# (kernel size, stride of the first block, expansion ratio, output channels, blocks).
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_DROPOUT = 0.2
# Low-level feature per stride: the expansion of the first block at the next stride.
_LOW_LEVEL_LAYERS = {2: "blocks_1_expand_relu", 4: "blocks_3_expand_relu"}
_HIGH_LEVEL_LAYER = "blocks_15_bn2"


def _conv(filters, kernel_size, name, strides=1):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name
    )


def _bn_relu6(x, bn_name, relu_name, sync_batchnorm):
    x = batch_norm(bn_name, sync_batchnorm, epsilon=BN_EPSILON)(x)
    return keras.layers.ReLU(max_value=6.0, name=relu_name)(x)


def _mbconv(x, index, kernel_size, strides, dilation_rate, expand_ratio, filters, sync):
    """Inverted residual block `_blocks.{index}`: [B, H, W, C] -> [B, H/strides, W/strides, F]."""
    name = f"blocks_{index}"
    inputs = x
    channels = x.shape[-1]
    if expand_ratio != 1:
        x = _conv(channels * expand_ratio, 1, f"{name}_expand_conv")(x)
        x = _bn_relu6(x, f"{name}_bn0", f"{name}_expand_relu", sync)
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=False,
        name=f"{name}_depthwise_conv",
    )(x)
    x = _bn_relu6(x, f"{name}_bn1", f"{name}_depthwise_relu", sync)
    x = _conv(filters, 1, f"{name}_project_conv")(x)
    x = batch_norm(f"{name}_bn2", sync, epsilon=BN_EPSILON)(x)
    if strides == 1 and channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _features(x, output_stride, sync_batchnorm):
    """Stem and the 16 MBConv blocks: [B, H, W, 3] normalised -> the last block's output."""
    x = _conv(_STEM_FILTERS, 3, "conv_stem", strides=2)(x)
    x = _bn_relu6(x, "bn0", "stem_relu", sync_batchnorm)
    stride, index = 2, 0
    for kernel_size, first_stride, expand_ratio, filters, blocks in STAGES:
        stage_stride = stride * first_stride
        rate = stage_dilation(stage_stride, output_stride)
        for block in range(blocks):
            # A stage past the output stride keeps its resolution and dilates instead.
            strides = first_stride if block == 0 and rate == 1 else 1
            x = _mbconv(x, index, kernel_size, strides, rate, expand_ratio, filters, sync_batchnorm)
            index += 1
        stride = stage_stride
    return x


def build_efficientnet_lite0(output_stride, low_level_stride, sync_batchnorm=False):
    """The dilated EfficientNet-Lite0 feature extractor, as `build_model` wants a backbone.

    `output_stride` is 8, 16 or 32 (the undilated ImageNet network), `low_level_stride` 2 or 4;
    `sync_batchnorm` makes every BatchNormalization synchronized.

    Returns:
        `keras.Model` named `"backbone"` taking [B, H, W, 3] as `(RGB - 127) / 128`, giving the
        low-level [B, ~H/low_level_stride, ~W/low_level_stride, 96 or 144] and the high-level
        [B, ~H/output_stride, ~W/output_stride, 320] features (sizes rounded up).
    """
    inputs = keras.Input((None, None, 3))
    features = keras.Model(inputs, _features(inputs, output_stride, sync_batchnorm))
    return feature_pair(features, _LOW_LEVEL_LAYERS[low_level_stride], _HIGH_LEVEL_LAYER)


def build_efficientnet_lite0_classifier():
    """Builds the ImageNet classifier the weights come from (to check a conversion).

    Returns:
        `keras.Model`: float RGB [B, H, W, 3] in [0, 255] (224x224 in ImageNet training) ->
        float32 logits [B, 1000] over the ImageNet-1k classes.
    """
    inputs = keras.Input((None, None, 3), name="image")
    x = ImageNormalization(NORMALIZATION, name="normalization")(inputs)
    x = _features(x, output_stride=32, sync_batchnorm=False)
    x = _conv(_HEAD_FILTERS, 1, "conv_head")(x)
    x = _bn_relu6(x, "bn1", "head_relu", sync_batchnorm=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(_DROPOUT, name="dropout")(x)
    logits = keras.layers.Dense(IMAGENET_CLASSES, name="fc")(x)
    return keras.Model(inputs, logits, name="efficientnet_lite0")
