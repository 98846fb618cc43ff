"""Which layers of an int8 ONNX model cost most: a per-layer sensitivity sweep (no TF).

One calibration, then each quantized node in turn is left in float32 (everything else int8)
and the labels of the result are compared with the float32 model's on unlabeled probe frames:
a node's sensitivity is the share of pixels it wins back. benchmarks/bench_int8_sensitivity.py
runs it on trained models; scl_tf/export/quantize.py keeps in float what it found.

The sweep's sessions run with ONNX Runtime's WeightBiasQuantization graph optimizer off. With
it on (the default), a float Conv whose input comes from a DequantizeLinear and whose output
goes to a QuantizeLinear is quantized again when the session loads, its weights per tensor:
a node "kept float" alone is then int8 with worse weights than the quantizer's per-channel ones
(on the demo model the first depthwise convolution so kept cost 4.3 points of agreement
instead of gaining 0.4). A float region that the deployed model keeps must therefore not be a
lone Conv between quantized neighbours; the input block of quantize.py starts at the float
input, which never matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from scl_tf.export import runtime
from scl_tf.export.quantize import Quantizer, float_nodes

# Node types swept: every quantized op with weights or arithmetic on activations.
SWEPT_OPS = ("Conv", "Add", "Mul", "Concat", "Resize", "GlobalAveragePool", "AveragePool")
_WEIGHT_REQUANTIZER = "WeightBiasQuantization"


def session(model: onnx.ModelProto, true_float: bool = True) -> ort.InferenceSession:
    """A CPU session of `model`; `true_float` turns ORT's WeightBiasQuantization off, so that
    float nodes of a QDQ model run in float (see the module docstring)."""
    return ort.InferenceSession(
        model.SerializeToString(),
        ort.SessionOptions(),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=[_WEIGHT_REQUANTIZER] if true_float else None,
    )


def labels(session: ort.InferenceSession, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The `labels` output [H, W] of each float32 [1, H, W, 3] image."""
    return [runtime.run(session, image)["labels"][0] for image in images]


def agreement(predicted: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Share of pixels, over all images, whose labels agree."""
    agreeing = sum(int((a == b).sum()) for a, b in zip(predicted, reference, strict=True))
    return agreeing / sum(label.size for label in reference)


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """One node left in float32: its name and op type, the agreement with float32 that the
    model then has, and the gain over the all-int8 model."""

    node: str
    op_type: str
    agreement: float
    gain: float


def candidates(model: onnx.ModelProto, float_input_block: bool = False) -> list[onnx.NodeProto]:
    """The quantized nodes of a prepared model (`Quantizer.prepared`) of SWEPT_OPS types."""
    kept = set(float_nodes(model, float_input_block))
    return [
        node for node in model.graph.node if node.op_type in SWEPT_OPS and node.name not in kept
    ]


def sweep(
    quantizer: Quantizer,
    reference: Sequence[np.ndarray],
    probe: Sequence[np.ndarray],
    float_input_block: bool = False,
    nodes: Sequence[onnx.NodeProto] | None = None,
    progress: Callable[[LayerSensitivity], None] | None = None,
) -> tuple[float, list[LayerSensitivity]]:
    """The per-layer sweep.

    Args:
      quantizer: a calibrated Quantizer.
      reference: the float32 model's labels [H, W] on `probe`.
      probe: float32 [1, H, W, 3] unlabeled frames.
      float_input_block: whether the base model keeps quantize.input_block in float (False:
        the input block is swept like the rest).
      nodes: the nodes swept; default `candidates`.
      progress: called with each result as it comes.

    Returns:
      (the agreement of the all-int8 base model, one LayerSensitivity per node, the largest
      gain first).
    """
    base = agreement(
        labels(session(quantizer.quantize(float_input_block=float_input_block)), probe), reference
    )
    results = []
    for node in candidates(quantizer.prepared, float_input_block) if nodes is None else nodes:
        model = quantizer.quantize([node.name], float_input_block)
        value = agreement(labels(session(model), probe), reference)
        result = LayerSensitivity(node.name, node.op_type, value, value - base)
        results.append(result)
        if progress:
            progress(result)
    return base, sorted(results, key=lambda result: -result.gain)
