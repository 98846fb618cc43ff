"""Wider ResNet-38 "A2" (Wu et al., 2016) as the backbone of DeepWV3Plus (Zhu et al., 2019).

Layout, following mapillary/inplace_abn's `WiderResNetA2` as used by NVIDIA's DeepWV3Plus:

    mod1   3x3 conv, 64                      stride 1
    pool2  3x3 max-pool, stride 2            stride 2
    mod2   3 blocks (128, 128)               stride 2   <- low-level feature (128 ch)
    pool3  3x3 max-pool, stride 2            stride 4
    mod3   3 blocks (256, 256)               stride 4   <- low-level feature at stride 4
    mod4   6 blocks (512, 512), first /2     stride 8
    mod5   3 blocks (512, 1024), first /2    stride 16  (output stride 8: stride 1, dilation 2)
    mod6   1 block (512, 1024, 2048), /2     stride 32  (output stride 8: dilation 4; 16: 2)
    mod7   1 block (1024, 2048, 4096)        stride 32  (output stride 8: dilation 4; 16: 2)

Blocks are pre-activation ("identity mapping") residual units: BN-ReLU, then two 3x3
convolutions (or 1x1-3x3-1x1 in mod6/mod7), with a 1x1 projection shortcut taken from the
activated input when the stride or width changes. mod6 and mod7 have channel (spatial) dropout
0.3 and 0.5 before their last convolution. As in DeepWV3Plus, the ImageNet model's final
`bn_out` and classifier are not part of the backbone: mod7's output goes to the ASPP as is.

Layer names are the PyTorch module paths with "." replaced by "_" (`mod2.block1.convs.conv1`
-> `mod2_block1_convs_conv1`), which is what `tools/convert_wrn38_weights.py` relies on.

Strided layers use Keras' "same" padding: identical to PyTorch's symmetric padding for odd
input sizes, one pixel later (bottom/right only) for even ones.
"""

import keras

from scl_tf.models.dilation import stage_dilation
from scl_tf.models.layers import batch_norm

NORMALIZATION = "torch"

# (module name, blocks, channels, output stride of the module, downsampling, dropout).
# Downsampling is "pool" (max-pool before the module), "conv" (stride 2 in the first block)
# or None.
WRN38_MODULES = (
    ("mod2", 3, (128, 128), 2, "pool", 0.0),
    ("mod3", 3, (256, 256), 4, "pool", 0.0),
    ("mod4", 6, (512, 512), 8, "conv", 0.0),
    ("mod5", 3, (512, 1024), 16, "conv", 0.0),
    ("mod6", 1, (512, 1024, 2048), 32, "conv", 0.3),
    ("mod7", 1, (1024, 2048, 4096), 32, None, 0.5),
)
_LOW_LEVEL_MODULES = {2: "mod2", 4: "mod3"}


def _conv(filters, kernel_size, name, strides=1, dilation_rate=1):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def _bn_relu(x, name, sync_batchnorm):
    x = batch_norm(name, sync_batchnorm)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, channels, stride, dilation, dropout, name, sync_batchnorm):
    """Pre-activation residual unit: [B, H, W, C_in] -> [B, H/stride, W/stride, channels[-1]].

    Two 3x3 convolutions when `channels` has two entries, a 1x1-3x3-1x1 bottleneck when three;
    the stride sits on the first convolution and on the projection shortcut, the dropout
    before the last convolution.
    """
    activated = _bn_relu(x, f"{name}_bn1", sync_batchnorm)
    if stride != 1 or x.shape[-1] != channels[-1]:
        shortcut = _conv(channels[-1], 1, f"{name}_proj_conv", strides=stride)(activated)
    else:
        shortcut = x

    if len(channels) == 2:  # (filters, kernel size, stride, dilation) of each convolution
        convs = [(channels[0], 3, stride, dilation), (channels[1], 3, 1, dilation)]
    else:
        convs = [(channels[0], 1, stride, 1), (channels[1], 3, 1, dilation), (channels[2], 1, 1, 1)]
    y = activated
    for i, (filters, kernel_size, conv_stride, conv_dilation) in enumerate(convs, start=1):
        if i > 1:
            y = _bn_relu(y, f"{name}_convs_bn{i}", sync_batchnorm)
        if i == len(convs) and dropout:
            y = keras.layers.SpatialDropout2D(dropout, name=f"{name}_convs_dropout")(y)
        y = _conv(filters, kernel_size, f"{name}_convs_conv{i}", conv_stride, conv_dilation)(y)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def build_wider_resnet38(output_stride, low_level_stride, sync_batchnorm=False):
    """Builds WRN38-A2 as a feature extractor.

    Args:
        output_stride: 8 (paper), 16 or 32 (32 = the undilated ImageNet network).
        low_level_stride: 2 (mod2, paper) or 4 (mod3).
        sync_batchnorm: synchronized BatchNormalization.

    Returns:
        `keras.Model` named `"backbone"`: [B, H, W, 3] ImageNet mean/std-normalised RGB ->
        (low-level [B, H/low_level_stride, W/low_level_stride, 128 or 256],
         high-level [B, H/output_stride, W/output_stride, 4096]), sizes rounded up.
    """
    inputs = keras.Input((None, None, 3), name="normalized_image")
    x = _conv(64, 3, "mod1_conv1")(inputs)
    module_outputs = {}
    for name, num_blocks, channels, module_stride, downsampling, dropout in WRN38_MODULES:
        dilation = stage_dilation(module_stride, output_stride)
        if downsampling == "pool":  # named pool2 / pool3 as in the reference
            pool_name = name.replace("mod", "pool")
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=pool_name)(x)
        for block in range(num_blocks):
            stride = 2 if block == 0 and downsampling == "conv" and dilation == 1 else 1
            x = _residual_block(
                x, channels, stride, dilation, dropout, f"{name}_block{block + 1}", sync_batchnorm
            )
        module_outputs[name] = x
    low_level = module_outputs[_LOW_LEVEL_MODULES[low_level_stride]]
    return keras.Model(inputs, [low_level, x], name="backbone")
