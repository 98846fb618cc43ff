"""Scoring a segmentation model or prediction files on a labeled split.

The confusion matrix of every image is summed; per-class IoU, mIoU and pixel accuracy follow
from it and equal cityscapesscripts' evalPixelLevelSemanticLabeling (tests/test_evaluate.py).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from scl_tf.config import ConfigError, InferenceConfig
from scl_tf.data import datasets, decode, pipeline
from scl_tf.data import labels as labels_lib
from scl_tf.data.datasets import DatasetError, Sample
from scl_tf.data.labels import LabelSpec
from scl_tf.eval import inference, metrics
from scl_tf.runs import ModelError


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Scores of one evaluation.

    Attributes:
      confusion: int64 [C, C + 1] pixel counts, [ground truth, prediction]; the last column
        counts pixels predicted as a label value that is not scored (only prediction files can
        hold those): a false negative of the true class, a false positive of none, as in
        cityscapesscripts.
      class_names: C names.
      num_images: images scored.
      seconds_per_image: mean inference time, None when scoring prediction files.
    """

    confusion: np.ndarray
    class_names: tuple[str, ...]
    num_images: int
    seconds_per_image: float | None = None

    def _square(self) -> np.ndarray:
        num_classes = len(self.class_names)
        return np.concatenate([self.confusion, np.zeros((1, num_classes + 1), np.int64)])

    def class_iou(self) -> np.ndarray:
        """float64 [C]; NaN for a class neither in the ground truth nor predicted."""
        return metrics.class_iou(self._square())[: len(self.class_names)]

    def miou(self) -> float:
        """Mean of the defined class IoUs."""
        ious = self.class_iou()
        return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")

    def pixel_accuracy(self) -> float:
        return metrics.pixel_accuracy(self._square())

    def record(self, **context) -> dict:
        """JSON-ready scores (IoUs as fractions, null where undefined) plus `context`."""

        def number(value):
            return None if np.isnan(value) else float(value)

        return {
            **context,
            "num_images": self.num_images,
            "seconds_per_image": self.seconds_per_image,
            "miou": number(self.miou()),
            "pixel_accuracy": number(self.pixel_accuracy()),
            "class_iou": {
                name: number(iou) for name, iou in zip(self.class_names, self.class_iou())
            },
            "confusion": self.confusion.tolist(),
            "confusion_layout": "rows: ground-truth train ids; columns: predicted train "
            "ids, then one for label values that are not scored",
        }

    def table(self) -> str:
        """Per-class IoU, mIoU and pixel accuracy in percent, one per line."""
        width = max(len(name) for name in (*self.class_names, "pixel accuracy"))
        lines = [f"{'class':<{width}}   IoU %"]
        lines += [
            f"{name:<{width}}  " + ("    -" if np.isnan(iou) else f"{100 * iou:6.2f}")
            for name, iou in zip(self.class_names, self.class_iou())
        ]
        defined = int(np.isfinite(self.class_iou()).sum())
        lines += [
            "-" * (width + 8),
            f"{'mIoU':<{width}}  {100 * self.miou():6.2f}  ({defined} of "
            f"{len(self.class_names)} classes present)",
            f"{'pixel accuracy':<{width}}  {100 * self.pixel_accuracy():6.2f}",
        ]
        return "\n".join(lines)


def count_pixels(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C + 1] confusion of one image.

    Args:
      labels: int [H, W] train ids, 255 = ignore.
      predictions: int [H, W] in [0, C]; C = a label value that is not scored.
    """
    counts = metrics.confusion_counts(labels, predictions, num_classes + 1)
    return np.asarray(counts, np.int64)[:num_classes]


def evaluate_model(
    predictor: inference.ProbabilityFn,
    samples: list[Sample],
    spec: LabelSpec,
    config: InferenceConfig,
    verbose: bool = True,
) -> Evaluation:
    """Scores `predictor` under the inference `config` on image/label pairs.

    Raises:
      ModelError: the model's class count differs from the dataset's.
    """
    import keras  # the progress bar only

    num_classes = spec.num_classes
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    progress = keras.utils.Progbar(len(samples), unit_name="image", verbose=1 if verbose else 0)
    seconds = 0.0
    for done, element in enumerate(pipeline.eval_dataset(samples, spec), 1):
        start = time.perf_counter()
        probabilities = inference.predict_probabilities(
            predictor, element["image"][0].numpy(), config
        )
        seconds += time.perf_counter() - start
        if probabilities.shape[-1] != num_classes:
            raise ModelError(
                f"the model predicts {probabilities.shape[-1]} classes, "
                f"the {spec.name} labels have {num_classes}"
            )
        confusion += count_pixels(
            element["label"][0].numpy(), probabilities.argmax(axis=-1), num_classes
        )
        progress.update(done)
    return Evaluation(confusion, spec.class_names, len(samples), seconds / len(samples))


def pair_predictions(samples: list[Sample], prediction_dir: str) -> list[tuple[Sample, str]]:
    """(sample, prediction PNG) pairs: a prediction is any PNG under `prediction_dir` whose
    name without extension is the image's.

    Raises:
      DatasetError: listing every image without a prediction, prediction without an image,
        and name found twice.
    """
    if not os.path.isdir(prediction_dir):
        raise DatasetError(f"--predictions: no such folder: {prediction_dir}")
    found: dict[str, str] = {}
    problems = []
    for path in datasets.list_images(prediction_dir):
        key = os.path.splitext(os.path.basename(path))[0]
        if key in found:
            problems.append(f"two predictions for {key}: {found[key]} and {path}")
        found[key] = path
    keys = {os.path.splitext(os.path.basename(sample.image))[0]: sample for sample in samples}
    problems += [
        f"image without prediction: {keys[key].image}" for key in sorted(keys.keys() - found.keys())
    ]
    problems += [
        f"prediction without image: {found[key]}" for key in sorted(found.keys() - keys.keys())
    ]
    datasets.raise_problems(problems, f"predictions in {prediction_dir}")
    return [(keys[key], found[key]) for key in sorted(keys)]


def prediction_table(spec: LabelSpec, fmt: str) -> np.ndarray:
    """int32 [256]: train id of each value a prediction file may hold, C for values that are
    valid but not scored (e.g. Cityscapes' void ids), -1 for values that are invalid.

    Args:
      fmt: "labelIds" (the dataset's label values; Cityscapes labelIds whatever the
        ground-truth format) or "trainIds".
    """
    num_classes = spec.num_classes
    if fmt == "trainIds":
        table = np.full(labels_lib.NUM_LABEL_VALUES, labels_lib.UNDEFINED, np.int32)
        table[:num_classes] = np.arange(num_classes)
        table[labels_lib.IGNORE_LABEL] = num_classes
        return table
    if fmt != "labelIds":
        raise ConfigError(f"--format: predictions are scored as labelIds or trainIds, not {fmt!r}")
    values = labels_lib.cityscapes("labelIds") if spec.name == "cityscapes" else spec
    table = np.array(values.value_to_train_id, np.int32)
    table[table == labels_lib.IGNORE_LABEL] = num_classes
    return table


def evaluate_predictions(pairs: list[tuple[Sample, str]], spec: LabelSpec, fmt: str) -> Evaluation:
    """Scores prediction files (see `pair_predictions`) written as `fmt` against the labels."""
    table = prediction_table(spec, fmt)
    num_classes = spec.num_classes
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    for sample, path in pairs:
        labels = decode.train_ids_of(
            decode.decode_label_file(sample.label), spec.value_to_train_id, sample.label
        )
        predictions = decode.train_ids_of(
            decode.decode_label_file(path, "prediction"), table, path, "prediction"
        )
        if labels.shape != predictions.shape:
            raise DatasetError(
                f"size mismatch: label {sample.label} is {labels.shape} but "
                f"prediction {path} is {predictions.shape} (HxW)"
            )
        confusion += count_pixels(labels, predictions, num_classes)
    return Evaluation(confusion, spec.class_names, len(pairs))
