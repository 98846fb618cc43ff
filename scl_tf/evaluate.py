"""Evaluation entry point: per-class IoU, mIoU and pixel accuracy on a labeled split.

    python -m scl_tf.evaluate --flagfile=configs/cityscapes.flags --checkpoint=best \
        --scales=0.5,1.0,2.0 --flip --tile=1024x1024
    python -m scl_tf.evaluate --dataset=cityscapes --data_dir=DATA --model=export/model.onnx
    python -m scl_tf.evaluate --dataset=cityscapes --data_dir=DATA --predictions=submission/

The model is --model (a model dir, .keras file, SavedModel folder or .onnx file, all run by the
same code) or the run in --model_dir; the dataset comes from the dataset flags, or else from
the run's config.json. With --predictions, label PNGs written earlier (e.g. by scl_tf.predict)
are scored instead; they pair with the images by file name, and names that do not pair up stop
the evaluation. The scores equal cityscapesscripts' evalPixelLevelSemanticLabeling. A table is
printed and a JSON record written to --output, else into the model dir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from scl_tf import config as config_lib  # noqa: E402
from scl_tf.data import datasets  # noqa: E402
from scl_tf.data import labels as labels_lib  # noqa: E402
from scl_tf.data.datasets import DatasetError, Sample  # noqa: E402
from scl_tf.data.labels import LabelSpec  # noqa: E402
from scl_tf.eval import inference, metrics, predictors  # noqa: E402

FLAGS = flags.FLAGS


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
    config: config_lib.InferenceConfig,
    verbose: bool = True,
) -> Evaluation:
    """Scores `predictor` under the inference `config` on image/label pairs.

    Raises:
      predictors.ModelError: the model's class count differs from the dataset's.
    """
    import keras  # the progress bar only

    from scl_tf.data import pipeline

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
            raise predictors.ModelError(
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
        raise config_lib.ConfigError(
            f"--format: predictions are scored as labelIds or trainIds, not {fmt!r}"
        )
    values = labels_lib.cityscapes("labelIds") if spec.name == "cityscapes" else spec
    table = np.array(values.value_to_train_id, np.int32)
    table[table == labels_lib.IGNORE_LABEL] = num_classes
    return table


def read_label_file(path: str, table: np.ndarray, what: str) -> np.ndarray:
    """int32 [H, W]: an 8-bit single-channel PNG mapped through `table`.

    Raises:
      DatasetError: unreadable, not 8-bit single-channel, or holding values the table marks
        invalid (negative); names the file.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise DatasetError(
                    f"{what} {path} has mode {image.mode!r}; expected an 8-bit single-channel PNG"
                )
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"unreadable {what} {path}: {error}") from error
    mapped = table[values]
    if (mapped < 0).any():
        raise DatasetError(
            f"{what} {path} holds values that are not valid labels: "
            f"{np.unique(values[mapped < 0]).tolist()}"
        )
    return mapped


def evaluate_predictions(pairs: list[tuple[Sample, str]], spec: LabelSpec, fmt: str) -> Evaluation:
    """Scores prediction files (see `pair_predictions`) written as `fmt` against the labels."""
    table = prediction_table(spec, fmt)
    num_classes = spec.num_classes
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    for sample, path in pairs:
        labels = read_label_file(sample.label, spec.value_to_train_id, "label")
        predictions = read_label_file(path, table, "prediction")
        if labels.shape != predictions.shape:
            raise DatasetError(
                f"size mismatch: label {sample.label} is {labels.shape} but "
                f"prediction {path} is {predictions.shape} (HxW)"
            )
        confusion += count_pixels(labels, predictions, num_classes)
    return Evaluation(confusion, spec.class_names, len(pairs))


def run_data_config(model_dir: str) -> config_lib.DataConfig:
    """The DataConfig a run was trained with, from its config.json."""
    record = predictors.run_data_record(model_dir)
    fields = {
        name: tuple(tuple(item) if isinstance(item, list) else item for item in value)
        if isinstance(value, list)
        else value
        for name, value in record.items()
    }
    return config_lib.DataConfig(**fields)


def result_name(what: str, split: str, config: config_lib.InferenceConfig | None) -> str:
    """eval_<what>_<split>[_s<scales>[_flip][_tile<HxW>]].json, e.g.
    eval_best_val_s0.5-1-2_flip_tile1024x1024.json or eval_model.onnx_val_s1.json; no
    inference tag for prediction files."""
    if config is None:
        return f"eval_{what}_{split}.json"
    tag = "s" + "-".join(f"{scale:g}" for scale in config.scales)
    tag += "_flip" if config.flip else ""
    tag += f"_tile{config.tile[0]}x{config.tile[1]}" if config.tile else ""
    return f"eval_{what}_{split}_{tag}.json"


def data_config(values, run: str | None) -> config_lib.DataConfig:
    """The dataset flags' DataConfig, else the run's."""
    if values.dataset:
        return config_lib.data_from_flags(values)
    if run is None:
        raise config_lib.ConfigError(
            "--dataset: required (with --data_dir), unless --model_dir "
            "or --model is a model dir of scl_tf.train"
        )
    return run_data_config(run)


def output_path(values, source: str | None, run: str | None, name: str) -> str | None:
    """--output, else `name` in the run's model dir, else beside the model file; None when
    scoring prediction files with neither --output nor --model_dir."""
    if values.output:
        return values.output
    if run:
        return os.path.join(run, name)
    if source:
        return os.path.join(os.path.dirname(os.path.abspath(os.path.normpath(source))), name)
    return None


def evaluate_from_flags(values) -> tuple[Evaluation, dict, str | None]:
    """Runs the evaluation the flags ask for: (scores, JSON context, JSON path or None)."""
    if values.predictions and values.model:
        raise config_lib.ConfigError("--predictions and --model: give one")
    source = None if values.predictions else values.model or values.model_dir
    if not source and not values.predictions:
        raise config_lib.ConfigError(
            "--model: required (or --model_dir of a training run, or --predictions)"
        )
    given = (
        {"predictions": values.predictions}
        if values.predictions
        else {"model" if values.model else "model_dir": source}
    )
    for flag, path in given.items():
        if not os.path.exists(path):
            raise config_lib.ConfigError(f"--{flag}: no such file or folder: {path}")
    config = None if values.predictions else config_lib.inference_from_flags(values)
    run = predictors.find_run_dir(source, values.model_dir)
    data = data_config(values, run)
    spec = datasets.label_spec(data)
    samples = datasets.find_pairs(data, values.eval_split)
    datasets.check_headers(samples, f"{data.dataset} {values.eval_split} split")
    context = {"dataset": data.dataset, "split": values.eval_split}
    if values.predictions:
        evaluation = evaluate_predictions(
            pair_predictions(samples, values.predictions), spec, values.format
        )
        context |= {"predictions": values.predictions, "format": values.format}
        what = "predictions"
    else:
        from_run = predictors.is_run_dir(source)
        predictor = predictors.load_predictor(
            source, values.checkpoint, predictors.explicit_eval_weights(values, run)
        )
        config = predictors.with_model_tiles(config, predictor)
        evaluation = evaluate_model(predictor, samples, spec, config)
        context |= {
            "model": source,
            "checkpoint": values.checkpoint if from_run else None,
            "scales": list(config.scales),
            "flip": config.flip,
            "tile": config.tile,
            "tile_stride": config.stride,
        }
        what = values.checkpoint if from_run else os.path.basename(os.path.normpath(source))
    name = result_name(what, values.eval_split, config)
    return evaluation, context, output_path(values, source, run, name)


def main(argv):
    import tensorflow as tf

    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        evaluation, context, output = evaluate_from_flags(FLAGS)
    except (config_lib.ConfigError, DatasetError, predictors.ModelError) as error:
        sys.exit(f"error: {error}")
    except tf.errors.InvalidArgumentError as error:  # a corrupt file, named by scl_tf.data
        sys.exit(f"error: {error.message}")
    print(evaluation.table())
    if output is not None:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as out:
            json.dump(evaluation.record(**context), out, indent=2)
        print(f"Wrote {output}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
