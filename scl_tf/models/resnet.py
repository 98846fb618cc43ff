"""Dilated ResNet-50 / ResNet-101 feature extractors from `keras.applications`.

The architecture is keras.applications' own (ResNet v1 with the stride on the first 1x1
convolution, Caffe-style BGR input), re-created with strides turned into dilation, so its
ImageNet `.h5` files load by layer name.
"""

import keras

from scl_tf.models.dilation import clone_with_dilation, dilated_stage_rates
from scl_tf.models.layers import feature_pair

NORMALIZATION = "caffe"

# Output stride of each stage, keyed by its layer-name prefix.
_STAGE_STRIDES = {"conv2_": 4, "conv3_": 8, "conv4_": 16, "conv5_": 32}
# Low-level feature per stride: the stem's ReLU (64 channels) or the last block of conv2 (256).
_LOW_LEVEL_LAYERS = {2: "conv1_relu", 4: "conv2_block3_out"}
_HIGH_LEVEL_LAYER = "conv5_block3_out"
_APPLICATIONS = {"resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101}


def build_resnet(depth_name, output_stride, low_level_stride, sync_batchnorm=False):
    """Builds a dilated keras.applications ResNet feature extractor.

    Args:
        depth_name: `"resnet50"` or `"resnet101"`.
        output_stride: 8, 16 or 32 (32 = the undilated ImageNet network).
        low_level_stride: 2 or 4.
        sync_batchnorm: synchronized BatchNormalization.

    Returns:
        `keras.Model` named `"backbone"`: [B, H, W, 3] Caffe-normalised BGR ->
        (low-level [B, H/low_level_stride, W/low_level_stride, 64 or 256],
         high-level [B, H/output_stride, W/output_stride, 2048]), sizes rounded up.
    """
    reference = _APPLICATIONS[depth_name](
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    model = clone_with_dilation(
        reference, dilated_stage_rates(_STAGE_STRIDES, output_stride), sync_batchnorm
    )
    return feature_pair(model, _LOW_LEVEL_LAYERS[low_level_stride], _HIGH_LEVEL_LAYER)
