"""The layout of a run's model dir, and loading its model back for evaluation and export.

A model dir written by `scl_tf.train` holds:
  config.json        the run's Config (as a dict) plus num_classes, class_names, dataset
  labeled_list.txt   the labeled images the run used
  checkpoints/       the last few checkpoints (student, teacher, optimizer, step, ...)
  best/              the checkpoint with the best validation mIoU
  logs/              TensorBoard events
  model.keras        the evaluation weights (EMA teacher by default) at the end of the run
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import tensorflow as tf

from scl_tf.config import Config, ModelConfig
from scl_tf.models import build_model

CONFIG_NAME = "config.json"
EXPORT_NAME = "model.keras"
LATEST_FOLDER = "checkpoints"
BEST_FOLDER = "best"
CHECKPOINT_CHOICES = ("final", "latest", "best")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What config.json says about a run's model."""

    model: ModelConfig
    num_classes: int
    class_names: tuple[str, ...]
    dataset: str
    eval_weights: str  # "ema" (teacher) or "student"


def write_config(config: Config, num_classes: int, class_names) -> None:
    """Writes config.json into config.model_dir."""
    os.makedirs(config.model_dir, exist_ok=True)
    record = {
        **dataclasses.asdict(config),
        "num_classes": num_classes,
        "class_names": list(class_names),
    }
    with open(os.path.join(config.model_dir, CONFIG_NAME), "w") as out:
        json.dump(record, out, indent=2)


def read_info(model_dir: str) -> RunInfo:
    """Reads `model_dir`/config.json.

    Raises:
      FileNotFoundError: `model_dir` is not a run folder.
    """
    path = os.path.join(model_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir}: not a model dir of scl_tf.train (no {CONFIG_NAME})")
    with open(path) as source:
        record = json.load(source)
    # The ImageNet weights file only mattered for initialisation; it may be gone by now.
    model = ModelConfig(**{**record["model"], "weights": None})
    return RunInfo(
        model=model,
        num_classes=int(record["num_classes"]),
        class_names=tuple(record["class_names"]),
        dataset=record["data"]["dataset"],
        eval_weights=record["train"]["eval_weights"],
    )


def build_networks(model: ModelConfig, num_classes: int) -> tuple[keras.Model, keras.Model]:
    """A (student, teacher) pair of DeepLabV3+ models; only the student loads --weights."""
    arguments = dict(
        backbone=model.backbone,
        num_classes=num_classes,
        output_stride=model.output_stride,
        low_level_stride=model.low_level_stride,
        sync_batchnorm=model.sync_batchnorm,
        decoder_convs=model.decoder_convs,
        decoder_kernel_size=model.decoder_kernel_size,
    )
    return build_model(weights=model.weights, **arguments), build_model(**arguments)


def checkpoint_path(model_dir: str, which: str) -> str:
    """Path prefix of the latest or best checkpoint of a run.

    Raises:
      FileNotFoundError: the run has no such checkpoint.
    """
    folder = os.path.join(model_dir, BEST_FOLDER if which == "best" else LATEST_FOLDER)
    path = tf.train.latest_checkpoint(folder)
    if path is None:
        raise FileNotFoundError(f"{folder}: no checkpoint")
    return path


def load_model(
    source: str, checkpoint: str = "final", eval_weights: str | None = None
) -> keras.Model:
    """The segmentation model of a run: float RGB [B, H, W, 3] in [0, 255] -> logits.

    Args:
      source: a `.keras` file, or a model dir of scl_tf.train.
      checkpoint: for a model dir: "final" (its model.keras, falling back to the latest
        checkpoint while the run has not finished), "latest" or "best".
      eval_weights: for checkpoints: "ema" (the teacher) or "student"; default: the run's
        --eval_weights. Given with checkpoint="final", the latest checkpoint is read instead
        of model.keras (which holds only the run's --eval_weights).

    Raises:
      FileNotFoundError: `source` is neither, or lacks what was asked for.
      ValueError: an unknown `checkpoint` or `eval_weights`.
    """
    if checkpoint not in CHECKPOINT_CHOICES:
        raise ValueError(f"--checkpoint: expected one of {CHECKPOINT_CHOICES}, got {checkpoint!r}")
    if os.path.isfile(source) and source.endswith(".keras"):
        return keras.saving.load_model(source, compile=False)
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source}: neither a .keras file nor a model dir")
    final = os.path.join(source, EXPORT_NAME)
    if checkpoint == "final" and os.path.isfile(final) and eval_weights is None:
        return keras.saving.load_model(final, compile=False)
    info = read_info(source)
    eval_weights = eval_weights or info.eval_weights
    if eval_weights not in ("ema", "student"):
        raise ValueError(f"--eval_weights: expected 'ema' or 'student', got {eval_weights!r}")
    student, teacher = build_networks(info.model, info.num_classes)
    path = checkpoint_path(source, "best" if checkpoint == "best" else "latest")
    tf.train.Checkpoint(student=student, teacher=teacher).restore(path).expect_partial()
    return teacher if eval_weights == "ema" else student
