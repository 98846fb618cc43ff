"""INT8 ONNX: static post-training quantization with ONNX Runtime's own tooling.

The float32 model of `convert.convert` is quantized in ONNX Runtime's recommended form for
CPUs: QDQ format (QuantizeLinear / DequantizeLinear pairs around each quantized node, which
ORT fuses into int8 kernels), per-channel int8 weights, uint8 activations (U8S8, the form
ORT's x86 kernels take, with or without VNNI), MinMax ranges calibrated on real frames.
Inputs and outputs stay float32, as in the fp32 model: `images` in [0, 255] in, `logits` and
`labels` (, `label_ids`) out.

Measured on the CamVid study's EfficientNet-Lite0 DeepLabV3+ (a 46.3% val mIoU checkpoint)
and the demo's, on this 2-core CPU (export/README.md has the table):
- `quant_pre_process` (ORT's graph optimizations before quantizing) decides the accuracy:
  tf2onnx leaves each depthwise convolution's BatchNormalization as a Mul and an Add, which
  quantizing rounds twice more; fused into the convolution, they are not. Without it int8
  kept 91.2% of the labels of the 101 CamVid val frames and lost 1.7 mIoU points; with it
  (and `float_nodes`), 97.3% and 0.2. Symbolic shape inference is skipped (it needs sympy;
  ONNX's own shape inference runs).
- `float_nodes` stay float32: the input normalization (ahead of the first convolution) and
  everything after the logits convolution (the bilinear Resize to the input size, ArgMax,
  label_ids). Quantized, they are slow int8 kernels on full-resolution tensors plus
  Quantize/Dequantize around them: keeping them float took int8 from 0.49 to 0.42 times the
  fp32 time (0.43 to 0.39 at 512x1024; demo: 0.65 to 0.58), with agreement 97.3% instead of
  97.4% and mIoU 46.10 instead of 46.02 (fp32: 46.32). The logits convolution itself stays int8:
  float, it cost 4-10% more time for no measurable gain.
- Percentile and entropy calibration did no better than MinMax (+0.1 point) and keep every
  activation of every frame in memory (92 frames: killed at 21 GB); MinMax keeps two numbers
  per tensor. 31 or 92 calibration frames made no difference.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable

import numpy as np
import onnx
from onnxruntime import quantization

from scl_tf import runs
from scl_tf.export import agreement, onnx_model, runtime
from scl_tf.export.convert import onnx_predictor

# Ops between the input and the first convolution: the ImageNet normalization, NHWC -> NCHW.
_NORMALIZATION_OPS = ("Mul", "Add", "Sub", "Div", "Transpose")


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """{tensor name: the nodes that read it}."""
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _reached(
    consumers: dict[str, list[onnx.NodeProto]], tensors: list[str], op_types=None
) -> list[str]:
    """Names of the nodes reached from `tensors` through nodes of `op_types` (None: any)."""
    names, frontier = [], list(tensors)
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if (op_types is None or node.op_type in op_types) and node.name not in names:
                names.append(node.name)
                frontier.extend(node.output)
    return names


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept in float32: the input normalization (from the input up to the
    first convolution) and everything after the last convolution, which makes the logits
    (a topologically sorted graph's last Conv)."""
    graph = model.graph
    consumers = _consumers(graph)
    logits_conv = [node for node in graph.node if node.op_type == "Conv"][-1]
    return _reached(consumers, [graph.input[0].name], _NORMALIZATION_OPS) + _reached(
        consumers, list(logits_conv.output)
    )


class FrameReader(quantization.CalibrationDataReader):
    """ORT's calibration input: {"images": float32 [1, H, W, 3]} per frame, then None."""

    def __init__(self, frames: Iterable[np.ndarray]):
        self._frames = iter(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._frames, None)
        return None if frame is None else {runtime.INPUT_NAME: frame}


def quantize_int8(model: onnx.ModelProto, frames: Iterable[np.ndarray]) -> onnx.ModelProto:
    """The int8 QDQ version of a float32 ONNX model (see the module docstring).

    Args:
      model: float32 ModelProto, input `images` [B, H, W, 3].
      frames: float32 [1, H, W, 3] calibration frames in [0, 255] (any H, W the model takes).

    Returns:
      ModelProto with the same inputs and outputs, without metadata_props.
    """
    with tempfile.TemporaryDirectory(prefix="scl_tf_int8_") as folder:
        original, prepared, quantized = (
            os.path.join(folder, name) for name in ("fp32.onnx", "prepared.onnx", "int8.onnx")
        )
        # A file, not the ModelProto: ORT 1.32 mishandles in-memory models here.
        onnx.save(model, original)
        quantization.quant_pre_process(original, prepared, skip_symbolic_shape=True)
        quantization.quantize_static(
            prepared,
            quantized,
            FrameReader(frames),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=float_nodes(onnx.load(prepared)),
            calibrate_method=quantization.CalibrationMethod.MinMax,
        )
        result = onnx.load(quantized)
    del result.metadata_props[:]  # ORT's pre-processing marks; set_metadata writes ours
    return result


def export_int8(
    model: onnx.ModelProto,
    calibration: Iterable[np.ndarray],
    frames: list[str],
    min_agreement: float,
) -> tuple[onnx.ModelProto, agreement.AgreementReport]:
    """Quantizes a float32 model of `convert.export_onnx`, stores its ExportInfo with
    precision "int8", and checks the agreement of the two.

    Args:
      model: float32 ModelProto with scl_tf metadata.
      calibration: float32 [1, H, W, 3] frames (see scl_tf.export.calibration).
      frames: image files the agreement is judged on (besides random images, reported).

    Returns:
      (the int8 model with metadata, the agreement report; check `report.passed`).
    """
    info = onnx_model.read_info(model, "the float32 ONNX model")
    quantized = quantize_int8(model, calibration)
    onnx_model.set_metadata(quantized, dataclasses.replace(info, precision="int8"))
    report = agreement.check_agreement(
        onnx_predictor(runs.onnx_session(model.SerializeToString())),
        onnx_predictor(runs.onnx_session(quantized.SerializeToString())),
        info.input_size,
        frames,
        min_agreement,
        "ONNX fp32",
    )
    return quantized, report
