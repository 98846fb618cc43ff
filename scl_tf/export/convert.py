"""TensorFlow model -> ONNX with tf2onnx, checked against TensorFlow in ONNX Runtime.

The ONNX model holds `logits` (float32 [B, H, W, C]), `labels` (int32 [B, H, W] train ids)
and, for Cityscapes, `label_ids`; not the softmax, which took 63% of the ONNX Runtime CPU time
of a small DeepLabV3+ (DESIGN.md). `probabilities=True` adds it for consumers that want it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import threading

import numpy as np
import onnx
import tensorflow as tf

from scl_tf import runs
from scl_tf.config import ConfigError, check_opset
from scl_tf.export import onnx_model, runtime
from scl_tf.export.parity import ParityCase, ParityReport, Predictor, check_parity, softmax
from scl_tf.export.serving import SIGNATURE_FLOAT, SIGNATURE_LOGITS, TFModel


def check_input_size(size: tuple[int, int] | None, output_stride: int) -> None:
    """A static input size (H, W) must be a multiple of the output stride, so that every
    feature map covers the image exactly and the fixed-shape engines built from it (TensorRT)
    see no padding; None (any size) always fits.

    Raises:
      ConfigError: naming --input_size.
    """
    if size is not None and (size[0] % output_stride or size[1] % output_stride):
        raise ConfigError(
            f"--input_size: {size[0]}x{size[1]} is not divisible by the model's "
            f"output stride {output_stride}; use a multiple of {output_stride} "
            "(e.g. 512x1024) or dynamic"
        )


@contextlib.contextmanager
def collecting_garbage(period_s: float = 1.0):
    """Runs full garbage collections every `period_s` seconds while the block runs.

    tf2onnx's optimizer deep-copies the whole graph, weights included, before each of its
    passes and drops the copies in reference cycles, which CPython's generational collector
    leaves to rare full collections: converting a ResNet-50 DeepLabV3+ (40M parameters) went
    past 9 GB of memory without this, and peaked at 4.3 GB with it.
    """
    stop = threading.Event()

    def collect():
        while not stop.wait(period_s):
            gc.collect()

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def convert(
    model: TFModel,
    opset: int = 17,
    input_size: tuple[int, int] | None = None,
    probabilities: bool = False,
) -> onnx.ModelProto:
    """The model's serving_logits signature as ONNX.

    Args:
      input_size: (H, W) to fix the input to, or None for dynamic height and width (the batch
        is always dynamic).
      probabilities: also output the softmax.

    Returns:
      ModelProto with input `images` float32 [B, H, W, 3] and outputs logits, labels
      (, label_ids) (, probabilities).
    """
    import tf2onnx

    from scl_tf.export import dilated_conv

    check_opset(opset)
    logits_signature = model.signatures[SIGNATURE_LOGITS]
    spec = tf.TensorSpec([None, *(input_size or (None, None)), 3], tf.float32, name="images")

    @tf.function
    def function(images):
        outputs = dict(logits_signature(images=images))
        if probabilities:
            outputs["probabilities"] = tf.nn.softmax(outputs["logits"])
        return outputs

    with collecting_garbage():
        proto, _ = tf2onnx.convert.from_function(
            function,
            input_signature=[spec],
            opset=opset,
            custom_rewriter=[dilated_conv.rewrite_dynamic_same_dilations],
        )
    return onnx_model.name_dynamic_dims(onnx_model.drop_resize_placeholders(proto))


def tf_predictor(model: TFModel) -> Predictor:
    """TensorFlow's (probabilities, labels) from the serving_default signature."""
    signature = model.signatures[SIGNATURE_FLOAT]

    def predict(images: np.ndarray):
        outputs = signature(images=tf.constant(images))
        return outputs["probabilities"].numpy(), outputs["labels"].numpy()

    return predict


def onnx_predictor(session) -> Predictor:
    """ONNX Runtime's (probabilities, labels); the softmax of the logits where not exported."""

    def predict(images: np.ndarray):
        outputs = runtime.run(session, images)
        probabilities = outputs.get("probabilities")
        if probabilities is None:
            probabilities = softmax(outputs["logits"])
        return probabilities, outputs["labels"]

    return predict


def export_onnx(
    model: TFModel,
    cases: list[ParityCase],
    opset: int = 17,
    input_size: tuple[int, int] | None = None,
    fp16: bool = False,
    probabilities: bool = False,
) -> tuple[onnx.ModelProto, ParityReport]:
    """Converts `model`, stores its ExportInfo, and compares it with TensorFlow on `cases`.

    Args:
      cases: inputs of the parity check (see parity.parity_cases).
      fp16: convert weights and arithmetic to float16 (inputs and outputs stay float32).

    Returns:
      (the ONNX model with metadata, the parity report; check `report.passed`).
    """
    proto = convert(model, opset, input_size, probabilities)
    if fp16:
        proto = onnx_model.to_fp16(proto)
    info = dataclasses.replace(
        model.info,
        outputs=onnx_model.output_names(proto),
        precision="fp16" if fp16 else "fp32",
        input_size=input_size,
    )
    onnx_model.set_metadata(proto, info)
    session = runs.onnx_session(proto.SerializeToString())
    report = check_parity(tf_predictor(model), onnx_predictor(session), cases, info.precision)
    return proto, report
