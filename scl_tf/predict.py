"""Prediction entry point: a folder (or glob) of images -> label PNGs, colour maps or overlays.

    python -m scl_tf.predict --model=runs/demo --input=photos/ --output=out/ --format=overlay
    python -m scl_tf.predict --model=runs/cityscapes --checkpoint=best \
        --input='cityscapes/leftImg8bit/test/*/*.png' --output=submission/ --format=labelIds \
        --scales=0.5,1.0,2.0 --flip --tile=1024x1024

Each image becomes OUTPUT/<its path below the input folder (or below the glob matches' common
folder)>.png, so Cityscapes images keep their city folder and `<city>_<seq>_<frame>` name, as the
benchmark server expects (zip OUTPUT and submit). `--format=labelIds` writes the dataset's label
values (Cityscapes labelIds); the dataset comes from --dataset, the model dir's config.json or
the metadata of an exported model, and without any of them the values are train ids. An
unreadable image is reported and skipped; the command then ends with status 1 after writing the
others.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import sys

from absl import app, flags

from scl_tf import config as config_lib
from scl_tf import flags as flags_lib
from scl_tf import runs
from scl_tf.data import labels as labels_lib
from scl_tf.data.datasets import list_images
from scl_tf.data.labels import LabelSpec
from scl_tf.eval import inference, overlay, predictors
from scl_tf.export import images

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """What a prediction run did: the files written, and (image, reason) of those skipped."""

    written: list[str]
    skipped: list[tuple[str, str]]


def list_inputs(pattern: str) -> tuple[list[str], str]:
    """The images to predict, sorted, and the folder their output names are relative to.

    Args:
      pattern: a folder (its .png/.jpg/.jpeg files, recursively) or a glob pattern (every
        file it matches; `**` recurses).
    Raises:
      config_lib.ConfigError: nothing found (names --input).
    """
    if os.path.isdir(pattern):
        paths, base = list_images(pattern), pattern
    else:
        paths = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
        base = (
            os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
            if paths
            else ""
        )
    if not paths:
        raise config_lib.ConfigError(f"--input: no images found in {pattern!r}")
    return paths, base


def output_paths(inputs: list[str], base: str, output_dir: str) -> list[str]:
    """OUTPUT_DIR/<input path relative to base, extension .png> for each input.

    Raises:
      config_lib.ConfigError: two inputs would write the same file (e.g. a.jpg and a.png).
    """
    outputs = [
        os.path.join(
            output_dir,
            os.path.splitext(os.path.relpath(os.path.abspath(path), os.path.abspath(base)))[0]
            + ".png",
        )
        for path in inputs
    ]
    seen: dict[str, str] = {}
    clashes = []
    for path, output in zip(inputs, outputs):
        if output in seen:
            clashes.append(f"{seen[output]} and {path} -> {output}")
        seen.setdefault(output, path)
    if clashes:
        raise config_lib.ConfigError(
            "--input: images with the same output name:\n  " + "\n  ".join(clashes)
        )
    return outputs


def predict_files(
    predictor: inference.ProbabilityFn,
    inputs: list[str],
    outputs: list[str],
    config: config_lib.InferenceConfig,
    fmt: str,
    spec: LabelSpec | None,
    alpha: float = 0.5,
    verbose: bool = True,
) -> PredictResult:
    """Predicts every input image and writes `overlay.render(...)` of it to its output path.

    Args:
      spec: the dataset's labels (names, palette, label values); None: generic names and
        palette for the model's C classes, label values = train ids.
    Raises:
      runs.ModelError: the model's class count differs from `spec`'s.
    """
    import keras  # the progress bar only

    progress = keras.utils.Progbar(len(inputs), unit_name="image", verbose=1 if verbose else 0)
    written, skipped = [], []
    for done, (path, output) in enumerate(zip(inputs, outputs), 1):
        try:
            image = images.read_image(path)
        except (FileNotFoundError, ValueError) as error:  # the message names the file
            skipped.append((path, str(error)))
            print(f"\nskipped unreadable image: {error}", file=sys.stderr)
            progress.update(done)
            continue
        probabilities = inference.predict_probabilities(predictor, image, config)
        num_classes = probabilities.shape[-1]
        if spec is None:
            spec = labels_lib.folder(num_classes)
        if num_classes != spec.num_classes:
            raise runs.ModelError(
                f"the model predicts {num_classes} classes, the "
                f"{spec.name} labels have {spec.num_classes}"
            )
        train_ids = probabilities.argmax(axis=-1)
        images.write_image(output, overlay.render(train_ids, image, fmt, spec, alpha))
        written.append(output)
        progress.update(done)
    return PredictResult(written, skipped)


def label_spec_from(fields: dict) -> LabelSpec:
    """The labels of a dataset described by DataConfig fields (flags or a run's config.json);
    needs no data on disk."""
    dataset = fields["dataset"]
    if dataset == "cityscapes":
        return labels_lib.cityscapes(fields.get("cityscapes_label_format") or "labelIds")
    if dataset == "camvid":
        return labels_lib.camvid()
    if not fields.get("num_classes"):
        raise config_lib.ConfigError("--num_classes: required with --dataset=folder")
    return labels_lib.folder(
        fields["num_classes"],
        fields.get("ignore_value", 255),
        dict(tuple(pair) for pair in fields.get("id_mapping") or ()) or None,
        tuple(fields.get("class_names") or ()) or None,
    )


def flags_label_spec(values, run: str | None) -> LabelSpec | None:
    """The labels of --dataset (no --data_dir needed), else of the run's dataset, else None."""
    if values.dataset:
        names = ("dataset", "cityscapes_label_format", "num_classes", "ignore_value", "class_names")
        return label_spec_from(
            {name: values[name].value for name in names}
            | {"id_mapping": flags_lib.parse_id_mapping(values.id_mapping)}
        )
    return label_spec_from(runs.read_record(run)["data"]) if run else None


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    try:
        config = flags_lib.predict_config(FLAGS)
        inputs, base = list_inputs(config.input)
        outputs = output_paths(inputs, base, config.output)
        run = runs.find_run_dir(config.source, config.model_dir)
        predictor = predictors.load_predictor(config.source, config.checkpoint, config.eval_weights)
        spec = flags_label_spec(FLAGS, run) or predictor.labels
        if spec is None and config.format == "labelIds":
            print(
                "note: no --dataset, model dir or scl_tf export metadata: --format=labelIds "
                "writes train ids",
                file=sys.stderr,
            )
        inference_config = predictors.with_model_tiles(config.inference, predictor)
        result = predict_files(
            predictor, inputs, outputs, inference_config, config.format, spec, config.overlay_alpha
        )
    except (config_lib.ConfigError, runs.ModelError) as error:
        sys.exit(f"error: {error}")
    print(f"Wrote {len(result.written)} {config.format} PNG(s) to {config.output}")
    if result.skipped:
        sys.exit(
            f"error: skipped {len(result.skipped)} of {len(inputs)} image(s) that could "
            "not be read:\n  " + "\n  ".join(path for path, _ in result.skipped)
        )


def run():
    flags_lib.define_predict_flags()
    app.run(main)


if __name__ == "__main__":
    run()
