"""DeepLabV3+ (Chen et al., 2018) on the five backbones, and `build_model`.

Head, as in DeepWV3Plus (Zhu et al., 2019), the network the paper trains:
- ASPP on the high-level feature: a 1x1 convolution, three 3x3 convolutions dilated at
  (6, 12, 18) x 16 / output_stride, and image pooling (global average, 1x1 convolution,
  broadcast back); concatenated and projected by a 1x1 convolution.
- Decoder: the low-level feature reduced to 48 channels by a 1x1 convolution, concatenated
  with the bilinearly upsampled ASPP output, then two 3x3 convolutions (`decoder_convs`,
  `decoder_kernel_size`: one 1x1 convolution is keras-hub's lighter DeepLabV3Plus head).
- A 1x1 classifier, then bilinear upsampling to the input size.
Every convolution but the classifier is followed by BatchNormalization and ReLU; DeepWV3Plus
leaves the two 1x1 projections (`bot_fine`, `bot_aspp`) without them, Chen et al. and
keras-hub normalise them, and so do we.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import keras

from scl_tf.models.dilation import SUPPORTED_OUTPUT_STRIDES
from scl_tf.models.efficientnet_lite import NORMALIZATION as LITE_NORMALIZATION
from scl_tf.models.efficientnet_lite import build_efficientnet_lite0
from scl_tf.models.imagenet import IMAGENET, imagenet_weights_file
from scl_tf.models.layers import ImageNormalization, ResizeToMatch, batch_norm
from scl_tf.models.mobilenet import NORMALIZATION as MOBILENET_NORMALIZATION
from scl_tf.models.mobilenet import build_mobilenetv2
from scl_tf.models.resnet import NORMALIZATION as RESNET_NORMALIZATION
from scl_tf.models.resnet import build_resnet
from scl_tf.models.weights import check_weights_path, load_weights
from scl_tf.models.wider_resnet import NORMALIZATION as WRN_NORMALIZATION
from scl_tf.models.wider_resnet import build_wider_resnet38


class _Backbone(NamedTuple):
    build: Callable[..., keras.Model]  # (output_stride, low_level_stride, sync_batchnorm)
    normalization: str  # ImageNormalization mode matching its ImageNet weights
    low_level_stride: int  # default stride of the decoder's low-level feature


BACKBONES = {
    # Stride-2 low-level feature for WRN38, as in the paper and DeepWV3Plus.
    "wrn38": _Backbone(build_wider_resnet38, WRN_NORMALIZATION, 2),
    "resnet50": _Backbone(functools.partial(build_resnet, "resnet50"), RESNET_NORMALIZATION, 4),
    "resnet101": _Backbone(functools.partial(build_resnet, "resnet101"), RESNET_NORMALIZATION, 4),
    "mobilenetv2": _Backbone(build_mobilenetv2, MOBILENET_NORMALIZATION, 4),
    "efficientnet_lite0": _Backbone(build_efficientnet_lite0, LITE_NORMALIZATION, 4),
}
SUPPORTED_LOW_LEVEL_STRIDES = (2, 4)
SUPPORTED_DECODER_KERNEL_SIZES = (1, 3)
_ASPP_RATES_AT_STRIDE_16 = (6, 12, 18)
_LOW_LEVEL_FILTERS = 48


def _conv_bn_relu(x, filters, kernel_size, name, sync_batchnorm, dilation_rate=1):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)
    x = batch_norm(f"{name}_bn", sync_batchnorm)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def aspp(features, output_stride, filters, sync_batchnorm=False):
    """Atrous spatial pyramid pooling: [B, h, w, C] -> [B, h, w, filters]."""
    branches = [_conv_bn_relu(features, filters, 1, "aspp_conv1x1", sync_batchnorm)]
    for i, rate in enumerate(_ASPP_RATES_AT_STRIDE_16, start=1):
        branches.append(
            _conv_bn_relu(
                features,
                filters,
                3,
                f"aspp_conv3x3_{i}",
                sync_batchnorm,
                dilation_rate=rate * 16 // output_stride,
            )
        )
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(features)
    pooled = _conv_bn_relu(pooled, filters, 1, "aspp_pool_conv", sync_batchnorm)
    # Bilinear resizing of a 1x1 map is a broadcast to the feature's (dynamic) size.
    branches.append(ResizeToMatch(name="aspp_pool_broadcast")(pooled, features))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    return _conv_bn_relu(x, filters, 1, "aspp_project", sync_batchnorm)


def decoder(context, low_level, filters, sync_batchnorm=False, num_convs=2, kernel_size=3):
    """DeepLabV3+ decoder: ([B, h, w, C], [B, H', W', C']) -> [B, H', W', filters].

    The concatenated features pass through `num_convs` convolutions of `kernel_size`.
    """
    low_level = _conv_bn_relu(low_level, _LOW_LEVEL_FILTERS, 1, "decoder_low_level", sync_batchnorm)
    context = ResizeToMatch(name="decoder_upsample")(context, low_level)
    x = keras.layers.Concatenate(name="decoder_concat")([context, low_level])
    for index in range(1, num_convs + 1):
        x = _conv_bn_relu(x, filters, kernel_size, f"decoder_conv{index}", sync_batchnorm)
    return x


def build_model(
    backbone,
    num_classes,
    output_stride=8,
    weights=None,
    *,
    low_level_stride=None,
    sync_batchnorm=False,
    aspp_filters=256,
    decoder_filters=256,
    decoder_convs=2,
    decoder_kernel_size=3,
):
    """Builds DeepLabV3+ for semantic segmentation.

    Args:
        backbone: `"wrn38"` (the paper's), `"resnet50"`, `"resnet101"`, `"mobilenetv2"` or
            `"efficientnet_lite0"`.
        num_classes: number of output channels.
        output_stride: 8 (paper), 16 or 32: input size / size of the ASPP's feature map.
        weights: None (random); `"imagenet"`: the backbone's ImageNet weights (see
            `scl_tf.models.imagenet`: Lite0 from an installed package, keras.applications'
            files through Keras' cache); a full model (`*.weights.h5` from
            `model.save_weights`, or `*.keras` from `model.save`, e.g. a run's model.keras);
            or ImageNet backbone weights `*.h5` in keras.applications' layout
            (keras.applications' `*_notop.h5` files; `tools/convert_wrn38_weights.py` output
            for WRN38).
        low_level_stride: stride of the decoder's low-level feature, 2 or 4; default 2 for
            WRN38 (paper), 4 for the others.
        sync_batchnorm: synchronized BatchNormalization everywhere (sync BN under a
            `tf.distribute` strategy, as in the paper).
        aspp_filters: channels of the ASPP branches and projection.
        decoder_filters: channels of the decoder's convolutions.
        decoder_convs: convolutions after the decoder's concatenation, >= 1; 2 in DeepLabV3+
            and the paper.
        decoder_kernel_size: their kernel size, 3 (DeepLabV3+, the paper) or 1 (with
            `decoder_convs=1`: keras-hub's DeepLabV3Plus head; the whole ResNet-50 model at
            output stride 32 then has 43% fewer FLOPs).

    Returns:
        `keras.Model`: float RGB [B, H, W, 3] in [0, 255], any H and W ->
        float32 logits [B, H, W, num_classes]. The backbone is the nested model
        `model.get_layer("backbone")`; the input normalisation for its ImageNet weights
        is inside the model.

    Raises:
        ValueError: unknown backbone, unsupported output or low-level stride, decoder
            convolutions or kernel size, bad weights name.
        FileNotFoundError: `weights` names a missing file.
        scl_tf.models.imagenet.ImageNetWeightsError: `weights="imagenet"` cannot be had.
    """
    if backbone not in BACKBONES:
        raise ValueError(
            f"build_model: unknown backbone={backbone!r}; expected one of {sorted(BACKBONES)}"
        )
    if output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(
            f"build_model: output_stride={output_stride!r} is not supported; "
            f"expected one of {SUPPORTED_OUTPUT_STRIDES}"
        )
    spec = BACKBONES[backbone]
    if low_level_stride is None:
        low_level_stride = spec.low_level_stride
    if low_level_stride not in SUPPORTED_LOW_LEVEL_STRIDES:
        raise ValueError(
            f"build_model: low_level_stride={low_level_stride!r} is not "
            f"supported; expected one of {SUPPORTED_LOW_LEVEL_STRIDES}"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_model: num_classes={num_classes!r} must be a positive int")
    if not isinstance(decoder_convs, int) or decoder_convs < 1:
        raise ValueError(f"build_model: decoder_convs={decoder_convs!r} must be a positive int")
    if decoder_kernel_size not in SUPPORTED_DECODER_KERNEL_SIZES:
        raise ValueError(
            f"build_model: decoder_kernel_size={decoder_kernel_size!r} is not supported; "
            f"expected one of {SUPPORTED_DECODER_KERNEL_SIZES}"
        )
    # Fail before the slow build.
    if weights == IMAGENET:
        weights = imagenet_weights_file(backbone)
    elif weights is not None:
        weights = check_weights_path(weights)

    features = spec.build(output_stride, low_level_stride, sync_batchnorm)
    inputs = keras.Input((None, None, 3), name="image")
    # Normalise in float32: [0, 255] values lose precision in float16.
    x = ImageNormalization(spec.normalization, dtype="float32", name="normalization")(inputs)
    low_level, high_level = features(x)
    x = aspp(high_level, output_stride, aspp_filters, sync_batchnorm)
    x = decoder(x, low_level, decoder_filters, sync_batchnorm, decoder_convs, decoder_kernel_size)
    # float32 logits under any mixed-precision policy, so losses see float32.
    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    logits = ResizeToMatch(dtype="float32", name="logits_upsample")(logits, inputs)
    model = keras.Model(inputs, logits, name=f"deeplabv3plus_{backbone}")
    if weights is not None:
        load_weights(model, weights)
    return model
