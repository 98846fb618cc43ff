"""The serving module of a segmentation model, its SavedModel, and loading either back.

A SavedModel written here has three signatures, all taking `images` RGB [B, H, W, 3] in
[0, 255] of any B, H, W:
  serving_default   float32 images -> probabilities, labels (, label_ids)
  serving_uint8     uint8 images   -> probabilities, labels (, label_ids)
  serving_logits    float32 images -> logits, labels (, label_ids)   (what the ONNX model holds)
`probabilities` / `logits` are float32 [B, H, W, C], `labels` int32 [B, H, W] train ids and,
for Cityscapes, `label_ids` int32 [B, H, W] labelIds. Its ExportInfo is
`assets.extra/scl_tf.json` (scl_tf.runs.SAVED_MODEL_INFO).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping

import keras
import tensorflow as tf

from scl_tf import runs
from scl_tf.data import labels as labels_lib
from scl_tf.export.metadata import INPUT_CONVENTION, ExportInfo, make_info
from scl_tf.models import build_model

SIGNATURE_FLOAT = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"
SIGNATURE_LOGITS = "serving_logits"
_ANY_SIZE = [None, None, None, 3]


def head_outputs(
    logits: tf.Tensor, label_ids: tuple[int, ...] | None = None, probabilities: bool = True
) -> dict[str, tf.Tensor]:
    """The served outputs of float32 logits [B, H, W, C].

    Returns:
      {"probabilities" (softmax) or "logits": float32 [B, H, W, C], "labels": int32 [B, H, W]
      argmax train ids, and "label_ids": int32 [B, H, W] `label_ids[labels]` when `label_ids`
      (C ints) is given}.
    """
    labels = tf.argmax(logits, axis=-1, output_type=tf.int32)
    outputs = {"probabilities": tf.nn.softmax(logits)} if probabilities else {"logits": logits}
    outputs["labels"] = labels
    if label_ids is not None:
        # A constant of the traced graph: a captured eager tensor would become an input of
        # the SavedModel's functions, which tf2onnx does not freeze.
        outputs["label_ids"] = tf.gather(tf.constant(label_ids, tf.int32), labels)
    return outputs


class SegmentationServer(tf.Module):
    """A Keras segmentation model (float RGB [0, 255] -> logits) behind serving functions.

    Args:
      model: keras.Model, [B, H, W, 3] -> float32 logits [B, H, W, C].
      label_ids: C dataset label values of the train ids (Cityscapes labelIds), or None.
    """

    def __init__(self, model: keras.Model, label_ids=None):
        super().__init__(name="segmentation_server")
        self.model = model
        self._label_ids = None if label_ids is None else tuple(int(v) for v in label_ids)

    def _logits(self, images):
        return tf.cast(self.model(images, training=False), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec(_ANY_SIZE, tf.float32, name="images")])
    def serve_float(self, images):
        """float32 [B, H, W, 3] -> probabilities, labels (, label_ids)."""
        return head_outputs(self._logits(images), self._label_ids)

    @tf.function(input_signature=[tf.TensorSpec(_ANY_SIZE, tf.uint8, name="images")])
    def serve_uint8(self, images):
        """uint8 [B, H, W, 3] -> probabilities, labels (, label_ids)."""
        return head_outputs(self._logits(tf.cast(images, tf.float32)), self._label_ids)

    @tf.function(input_signature=[tf.TensorSpec(_ANY_SIZE, tf.float32, name="images")])
    def serve_logits(self, images):
        """float32 [B, H, W, 3] -> logits, labels (, label_ids)."""
        return head_outputs(self._logits(images), self._label_ids, probabilities=False)

    def signature_functions(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """{signature name: concrete function}, for tf.saved_model.save."""
        return {
            SIGNATURE_FLOAT: self.serve_float.get_concrete_function(),
            SIGNATURE_UINT8: self.serve_uint8.get_concrete_function(),
            SIGNATURE_LOGITS: self.serve_logits.get_concrete_function(),
        }


@dataclasses.dataclass(frozen=True)
class TFModel:
    """A segmentation model in TensorFlow, built from a run or loaded from a SavedModel.

    Attributes:
      signatures: {SIGNATURE_*: f(images=[B, H, W, 3]) -> dict of outputs}.
      info: what the model is; `outputs` those of serving_default.
      owner: the object holding the variables the signatures use (keeps them alive).
    """

    signatures: Mapping[str, Callable[..., Mapping[str, tf.Tensor]]]
    info: ExportInfo
    owner: object


def served_info(info: ExportInfo) -> ExportInfo:
    """`info` with the outputs of serving_default."""
    outputs = ("probabilities", "labels") + (() if info.label_ids is None else ("label_ids",))
    return dataclasses.replace(info, outputs=outputs, precision="fp32", input_size=None)


def from_keras(model: keras.Model, info: ExportInfo) -> TFModel:
    """The serving signatures of a Keras model, in memory."""
    server = SegmentationServer(model, info.label_ids)
    return TFModel(server.signature_functions(), served_info(info), server)


def run_info(model_dir: str, eval_weights: str | None = None) -> ExportInfo:
    """The ExportInfo of a run's evaluation model, from its config.json alone.

    Raises:
      scl_tf.runs.ModelError: `model_dir` is not a run folder.
    """
    run = runs.read_info(model_dir)
    return make_info(
        run.dataset,
        run.model.backbone,
        run.model.output_stride,
        run.class_names,
        eval_weights or run.eval_weights,
    )


def run_model(
    model_dir: str, checkpoint: str = "final", eval_weights: str | None = None
) -> tuple[keras.Model, ExportInfo]:
    """The evaluation model of a run of scl_tf.train (the EMA teacher by default).

    Args:
      model_dir: the run's --model_dir.
      checkpoint, eval_weights: as `scl_tf.runs.load_keras`.

    Raises:
      scl_tf.runs.ModelError: `model_dir` is not a run folder or lacks the checkpoint.
    """
    info = run_info(model_dir, eval_weights)
    return runs.load_keras(model_dir, checkpoint, eval_weights), info


def untrained_model(
    backbone: str, output_stride: int, dataset: str, num_classes: int | None = None
) -> tuple[keras.Model, ExportInfo]:
    """A randomly initialised DeepLabV3+ with a dataset's classes (for latency benchmarks).

    Args:
      dataset: "cityscapes" (19 classes), "camvid" (11) or "folder" (`num_classes`).
    """
    if dataset == "folder":
        if not num_classes:
            raise ValueError("--num_classes: required with --dataset=folder")
        class_names = labels_lib.folder(num_classes).class_names
    else:
        class_names = {"cityscapes": labels_lib.cityscapes, "camvid": labels_lib.camvid}[
            dataset
        ]().class_names
    model = build_model(backbone, len(class_names), output_stride)
    return model, make_info(dataset, backbone, output_stride, class_names, "untrained")


def save_saved_model(model: keras.Model, info: ExportInfo, path: str) -> TFModel:
    """Writes `model` with the serving signatures and `info` as a SavedModel at `path`."""
    served = from_keras(model, info)
    tf.saved_model.save(served.owner, path, signatures=dict(served.signatures))
    metadata_path = os.path.join(path, runs.SAVED_MODEL_INFO)
    os.makedirs(os.path.dirname(metadata_path), exist_ok=True)
    with open(metadata_path, "w") as out:
        json.dump({**served.info.to_dict(), "input": INPUT_CONVENTION}, out, indent=2)
    return served


def saved_model_info(path: str) -> ExportInfo:
    """The ExportInfo of a SavedModel of `save_saved_model`, without loading the model.

    Raises:
      scl_tf.runs.ModelError: `path` is not a SavedModel, or has no scl_tf metadata.
    """
    info = runs.saved_model_info(path)
    if info is None:
        raise runs.ModelError(
            f"{path}: a SavedModel without {runs.SAVED_MODEL_INFO}; export "
            "it with export/to_saved_model.py"
        )
    return info


def load_saved_model(path: str) -> TFModel:
    """A SavedModel written by `save_saved_model`.

    Raises:
      scl_tf.runs.ModelError: `path` is not a SavedModel, has no scl_tf metadata or signatures.
    """
    info = saved_model_info(path)
    loaded, _ = runs.load_saved_model(path)
    missing = {SIGNATURE_FLOAT, SIGNATURE_LOGITS} - set(loaded.signatures)
    if missing:
        raise runs.ModelError(
            f"{path}: signatures {sorted(missing)} missing; export it with export/to_saved_model.py"
        )
    return TFModel(loaded.signatures, info, loaded)


def source_info(source: str, eval_weights: str | None = None) -> ExportInfo:
    """The ExportInfo of a SavedModel or model dir, read without loading the model.

    Raises:
      scl_tf.runs.ModelError: `source` is neither, or unreadable.
    """
    if runs.is_saved_model(source):
        return saved_model_info(source)
    if runs.is_run_dir(source):
        return run_info(source, eval_weights)
    raise runs.ModelError(
        f"{source}: neither a model dir of scl_tf.train ({runs.CONFIG_NAME}) "
        f"nor a SavedModel ({runs.SAVED_MODEL_FILE})"
    )


def load_source(source: str, checkpoint: str = "final", eval_weights: str | None = None) -> TFModel:
    """A SavedModel of `save_saved_model`, or the evaluation model of a run's model dir."""
    source_info(source, eval_weights)  # names what `source` is not
    if runs.is_saved_model(source):
        return load_saved_model(source)
    return from_keras(*run_model(source, checkpoint, eval_weights))


def signature_runner(model: TFModel, signature: str, images) -> Callable[[], None]:
    """A no-argument call of one signature on fixed `images` (float32 [B, H, W, 3]).

    The input tensor is made once, so repeated calls time the model alone (on CPU the call
    returns when the outputs are computed).
    """
    function = model.signatures[signature]
    tensor = tf.constant(images)

    def call():
        function(images=tensor)

    return call
