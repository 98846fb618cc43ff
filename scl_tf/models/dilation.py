"""Output-stride control: which stages of a backbone are dilated, and how.

A backbone stage that would bring the feature map below the requested output stride keeps its
resolution instead: its downsampling stride becomes 1 and its convolutions are dilated by the
factor the stride would have added (DeepLab's atrous trick). Every block of such a stage gets
the same rate, as in DeepWV3Plus (Zhu et al., 2019) and NVIDIA's dilated ResNets.
"""

import keras

from scl_tf.models.layers import BN_MOMENTUM

SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)


def stage_dilation(stage_stride, output_stride):
    """Dilation rate of a stage whose output would have stride `stage_stride`.

    E.g. at output stride 8 the stride-16 stage gets rate 2 and the stride-32 stage rate 4;
    at output stride 32 nothing is dilated.
    """
    return max(1, stage_stride // output_stride)


def dilated_stage_rates(stage_strides, output_stride):
    """Maps the stage prefixes of `stage_strides` ({prefix: stride}) to their dilation > 1."""
    rates = {
        prefix: stage_dilation(stride, output_stride) for prefix, stride in stage_strides.items()
    }
    return {prefix: rate for prefix, rate in rates.items() if rate > 1}


def clone_with_dilation(model, stage_rates, sync_batchnorm=False):
    """Clones a `keras.applications` model with strides turned into dilation.

    Layer names, order and weight shapes are kept, so weights saved from the original
    architecture (e.g. keras.applications' ImageNet `.h5` files) load into the clone by name.

    Args:
        model: a functional model built with `input_shape=(None, None, 3)`.
        stage_rates: {layer-name prefix: dilation rate} for the stages to dilate. In those
            stages strided convolutions get stride 1, convolutions with a kernel larger than
            1x1 get the stage's rate, and explicit `ZeroPadding2D` layers (keras.applications
            only puts them before strided 3x3 convolutions with "valid" padding) pad by the
            rate, which keeps the "valid" 3x3 convolution that follows size-preserving.
        sync_batchnorm: turn every BatchNormalization into a synchronized one.
        Every BatchNormalization also gets the momentum of the rest of the model, BN_MOMENTUM
        (its epsilon, which pretrained statistics depend on, is kept).

    Returns:
        A new, randomly initialised `keras.Model` with the same inputs and outputs.
    """

    def stage_rate(layer_name):
        for prefix, rate in stage_rates.items():
            if layer_name.startswith(prefix):
                return rate
        return 1

    def clone_layer(layer):
        config = layer.get_config()
        rate = stage_rate(layer.name)
        if rate > 1 and isinstance(layer, keras.layers.ZeroPadding2D):
            config["padding"] = ((rate, rate), (rate, rate))
        elif rate > 1 and isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            config["strides"] = (1, 1)
            if max(config["kernel_size"]) > 1:
                config["dilation_rate"] = (rate, rate)
        elif isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = sync_batchnorm
            config["momentum"] = BN_MOMENTUM
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone_layer)
