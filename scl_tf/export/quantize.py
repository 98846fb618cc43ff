"""INT8 ONNX: static post-training quantization with ONNX Runtime's own tooling.

The float32 model of `convert.convert` is quantized in ONNX Runtime's recommended form for
CPUs: QDQ format (QuantizeLinear / DequantizeLinear pairs around each quantized node, which
ORT fuses into int8 kernels), per-channel int8 weights, uint8 activations (U8S8, the form
ORT's x86 kernels take, with or without VNNI), activation ranges calibrated on real frames.
Inputs and outputs stay float32, as in the fp32 model: `images` in [0, 255] in, `logits` and
`labels` (, `label_ids`) out.

What stays float32, and why (2 shared CPU cores; BENCHMARKS.md, "Quantized deployment", quotes
the records of benchmarks/bench_int8_sensitivity.py, bench_int8_calibration.py and
bench_quantized.py):
- `quant_pre_process` first (ORT's graph optimizations): tf2onnx leaves each depthwise
  convolution's BatchNormalization as a Mul and an Add, which quantizing rounds twice more;
  fused into the convolution, they are not (without it int8 kept 91.2% of a CamVid model's
  labels; with it 97.4%). Symbolic shape inference is skipped (it needs sympy).
- The output head: everything after the logits convolution (the bilinear Resize to the input
  size, ArgMax, label_ids). As int8 they are slow kernels on full-resolution tensors with
  Quantize/Dequantize around them, and float they cost no accuracy. The logits convolution
  stays int8 (float alone: +0.11 point at most in the sweeps).
- The input block (`input_block`): the input normalization, the stem convolution, the first
  depthwise convolution and its projection, i.e. everything from the input through the first
  inverted-residual block of MobileNetV2 and EfficientNet-Lite. The per-layer sweep
  (scl_tf/export/sensitivity.py: each node alone in float32, labels against float32 on
  unlabeled frames) ranks the first block's depthwise convolution first on the three Lite0
  models measured (+0.44, +0.34, +0.84 point of agreement; its projection second on two, +0.25
  and +0.19) and the stem first on the MobileNetV2 (+0.13); no node outside the block gains
  more than 0.16. In float together they keep 98.43% instead of 97.71% of the demo model's
  probe labels, 98.53% instead of 97.90% (the study's supervised Lite0), 99.43% instead of
  98.54% (its semi-supervised one), 98.74% instead of 98.58% (the MobileNetV2). They cost no
  time: ORT's int8 convolution over the 3 input channels is slow,
  and the float block needs no QuantizeLinear of the full-resolution input (ORT int8 runs at
  0.30-0.42x the fp32 time on the models measured). The same ops stay float32 in the TFLite
  int8 file (scl_tf/export/tflite.py). A lone float node between quantized ones would not do:
  ORT quantizes its weights again, per tensor, when the session loads (sensitivity.py).
- Activation ranges: MinMax over 100 frames (--calibration_method, --calibration_count). Every
  ReLU6 activation's range is [0, 6] by construction, so methods differ only on the unbounded
  tensors (projections, residual sums, the head's ReLUs): percentile (99.999%, 2048 bins) moved
  the agreement by +0.07 to +0.10 point in 1.6-4 times MinMax's time; entropy (2048 bins,
  TensorRT's) clips those tensors and lost 3 points of agreement (95.1% and 95.5%; -1.06 mIoU
  on the study's model). MinMax on 8, 32, 100 or 300 frames kept the same share of labels
  within 0.2 point and the same mIoU within 0.07. ORT's quantize_static entropy uses 128 bins
  for 128 quantized bins, a single candidate threshold: its ranges equal MinMax's exactly. The
  histogram methods are calibrated one frame at a time here (given all frames at once, ORT
  holds every activation of every frame in memory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnxruntime import quantization
from onnxruntime.quantization import calibrate as ort_calibrate
from onnxruntime.quantization import registry as ort_registry

from scl_tf import runs
from scl_tf.config import CalibrationConfig
from scl_tf.export import agreement, onnx_model, runtime
from scl_tf.export.convert import onnx_predictor

# Ops between the input and the first convolution: the ImageNet normalization, NHWC -> NCHW.
_NORMALIZATION_OPS = ("Mul", "Add", "Sub", "Div", "Transpose")
# Every op type ORT can quantize (quantize_static's own default set).
_QUANTIZABLE_OPS = sorted(set(ort_registry.QLinearOpsRegistry) | set(ort_registry.QDQRegistry))
# ORT's calibrator and its settings per --calibration_method. The histogram methods take
# TensorRT's sizes (2048 bins): quantize_static's own entropy uses 128 bins for 128 quantized
# bins, which leaves a single candidate threshold, the whole range, i.e. MinMax (every scale of
# its model equals MinMax's). Activations are uint8 with a zero point: ranges are not
# symmetrized.
_CALIBRATORS = {
    "minmax": (quantization.CalibrationMethod.MinMax, {}),
    "percentile": (
        quantization.CalibrationMethod.Percentile,
        {"num_bins": 2048, "percentile": 99.999, "symmetric": False},
    ),
    "entropy": (
        quantization.CalibrationMethod.Entropy,
        {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": False},
    ),
}


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


def first_block_end(kinds: Sequence[str]) -> int | None:
    """Index of the convolution that ends the first inverted-residual block (MobileNetV2,
    EfficientNet-Lite): the first plain convolution after the first depthwise one; None for a
    network without depthwise convolutions.

    Args:
      kinds: per op in execution order, "conv", "depthwise" or anything else (ONNX and TFLite
        graphs both use it).
    """
    depthwise = next((i for i, kind in enumerate(kinds) if kind == "depthwise"), None)
    if depthwise is None:
        return None
    return next((i for i in range(depthwise + 1, len(kinds)) if kinds[i] == "conv"), None)


def conv_kind(node: onnx.NodeProto) -> str:
    """Of a node: "depthwise" for a grouped Conv, "conv" for another Conv, else its op type."""
    if node.op_type != "Conv":
        return node.op_type
    group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
    return "depthwise" if group > 1 else "conv"


def input_block(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from the input through the first inverted-residual block (the input
    normalization, the stem convolution, the first depthwise convolution and its projection,
    with the activations between), in a topologically sorted graph; just the normalization
    for a network without depthwise convolutions."""
    graph = model.graph
    end = first_block_end([conv_kind(node) for node in graph.node])
    if end is None:
        return _reached(_consumers(graph), [graph.input[0].name], _NORMALIZATION_OPS)
    return [node.name for node in graph.node[: end + 1]]


def float_nodes(model: onnx.ModelProto, float_input_block: bool = True) -> list[str]:
    """Names of the nodes kept in float32 (see the module docstring): `input_block` (only the
    input normalization when `float_input_block` is False) and everything after the last
    convolution, which makes the logits (a topologically sorted graph's last Conv)."""
    graph = model.graph
    consumers = _consumers(graph)
    logits_conv = [node for node in graph.node if node.op_type == "Conv"][-1]
    head = (
        input_block(model)
        if float_input_block
        else _reached(consumers, [graph.input[0].name], _NORMALIZATION_OPS)
    )
    return head + _reached(consumers, list(logits_conv.output))


class FrameReader(quantization.CalibrationDataReader):
    """ORT's calibration input: {"images": float32 [1, H, W, 3]} per frame, then None."""

    def __init__(self, frames: Iterable[np.ndarray]):
        self._frames = iter(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._frames, None)
        return None if frame is None else {runtime.INPUT_NAME: frame}


class Quantizer:
    """A float32 model prepared and calibrated once, then quantized with any set of nodes kept
    in float32 (a sensitivity sweep quantizes it once per node).

        with Quantizer(model, frames) as quantizer:
            int8 = quantizer.quantize()

    Args:
      model: float32 ModelProto, input `images` [B, H, W, 3].
      frames: float32 [1, H, W, 3] calibration frames in [0, 255], iterated once (e.g.
        `calibration.CalibrationFrames`).
      method: one of config.CALIBRATION_METHODS.

    Attributes:
      prepared: the model after ORT's pre-processing; node names refer to it.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        frames: Iterable[np.ndarray],
        method: str = CalibrationConfig.calibration_method,
    ):
        self._folder = tempfile.TemporaryDirectory(prefix="scl_tf_int8_")
        self._method = _CALIBRATORS[method][0]
        folder = self._folder.name
        original = os.path.join(folder, "fp32.onnx")
        self._prepared = os.path.join(folder, "prepared.onnx")
        self._cache = os.path.join(folder, "calibration.json")
        # Files, not ModelProtos: ORT 1.32 mishandles in-memory models here.
        onnx.save(model, original)
        quantization.quant_pre_process(original, self._prepared, skip_symbolic_shape=True)
        self.prepared = onnx.load(self._prepared)
        self._calibrate(frames, method)

    def _calibrate(self, frames: Iterable[np.ndarray], method: str) -> None:
        """Writes the activation ranges of `frames` to the calibration cache, one frame per
        pass (ORT's histogram calibrators merge histograms across passes; given all frames at
        once they hold every activation of every frame in memory)."""
        ort_method, options = _CALIBRATORS[method]
        calibrator = quantization.create_calibrator(
            self._prepared,
            _QUANTIZABLE_OPS,
            augmented_model_path=os.path.join(self._folder.name, "augmented.onnx"),
            calibrate_method=ort_method,
            extra_options=options,
        )
        count = 0
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress lines
            for frame in frames:
                calibrator.collect_data(FrameReader([frame]))
                count += 1
            if not count:
                raise ValueError("int8 calibration: no frames")
            ort_calibrate.save_tensors_data(calibrator.compute_data(), self._cache)

    def quantize(
        self, keep_float: Sequence[str] = (), float_input_block: bool = True
    ) -> onnx.ModelProto:
        """The int8 QDQ model, with `float_nodes(prepared, float_input_block)` and
        `keep_float` (node names of `prepared`) in float32; without metadata_props."""
        output = os.path.join(self._folder.name, "int8.onnx")
        with contextlib.redirect_stdout(io.StringIO()):
            quantization.quantize_static(
                self._prepared,
                output,
                None,
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                nodes_to_exclude=float_nodes(self.prepared, float_input_block) + list(keep_float),
                calibrate_method=self._method,
                calibration_cache_path=self._cache,
            )
        result = onnx.load(output)
        del result.metadata_props[:]  # ORT's pre-processing marks; set_metadata writes ours
        return result

    def close(self) -> None:
        self._folder.cleanup()

    def __enter__(self) -> Quantizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quantize_int8(
    model: onnx.ModelProto,
    frames: Iterable[np.ndarray],
    method: str = CalibrationConfig.calibration_method,
) -> onnx.ModelProto:
    """The int8 QDQ version of a float32 ONNX model (see the module docstring).

    Args:
      model: float32 ModelProto, input `images` [B, H, W, 3].
      frames: float32 [1, H, W, 3] calibration frames in [0, 255] (any H, W the model takes).
      method: one of config.CALIBRATION_METHODS.

    Returns:
      ModelProto with the same inputs and outputs, without metadata_props.
    """
    with Quantizer(model, frames, method) as quantizer:
        return quantizer.quantize()


def export_int8(
    model: onnx.ModelProto,
    calibration: Iterable[np.ndarray],
    frames: list[str],
    min_agreement: float,
    method: str = CalibrationConfig.calibration_method,
) -> tuple[onnx.ModelProto, agreement.AgreementReport]:
    """Quantizes a float32 model of `convert.export_onnx`, stores its ExportInfo with
    precision "int8", and checks the agreement of the two.

    Args:
      model: float32 ModelProto with scl_tf metadata.
      calibration: float32 [1, H, W, 3] frames (see scl_tf.export.calibration).
      frames: image files the agreement is judged on (besides random images, reported).
      method: one of config.CALIBRATION_METHODS.

    Returns:
      (the int8 model with metadata, the agreement report; check `report.passed`).
    """
    info = onnx_model.read_info(model, "the float32 ONNX model")
    quantized = quantize_int8(model, calibration, method)
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
