"""scl_tf/export/dilated_conv.py: dilated "same" convolutions of dynamic-size inputs convert to
single dilated ONNX Convs that agree with TensorFlow at any size, asymmetric pads included."""

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tf2onnx

from scl_tf.export import dilated_conv


@pytest.mark.parametrize(
    "kernel_size, dilation, expected",
    [(3, 1, (1, 1)), (3, 2, (2, 2)), (3, 12, (12, 12)), (2, 3, (1, 2)), (4, 2, (3, 3))],
)
def test_same_pads(kernel_size, dilation, expected):
    assert dilated_conv.same_pads(kernel_size, dilation) == expected


def dilated_network():
    """Dilated Conv2D (odd and even kernels, the even one padded asymmetrically), a dilated
    depthwise convolution, and an undilated one for contrast: [B, H, W, 3] -> [B, H, W, 4]."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, dilation_rate=2, padding="same")(inputs)
    x = keras.layers.DepthwiseConv2D(3, dilation_rate=4, padding="same")(x)
    x = keras.layers.Conv2D(6, 2, dilation_rate=3, padding="same")(x)
    x = keras.layers.Conv2D(4, (3, 1), dilation_rate=(1, 5), padding="same")(x)
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(x))


def to_onnx(model, rewriters):
    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    function = tf.function(lambda images: model(images))
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=[spec], opset=17, custom_rewriter=rewriters
    )
    return proto


def test_dynamic_same_dilations_become_dilated_convs_that_match_tensorflow():
    model = dilated_network()
    proto = to_onnx(model, [dilated_conv.rewrite_dynamic_same_dilations])
    op_types = [node.op_type for node in proto.graph.node]
    assert "SpaceToDepth" not in op_types and "DepthToSpace" not in op_types
    dilations = sorted(
        tuple(attribute.ints)
        for node in proto.graph.node
        if node.op_type == "Conv"
        for attribute in node.attribute
        if attribute.name == "dilations"
    )
    assert dilations == [(1, 1), (1, 5), (2, 2), (3, 3), (4, 4)]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for height, width in ((17, 23), (32, 32), (9, 40)):
        images = rng.normal(size=(2, height, width, 3)).astype(np.float32)
        (onnx_out,) = session.run(None, {"images": images})
        np.testing.assert_allclose(onnx_out, model(images).numpy(), rtol=1e-4, atol=1e-4)


def test_without_the_rewriter_tf2onnx_keeps_space_to_batch():
    """What the rewriter is for: tf2onnx alone leaves these convolutions unfolded."""
    op_types = {node.op_type for node in to_onnx(dilated_network(), None).graph.node}
    assert {"SpaceToDepth", "DepthToSpace"} <= op_types
