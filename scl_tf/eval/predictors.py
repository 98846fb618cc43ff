"""Every kind of model as one callable: float RGB images -> softmax probabilities.

    predictor = load_predictor("runs/demo")              # a model dir of scl_tf.train
    predictor = load_predictor("runs/demo/model.keras")  # a saved Keras model
    predictor = load_predictor("export/saved_model")     # a SavedModel folder
    predictor = load_predictor("export/model.onnx")      # ONNX, run with ONNX Runtime
    predictor = load_predictor("export/model.tflite")    # TFLite, run with LiteRT
    probabilities = predictor(images)  # float32 [B, H, W, 3] in [0, 255] -> [B, H, W, C]

A SavedModel (its `serving_default` signature), an ONNX or a TFLite model (its
`serving_default` signature) may take float32 or uint8 images and return several outputs; the
one used is found by name: `logits` (softmax applied here, in float32) before `probabilities`.
A model with a single output of another name (Keras' `model.export` calls it `output_0`) is
taken to return logits, as scl_tf models do. A model whose input size is fixed (e.g. ONNX with
--input_size, every TFLite file of export/to_tflite.py) gets smaller images padded (edge
pixels repeated) and its output cropped; `with_model_tiles` makes inference cut larger images
into tiles of that size. Exports of scl_tf (export/) also carry their class names and colours.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from scl_tf import runs
from scl_tf.config import InferenceConfig
from scl_tf.data.labels import LabelSpec
from scl_tf.runs import ModelError

SIGNATURE = "serving_default"
INPUT_DTYPES = {
    "float32": np.float32,
    "uint8": np.uint8,
    "tensor(float)": np.float32,
    "tensor(uint8)": np.uint8,
}


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A loaded model: `predictor(images)` maps float32 [B, H, W, 3] RGB in [0, 255] to float32
    softmax probabilities [B, H, W, C] (numpy arrays).

    Attributes:
      run: the model-specific call.
      source: what was loaded, named in errors.
      kind: "keras", "saved_model", "onnx" or "tflite".
      input_size: (height, width) the model is fixed to, None if it takes any size.
      labels: the classes an export of scl_tf describes in its metadata, else None.
    """

    run: Callable[[np.ndarray], np.ndarray]
    source: str
    kind: str
    input_size: tuple[int, int] | None = None
    labels: LabelSpec | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        height, width = images.shape[1:3]
        if self.input_size is None:
            probabilities = self.run(images)
        elif height > self.input_size[0] or width > self.input_size[1]:
            raise ModelError(
                f"{self.source}: takes {self.input_size[0]}x{self.input_size[1]} "
                f"images at most, got {height}x{width}; use --tile="
                f"{self.input_size[0]}x{self.input_size[1]}"
            )
        else:
            padding = (
                (0, 0),
                (0, self.input_size[0] - height),
                (0, self.input_size[1] - width),
                (0, 0),
            )
            probabilities = self.run(np.pad(images, padding, mode="edge"))[:, :height, :width]
        probabilities = np.asarray(probabilities, np.float32)
        if probabilities.ndim != 4 or probabilities.shape[:3] != images.shape[:3]:
            raise ModelError(
                f"{self.source}: returned shape {probabilities.shape} for images of "
                f"shape {np.shape(images)}; expected [B, H, W, C] at the input's size"
            )
        return probabilities


def with_model_tiles(config: InferenceConfig, predictor: Predictor) -> InferenceConfig:
    """`config`, with tiles of the model's fixed input size if it has one and none are set."""
    if predictor.input_size is None or config.tile is not None:
        return config
    return dataclasses.replace(config, tile=predictor.input_size)


def _fixed_size(shape, source: str) -> tuple[int, int] | None:
    """(H, W) of an NHWC input shape whose H and W are fixed numbers; None if both are free.

    Raises:
      ModelError: the shape is not [B, H, W, 3], or only one of H and W is fixed.
    """
    if len(shape) != 4 or shape[3] != 3:
        raise ModelError(f"{source}: expected an RGB image input [B, H, W, 3], got {shape}")
    fixed = [isinstance(dim, int) and dim > 0 for dim in shape[1:3]]
    if fixed[0] != fixed[1]:
        raise ModelError(f"{source}: input {shape} fixes one of H and W only")
    return (shape[1], shape[2]) if fixed[0] else None


def choose_output(names: list[str], source: str) -> tuple[str, bool]:
    """The output to read among `names`, and whether it holds logits (else probabilities).

    Raises:
      ModelError: several outputs, none named like logits or probabilities.
    """
    for marker, logits in (("logit", True), ("prob", False)):
        for name in names:
            if marker in name.lower():
                return name, logits
    if len(names) == 1:
        return names[0], True
    raise ModelError(
        f"{source}: no output named like 'logits' or 'probabilities' among {sorted(names)}"
    )


def _softmax(logits) -> np.ndarray:
    """float32 softmax over the last axis."""
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()


def _as_input(images: np.ndarray, dtype) -> np.ndarray:
    """float32 images in [0, 255] in the model's input dtype (uint8: rounded and clipped)."""
    if dtype == np.uint8:
        return np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return images.astype(np.float32, copy=False)


def _input_dtype(type_name: str, source: str):
    dtype = INPUT_DTYPES.get(type_name)
    if dtype is None:
        raise ModelError(
            f"{source}: input type {type_name} is not supported (float32 or uint8 RGB images)"
        )
    return dtype


def _export_labels(read_info, source: str) -> LabelSpec | None:
    """The LabelSpec that an scl_tf export's metadata describes, None for a model without.

    Args:
      read_info: () -> the model's ExportInfo (scl_tf.export.metadata), or None.
    """
    from scl_tf.export import metadata

    try:
        info = read_info()
        return None if info is None else metadata.label_spec(info.dataset, info.class_names)
    except ValueError as error:
        raise ModelError(f"{source}: unreadable scl_tf metadata: {error}") from None


def keras_predictor(model, source: str) -> Predictor:
    """Predictor of a Keras model mapping float RGB [B, H, W, 3] in [0, 255] to logits."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def probabilities(images):
        return tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)

    return Predictor(lambda images: probabilities(images).numpy(), source, "keras")


def saved_model_predictor(path: str) -> Predictor:
    """Predictor of a SavedModel folder through its serving_default signature."""
    loaded, info = runs.load_saved_model(path)
    if SIGNATURE not in loaded.signatures:
        raise ModelError(
            f"{path}: SavedModel without a {SIGNATURE!r} signature (has "
            f"{sorted(loaded.signatures)})"
        )
    signature = loaded.signatures[SIGNATURE]
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one image input, the signature takes {sorted(inputs)}")
    ((input_name, spec),) = inputs.items()
    dtype = _input_dtype(spec.dtype.name, path)
    output, logits = choose_output(list(signature.structured_outputs), path)

    def run(images):
        # Looked up through `loaded` on each call: the signature's variables live as long as it.
        call = loaded.signatures[SIGNATURE]
        result = call(**{input_name: tf.constant(_as_input(images, dtype))})[output]
        return _softmax(result) if logits else result.numpy()

    return Predictor(
        run,
        path,
        "saved_model",
        _fixed_size(spec.shape.as_list(), path),
        _export_labels(lambda: info, path),
    )


def onnx_predictor(path: str, options=None) -> Predictor:
    """Predictor of an ONNX model run by ONNX Runtime on `options`' provider (default CPU)."""
    from scl_tf.export import metadata

    session = runs.onnx_session(path, options, flag="--model")
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(
            f"{path}: expected one image input, the model takes {[item.name for item in inputs]}"
        )
    dtype = _input_dtype(inputs[0].type, path)
    output, logits = choose_output([item.name for item in session.get_outputs()], path)

    def run(images):
        result = session.run([output], {inputs[0].name: _as_input(images, dtype)})[0]
        return _softmax(result) if logits else result

    props = session.get_modelmeta().custom_metadata_map
    labels = _export_labels(
        lambda: metadata.from_onnx_props(props, path) if "class_names" in props else None, path
    )
    return Predictor(run, path, "onnx", _fixed_size(inputs[0].shape, path), labels)


def tflite_predictor(path: str) -> Predictor:
    """Predictor of a TFLite file through its serving_default signature, one image per call,
    run by `scl_tf.runs.tflite_interpreter` (LiteRT where installed)."""
    from scl_tf.export import tflite

    interpreter = runs.tflite_interpreter(path)
    signatures = interpreter.get_signature_list()
    if tflite.SIGNATURE not in signatures:
        raise ModelError(
            f"{path}: TFLite model without a {tflite.SIGNATURE!r} signature (has "
            f"{sorted(signatures)})"
        )
    runner = interpreter.get_signature_runner(tflite.SIGNATURE)
    inputs = runner.get_input_details()
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one image input, the model takes {sorted(inputs)}")
    (spec,) = inputs.values()
    dtype = _input_dtype(np.dtype(spec["dtype"]).name, path)
    output, logits = choose_output(list(runner.get_output_details()), path)
    shape = [int(dim) if dim > 0 else None for dim in spec["shape_signature"]]

    def run(images):
        result = tflite.run(interpreter, _as_input(images, dtype))[output]
        return _softmax(result) if logits else result

    with open(path, "rb") as source:
        flatbuffer = source.read()
    labels = _export_labels(lambda: tflite.read_info(flatbuffer, path), path)
    return Predictor(run, path, "tflite", _fixed_size(shape, path), labels)


def load_predictor(
    source: str, checkpoint: str = "final", eval_weights: str | None = None, options=None
) -> Predictor:
    """Loads any supported model (see the module docstring) through `scl_tf.runs`.

    Args:
      source: a model dir of scl_tf.train, a `.keras` file, a SavedModel folder, an `.onnx`
        or a `.tflite` file.
      checkpoint, eval_weights: for a model dir, as in `scl_tf.runs.load_keras`.
      options: for an .onnx file, its `scl_tf.export.runtime.RuntimeOptions` (default CPU).
    Raises:
      ModelError: `source` is none of these, or cannot be used.
    """
    if os.path.isfile(source) and source.endswith(".onnx"):
        return onnx_predictor(source, options)
    if os.path.isfile(source) and source.endswith(".tflite"):
        return tflite_predictor(source)
    if os.path.isdir(source) and not runs.is_run_dir(source) and runs.is_saved_model(source):
        return saved_model_predictor(source)
    if (os.path.isfile(source) and source.endswith(".keras")) or runs.is_run_dir(source):
        return keras_predictor(runs.load_keras(source, checkpoint, eval_weights), source)
    raise ModelError(
        f"{source}: not a model dir of scl_tf.train ({runs.CONFIG_NAME}), a "
        f".keras file, a SavedModel folder ({runs.SAVED_MODEL_FILE}), an .onnx or a "
        ".tflite file"
    )
