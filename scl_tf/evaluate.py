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

import json
import os
import sys

from absl import app, flags

from scl_tf import config as config_lib
from scl_tf import flags as flags_lib
from scl_tf import runs
from scl_tf.data import datasets
from scl_tf.data.datasets import DatasetError
from scl_tf.eval import predictors, scoring

FLAGS = flags.FLAGS


def run_data_config(model_dir: str) -> config_lib.DataConfig:
    """The DataConfig a run was trained with, from its config.json."""
    record = runs.read_record(model_dir)["data"]
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
        return flags_lib.data_config(values)
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


def _evaluate_model(predictor, samples, spec, config) -> scoring.Evaluation:
    """scoring.evaluate_model; a file that tf.data cannot read is named in a DatasetError."""
    import tensorflow as tf

    from scl_tf.data import check

    try:
        return scoring.evaluate_model(predictor, samples, spec, config)
    except tf.errors.OpError as error:
        paths = [path for sample in samples for path in (sample.image, sample.label)]
        raise DatasetError(check.bad_file_message(error, paths)) from None


def evaluate_from_flags(values) -> tuple[scoring.Evaluation, dict, str | None]:
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
    config = None if values.predictions else flags_lib.inference_config(values)
    run = runs.find_run_dir(source, values.model_dir)
    data = data_config(values, run)
    spec = datasets.label_spec(data)
    samples = datasets.find_pairs(data, values.eval_split)
    datasets.check_headers(samples, f"{data.dataset} {values.eval_split} split")
    context = {"dataset": data.dataset, "split": values.eval_split}
    if values.predictions:
        evaluation = scoring.evaluate_predictions(
            scoring.pair_predictions(samples, values.predictions), spec, values.format
        )
        context |= {"predictions": values.predictions, "format": values.format}
        what = "predictions"
    else:
        from_run = runs.is_run_dir(source)
        predictor = predictors.load_predictor(
            source, values.checkpoint, flags_lib.explicit_eval_weights(values)
        )
        config = predictors.with_model_tiles(config, predictor)
        evaluation = _evaluate_model(predictor, samples, spec, config)
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
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        evaluation, context, output = evaluate_from_flags(FLAGS)
    except (config_lib.ConfigError, DatasetError, runs.ModelError) as error:
        sys.exit(f"error: {error}")
    print(evaluation.table())
    if output is not None:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as out:
            json.dump(evaluation.record(**context), out, indent=2)
        print(f"Wrote {output}")


def run():
    flags_lib.define_evaluate_flags()
    app.run(main)


if __name__ == "__main__":
    run()
