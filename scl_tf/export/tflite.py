"""TensorFlow Lite: a model's serving_logits signature at a fixed input size as a .tflite file
in fp32, fp16 or int8, with its ExportInfo inside, checked against TensorFlow.

    flatbuffer, report = export_tflite(model, (360, 480), "int8", frames, calibration)

Choices:
- The input is fixed, [1, H, W, 3] float32 RGB in [0, 255] (a phone model is static, and
  LiteRT plans its memory once); `scl_tf.eval.predictors` pads smaller images and tiles larger
  ones. Outputs as the ONNX model's: `logits` float32 [1, H, W, C], `labels` int32 [1, H, W]
  (, `label_ids`), under the signature `serving_default`.
- Variables are folded into constants before converting (as tf2onnx does): TF 2.21's
  converter otherwise keeps a Keras 3 model's weights as resource variables, which the file
  then lacks (a file of a few hundred KB whose every output is NaN).
- fp16: float16 weights, computed in float32 on CPUs (float16 on GPU delegates).
- int8: full-integer (TFLITE_BUILTINS_INT8 only, no float kernel left) calibrated on a
  representative dataset of real frames, with float32 input and outputs: the converter adds
  a Quantize after the input and Dequantize before the outputs, so the file keeps the float
  contract of every other export, and `labels` is the argmax of the int8 logits. Converting
  is two steps, the converter's calibration pass (`calibrate`) and the MLIR quantizer on its
  result (`quantize`, what the converter itself runs next): a sensitivity sweep quantizes one
  calibration many times, with layers left in float (`keep_float`).
- fp16 and int8 are judged by their labels on real frames against TensorFlow's
  (scl_tf.export.agreement), each against its own bar; fp32 by parity (max |dprob| <= 1e-4).
- Metadata: a metadata entry named "scl_tf" holding the ExportInfo as JSON (with the input
  convention), the way TensorFlow stores its own conversion metadata in the file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from scl_tf import quiet_stderr, runs
from scl_tf.config import CalibrationConfig, ExportConfig
from scl_tf.export import agreement, parity
from scl_tf.export.convert import tf_predictor
from scl_tf.export.metadata import INPUT_CONVENTION, ExportInfo
from scl_tf.export.runtime import INPUT_NAME
from scl_tf.export.serving import SIGNATURE_LOGITS, TFModel

METADATA_NAME = "scl_tf"
SIGNATURE = "serving_default"


def fixed_function(model: TFModel, input_size: tuple[int, int]):
    """serving_logits at [1, H, W, 3] float32, variables folded into constants.

    Returns:
      ConcreteFunction: images -> {"logits", "labels"(, "label_ids")}.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    signature = model.signatures[SIGNATURE_LOGITS]
    spec = tf.TensorSpec([1, *input_size, 3], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images):
        return dict(signature(images=images))

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)

    @tf.function(input_signature=[spec])
    def named(images):  # the frozen function returns a flat list; the file keeps names
        return tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(images))

    return named.get_concrete_function()


def calibrate(function, calibration: Iterable[np.ndarray]) -> bytes:
    """The float .tflite flatbuffer of a `fixed_function` with the activation ranges of the
    `calibration` frames (float32 [1, H, W, 3] in [0, 255] at the function's size) recorded,
    ready for `quantize`."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([frame] for frame in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # TF's own route to quantize one calibration
    with quiet_stderr():
        return converter.convert()


def input_block(calibrated: bytes) -> list[str]:
    """Output tensor names of the ops from the input through the first inverted-residual
    block of a `calibrate` result (the normalization, the stem, the first depthwise
    convolution and its projection), kept in float32 as in ONNX (scl_tf/export/quantize.py has
    the measurement); none for a network without depthwise convolutions."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from scl_tf.export.quantize import first_block_end

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = model.subgraphs[0]
    kinds = []
    for operator in graph.operators:
        code = model.operatorCodes[operator.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        kinds.append(
            {
                schema.BuiltinOperator.CONV_2D: "conv",
                schema.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise",
            }.get(builtin, "")
        )
    end = first_block_end(kinds)
    if end is None:
        return []
    return [
        graph.tensors[index].name.decode()
        for operator in graph.operators[: end + 1]
        for index in operator.outputs
    ]


def quantize(calibrated: bytes, keep_float: Sequence[str] = ()) -> bytes:
    """The int8 flatbuffer of a `calibrate` result, float32 input and outputs, the ops whose
    output tensors are named in `keep_float` left in float32."""
    from tensorflow.lite.python import convert as lite_convert

    with quiet_stderr():  # its C++ prints "fully_quantize: ..." whatever the log level
        return lite_convert.mlir_quantize(
            calibrated, fully_quantize=False, denylisted_nodes=list(keep_float) or None
        )


def convert(function, precision: str, calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """The .tflite flatbuffer of a `fixed_function`.

    Args:
      precision: "fp32", "fp16" or "int8".
      calibration: int8: float32 [1, H, W, 3] frames in [0, 255] at the function's size.
    """
    if precision == "int8":
        calibrated = calibrate(function, calibration)
        return quantize(calibrated, input_block(calibrated))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf.Module())
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    with quiet_stderr():
        return converter.convert()


def with_metadata(flatbuffer: bytes, info: ExportInfo) -> bytes:
    """`flatbuffer` with `info` (and the input convention) as JSON in metadata "scl_tf"."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    record = json.dumps({**info.to_dict(), "input": INPUT_CONVENTION}).encode()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(record, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def read_info(flatbuffer: bytes, source: str) -> ExportInfo | None:
    """The ExportInfo stored by `with_metadata`, None for a .tflite file without.

    Raises:
      ValueError: naming `source`, when the metadata is unreadable.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            try:
                return ExportInfo.from_dict(json.loads(data))
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(f"{source}: unreadable scl_tf metadata ({error})") from None
    return None


def run(interpreter, images: np.ndarray) -> dict[str, np.ndarray]:
    """{output name: array [B, ...]} of the serving_default signature on images [B, H, W, 3],
    one image per call (the file's batch is 1)."""
    runner = interpreter.get_signature_runner(SIGNATURE)
    (name,) = interpreter.get_signature_list()[SIGNATURE]["inputs"]
    outputs = [runner(**{name: image[None]}) for image in images]
    return {key: np.concatenate([output[key] for output in outputs]) for key in outputs[0]}


def bound_runner(interpreter, images: np.ndarray) -> Callable[[], None]:
    """A no-argument call running a .tflite file on fixed images, set as its input once, the
    outputs left in the interpreter: timing it counts the model alone (as
    `runtime.BoundRunner` does for ONNX Runtime).

    Args:
      images: float32 [B, H, W, 3] of the file's input shape (B = 1 for export/to_tflite.py).

    Raises:
      ValueError: naming --size and --batch, when the file's input has another shape.
    """
    (detail,) = interpreter.get_input_details()
    shape = tuple(int(dim) for dim in detail["shape"])
    if shape != images.shape:
        raise ValueError(
            f"--size, --batch: the TFLite file takes {shape[0]} image(s) of "
            f"{shape[1]}x{shape[2]}, not {images.shape[0]} of {images.shape[1]}x{images.shape[2]}"
        )
    interpreter.set_tensor(detail["index"], images.astype(detail["dtype"]))
    return interpreter.invoke


def tflite_parity_predictor(interpreter) -> parity.Predictor:
    """(softmax of the logits, labels) of an exported .tflite model, for parity checks."""

    def predict(images: np.ndarray):
        outputs = run(interpreter, images)
        return parity.softmax(outputs["logits"]), outputs["labels"]

    return predict


def export_tflite(
    model: TFModel,
    input_size: tuple[int, int],
    precision: str,
    frames: list[str],
    calibration: Iterable[np.ndarray] | None = None,
    min_agreement: float = CalibrationConfig.min_agreement,
    min_fp16_agreement: float = ExportConfig.min_fp16_agreement,
):
    """Converts `model`, stores its ExportInfo, and checks the file against TensorFlow.

    fp32 passes parity's criterion, as ONNX files do (max |dprob| <= 1e-4); fp16 and int8
    keep TensorFlow's labels on at least `min_fp16_agreement` / `min_agreement` of the
    `frames`' pixels (scl_tf.export.agreement).

    Args:
      input_size: (H, W) of the file's input.
      frames: real image files compared (at least one for fp16 and int8).
      calibration: int8: float32 [1, H, W, 3] frames (see scl_tf.export.calibration).

    Returns:
      (the .tflite bytes with metadata, the ParityReport or AgreementReport; check
      `report.passed`).
    """
    function = fixed_function(model, input_size)
    info = dataclasses.replace(
        model.info,
        outputs=tuple(sorted(function.structured_outputs)),
        precision=precision,
        input_size=tuple(input_size),
    )
    flatbuffer = with_metadata(convert(function, precision, calibration), info)
    exported = tflite_parity_predictor(runs.tflite_interpreter(flatbuffer))
    if precision == "fp32":
        cases = parity.parity_cases(input_size, frames)
        return flatbuffer, parity.check_parity(tf_predictor(model), exported, cases, precision)
    bar, flag = {
        "int8": (min_agreement, "--min_agreement"),
        "fp16": (min_fp16_agreement, "--min_fp16_agreement"),
    }[precision]
    report = agreement.check_agreement(
        tf_predictor(model), exported, input_size, frames, bar, "TensorFlow fp32", precision, flag
    )
    return flatbuffer, report
