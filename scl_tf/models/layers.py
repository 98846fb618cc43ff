"""Layers shared by the backbones and the DeepLabV3+ head.

Both custom layers are registered Keras serializables, so a `.keras` file of any model built
here reloads without `custom_objects`.
"""

import keras
from keras import ops

# `keras.ops.image.resize` checks `size[0] <= 0` in Python, which a symbolic size cannot answer:
# it fails whenever TensorFlow traces a graph with unknown height and width (functional model
# construction, `model.export`, tf2onnx). The backend kernel it wraps takes a tensor size.
from keras.src.backend import image as backend_image

# Per-channel `x * scale + offset` on RGB input in [0, 255], named after the `mode` argument of
# `keras.applications.imagenet_utils.preprocess_input`, each matching one family of ImageNet
# weights:
#   "caffe": BGR minus the ImageNet mean (keras.applications ResNet50 / ResNet101).
#   "tf":    [-1, 1] (keras.applications MobileNetV2).
#   "torch": RGB in [0, 1], ImageNet mean / std (PyTorch-trained WRN38 of mapillary / Zhu et al.).
#   "lite":  (RGB - 127) / 128 (TensorFlow's EfficientNet-Lite, whose Lite0 we convert).
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_NORMALIZATIONS = {
    "caffe": ((1.0, 1.0, 1.0), (-103.939, -116.779, -123.68)),
    "tf": ((1 / 127.5,) * 3, (-1.0,) * 3),
    "torch": (
        tuple(1 / (255.0 * s) for s in _IMAGENET_STD_RGB),
        tuple(-m / s for m, s in zip(_IMAGENET_MEAN_RGB, _IMAGENET_STD_RGB, strict=True)),
    ),
    "lite": ((1 / 128,) * 3, (-127 / 128,) * 3),
}


@keras.saving.register_keras_serializable(package="scl_tf")
class ImageNormalization(keras.layers.Layer):
    """Maps RGB images in [0, 255] to a backbone's ImageNet input convention.

    Args:
        mode: `"caffe"`, `"tf"` or `"torch"`, as `keras.applications`' `preprocess_input`,
            or `"lite"`, TensorFlow's EfficientNet-Lite convention.

    Call arguments:
        inputs: float [B, H, W, 3], RGB in [0, 255].

    Returns:
        [B, H, W, 3] normalised (BGR for `"caffe"`).
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in _NORMALIZATIONS:
            raise ValueError(
                f"ImageNormalization: unknown mode={mode!r}; expected one of "
                f"{sorted(_NORMALIZATIONS)}"
            )
        self.mode = mode

    def call(self, inputs):
        if self.mode == "caffe":
            inputs = ops.flip(inputs, axis=-1)
        scale, offset = _NORMALIZATIONS[self.mode]
        scale = ops.convert_to_tensor(scale, dtype=self.compute_dtype)
        offset = ops.convert_to_tensor(offset, dtype=self.compute_dtype)
        return inputs * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="scl_tf")
class ResizeToMatch(keras.layers.Layer):
    """Resizes a feature map to the height and width of a reference tensor.

    The size is read from the reference's dynamic shape, so a model using this layer accepts
    any input size, also once exported (the fixed-factor `UpSampling2D(interpolation=
    "bilinear")` cannot be traced with unknown H, W; see DESIGN.md).

    Args:
        interpolation: `"bilinear"` or `"nearest"`; half-pixel centres, no antialiasing.

    Call arguments:
        inputs: [B, h, w, C].
        reference: [B, H, W, ...]; only its dynamic height and width are used.

    Returns:
        [B, H, W, C].
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                f"ResizeToMatch: unknown interpolation={interpolation!r}; "
                "expected 'bilinear' or 'nearest'"
            )
        self.interpolation = interpolation

    def call(self, inputs, reference):
        size = ops.shape(reference)[1:3]
        resized = backend_image.resize(inputs, size, interpolation=self.interpolation)
        # TensorFlow resizes float16 / bfloat16 in float32; keep the mixed-precision dtype.
        return ops.cast(resized, inputs.dtype)

    def compute_output_shape(self, inputs_shape, reference_shape):
        return (inputs_shape[0], reference_shape[1], reference_shape[2], inputs_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


# Keras momentum of every BatchNormalization's moving statistics: PyTorch's default (0.1 there),
# which the paper trained with. keras.applications' MobileNetV2 uses 0.999: its moving
# statistics then lag ~1000 steps behind the weights, and a 1000-step run scored 28% pixel
# accuracy in inference mode against 76% with batch statistics.
BN_MOMENTUM = 0.9


def batch_norm(name, synchronized=False, epsilon=1e-5):
    """BatchNormalization with momentum BN_MOMENTUM and PyTorch's default epsilon 1e-5.

    Used by WRN38 (whose converted ImageNet statistics were estimated with these settings), by
    EfficientNet-Lite0 (`epsilon=1e-3`, its ImageNet training's) and by the DeepLabV3+ head.
    `synchronized=True` averages batch statistics over the replicas of a `tf.distribute`
    strategy (sync BN, as in the paper).
    """
    return keras.layers.BatchNormalization(
        epsilon=epsilon, momentum=BN_MOMENTUM, synchronized=synchronized, name=name
    )


def feature_pair(model, low_level_layer, high_level_layer):
    """The backbone `keras.Model` named "backbone": `model`'s input -> (its layer
    `low_level_layer`'s output, its layer `high_level_layer`'s output), the decoder's low-level
    feature and the ASPP's input."""
    return keras.Model(
        model.input,
        [model.get_layer(low_level_layer).output, model.get_layer(high_level_layer).output],
        name="backbone",
    )
