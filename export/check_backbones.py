"""Slow check: every backbone exports to SavedModel and ONNX (fp32 and fp16) and passes parity.

    python export/check_backbones.py            # writes benchmarks/bench_export_parity.json
    python export/check_backbones.py --backbones=resnet101   # one model per process: less memory
    python export/check_backbones.py --weights=trained --trained_dir=runs/parity

Per backbone and weight set, a DeepLabV3+ is written as a SavedModel, reloaded, converted to
ONNX at dynamic size in fp32 and fp16, and compared with the SavedModel on random images and
bundled CamVid val frames, as export/to_onnx.py does. Too slow for the test suite on a small CPU
(WRN38 has 137M parameters). Each run replaces the checked weight sets of its backbones in the
JSON and keeps the others.

Weight sets (--weights):
  fresh: the 19 Cityscapes classes, random weights as initialised (nothing is downloaded):
    BatchNormalization statistics (0, 1) that do not match the activations, so logits are
    nearly equal and the fp16 argmax is mostly decided by rounding noise.
  calibrated: the same with the statistics set from bundled training frames by one forward pass
    in training mode with momentum 0: activations and logits at a trained network's scale, but
    a random network amplifies rounding more than a trained one.
  trained: the EMA teacher of the run TRAINED_DIR/BACKBONE of scl_tf.train, e.g. 100 steps of
    configs/camvid_parity.flags (its header has the commands).
"""

import argparse
import gc
import json
import os
import tempfile
import time

import keras
import numpy as np
import tf2onnx

from scl_tf import runs
from scl_tf.data.datasets import list_images
from scl_tf.export import convert, images, parity, serving
from scl_tf.models import BACKBONES

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMVID_MINI = os.path.join(REPO_ROOT, "data", "camvid_mini")
CALIBRATION_FRAMES = 4
CALIBRATION_SIZE = (192, 256)
WEIGHTS = ("fresh", "calibrated", "trained")


def calibrate_batchnorm(model: keras.Model, batch: np.ndarray) -> None:
    """Sets every BatchNormalization's moving statistics to those of `batch` [B, H, W, 3]."""
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(batch, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def check_weights(model: keras.Model, info, cases, path: str) -> dict:
    """{"fp32"/"fp16": parity record} of `model` exported to a SavedModel at `path`."""
    start = time.perf_counter()
    serving.save_saved_model(model, info, path)
    tf_model = serving.load_saved_model(path)
    record = {}
    for fp16 in (False, True):
        _, report = convert.export_onnx(tf_model, cases, fp16=fp16)
        gc.collect()  # the last conversion's graphs, before the next one
        print(f"{info.backbone}: {report.line()}\n{report.details()}", flush=True)
        record[report.precision] = {
            "passed": report.passed,
            "max_probability_delta": report.max_probability_delta,
            "argmax_agreement": report.argmax_agreement,
            "cases": [vars(case) for case in report.cases],
        }
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def check_random(
    backbone: str,
    output_stride: int,
    weights: list[str],
    calibration: np.ndarray,
    cases,
    folder: str,
) -> dict:
    """Parity records of one randomly initialised backbone: its "fresh" and/or "calibrated"
    weights, as named in `weights`."""
    model, info = serving.untrained_model(backbone, output_stride, "cityscapes")
    record = {
        "backbone": backbone,
        "output_stride": output_stride,
        "parameters": int(model.count_params()),
    }
    for name in ("fresh", "calibrated"):
        if name not in weights:
            continue
        if name == "calibrated":
            calibrate_batchnorm(model, calibration)
        print(f"{backbone}: {name} weights", flush=True)
        record[name] = check_weights(model, info, cases, os.path.join(folder, f"{backbone}_{name}"))
    return record


def check_trained(backbone: str, trained_dir: str, cases, folder: str) -> dict:
    """The parity record of the EMA teacher of the run `trained_dir`/`backbone`."""
    run = os.path.join(trained_dir, backbone)
    try:
        model, info = serving.run_model(run)
    except runs.ModelError as error:
        raise SystemExit(f"error: --trained_dir: {error}") from error
    if info.backbone != backbone:
        raise SystemExit(f"error: --trained_dir: {run} trained a {info.backbone}, not a {backbone}")
    print(f"{backbone}: trained weights of {run}", flush=True)
    return {
        "backbone": backbone,
        "trained": {
            "run": run,
            "output_stride": info.output_stride,
            "classes": len(info.class_names),
            **check_weights(model, info, cases, os.path.join(folder, f"{backbone}_trained")),
        },
    }


def update_records(path: str, record: dict, seed: int, cases) -> list[dict]:
    """Merges `record` into the same backbone's in the JSON at `path` (its weight sets replace
    those of the file); returns all records."""
    records = []
    if os.path.isfile(path):
        with open(path) as source:
            records = json.load(source)["models"]
    old = next((old for old in records if old["backbone"] == record["backbone"]), {})
    records = [other for other in records if other is not old] + [{**old, **record}]
    with open(path, "w") as out:
        json.dump(
            {
                "command": "python export/check_backbones.py",
                "seed": seed,
                "cases": [case.name for case in cases],
                "models": records,
            },
            out,
            indent=2,
        )
        out.write("\n")
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--output_stride", type=int, default=8)
    parser.add_argument("--frames", type=int, default=2, help="bundled CamVid val frames")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--weights",
        default="fresh,calibrated",
        help=f"weight sets to check, of {','.join(WEIGHTS)}",
    )
    parser.add_argument(
        "--trained_dir",
        default="",
        help="folder of a scl_tf.train model dir per backbone (--weights=trained)",
    )
    parser.add_argument(
        "--output", default=os.path.join(REPO_ROOT, "benchmarks", "bench_export_parity.json")
    )
    args = parser.parse_args()
    weights = args.weights.split(",")
    unknown = sorted(set(weights) - set(WEIGHTS))
    if unknown:
        parser.error(f"--weights: unknown {', '.join(unknown)}; choose from {', '.join(WEIGHTS)}")
    if "trained" in weights and not os.path.isdir(args.trained_dir):
        parser.error(f"--trained_dir: no such folder: {args.trained_dir!r} (--weights=trained)")
    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    keras.utils.set_random_seed(args.seed)
    cases = parity.parity_cases(
        None, parity.parity_frames(os.path.join(CAMVID_MINI, "val"), args.frames)
    )
    calibration = np.stack(
        [
            images.read_image(path, CALIBRATION_SIZE)
            for path in list_images(os.path.join(CAMVID_MINI, "train"))[:CALIBRATION_FRAMES]
        ]
    ).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        for backbone in args.backbones.split(","):
            record = {}
            if "fresh" in weights or "calibrated" in weights:
                record = check_random(
                    backbone, args.output_stride, weights, calibration, cases, folder
                )
            if "trained" in weights:
                record |= check_trained(backbone, args.trained_dir, cases, folder)
            records = update_records(args.output, record, args.seed, cases)
    failed = [
        f"{r['backbone']} {name} {precision}"
        for r in records
        for name in WEIGHTS
        if name in r
        for precision in ("fp32", "fp16")
        if not r[name][precision]["passed"]
    ]
    print(f"wrote {args.output}; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
