"""Dilated MobileNetV2 feature extractor from `keras.applications` (fast, for CPU demos).

As in DeepLab's MobileNetV2 variant, the high-level feature is the last inverted-residual
block (320 channels), not the final 1x1 convolution to 1280 channels, which would make the ASPP
four times as expensive. Layer names are keras.applications' own, so its ImageNet `.h5` files
load by name (their `Conv_1` weights are not used).
"""

import keras

from scl_tf.models.dilation import clone_with_dilation, dilated_stage_rates
from scl_tf.models.layers import feature_pair

NORMALIZATION = "tf"

# Output stride of the blocks that downsample (block_1, block_3, block_6, block_13) and of the
# blocks after them, keyed by layer-name prefix ("block_1_" must not match "block_10_").
_STAGE_STRIDES = {
    **{f"block_{i}_": 4 for i in (1, 2)},
    **{f"block_{i}_": 8 for i in (3, 4, 5)},
    **{f"block_{i}_": 16 for i in range(6, 13)},
    **{f"block_{i}_": 32 for i in range(13, 17)},
}
# Low-level feature per stride: the expansion of the first block at that stride.
_LOW_LEVEL_LAYERS = {2: "block_1_expand_relu", 4: "block_3_expand_relu"}
_HIGH_LEVEL_LAYER = "block_16_project_BN"


def build_mobilenetv2(output_stride, low_level_stride, sync_batchnorm=False):
    """Builds a dilated keras.applications MobileNetV2 (alpha 1.0) feature extractor.

    Args:
        output_stride: 8, 16 or 32 (32 = the undilated ImageNet network).
        low_level_stride: 2 or 4.
        sync_batchnorm: synchronized BatchNormalization.

    Returns:
        `keras.Model` named `"backbone"`: [B, H, W, 3] in [-1, 1] ->
        (low-level [B, ~H/low_level_stride, ~W/low_level_stride, 96 or 144],
         high-level [B, ~H/output_stride, ~W/output_stride, 320]).
    """
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    model = clone_with_dilation(
        reference, dilated_stage_rates(_STAGE_STRIDES, output_stride), sync_batchnorm
    )
    return feature_pair(model, _LOW_LEVEL_LAYERS[low_level_stride], _HIGH_LEVEL_LAYER)
