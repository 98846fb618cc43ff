"""Slow check: every backbone exports to SavedModel and ONNX (fp32 and fp16) and passes parity.

    python export/check_backbones.py            # writes benchmarks/bench_export_parity.json
    python export/check_backbones.py --backbones=resnet101   # one model per process: less memory

Per backbone, a DeepLabV3+ with the 19 Cityscapes classes and random weights (nothing is
downloaded) is written as a SavedModel, reloaded, converted to ONNX at dynamic size in fp32 and
fp16, and compared with the SavedModel on random images and bundled CamVid val frames, as
export/to_onnx.py does. Too slow for the test suite on a small CPU (WRN38 has 137M parameters).

Weights, both checked: "fresh" (as initialised: BatchNormalization statistics (0, 1) that do
not match the activations, so logits are nearly equal and the fp16 argmax is mostly decided by
rounding noise) and "calibrated" (statistics set from bundled training frames by one forward
pass in training mode with momentum 0: activations and logits at a trained network's scale,
but a random network amplifies rounding more than a trained one).
"""

import argparse
import gc
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tf2onnx  # noqa: E402

from scl_tf.config import BACKBONES  # noqa: E402
from scl_tf.data.datasets import list_images  # noqa: E402
from scl_tf.export import convert, images, parity, serving  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMVID_MINI = os.path.join(REPO_ROOT, "data", "camvid_mini")
CALIBRATION_FRAMES = 4
CALIBRATION_SIZE = (192, 256)


def calibrate_batchnorm(model: keras.Model, batch: np.ndarray) -> None:
    """Sets every BatchNormalization's moving statistics to those of `batch` [B, H, W, 3]."""
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(batch, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def check_weights(model: keras.Model, info, cases, path: str) -> dict:
    """{"fp32"/"fp16": parity record} of `model` exported to a SavedModel at `path`."""
    serving.save_saved_model(model, info, path)
    tf_model = serving.load_saved_model(path)
    record = {}
    for fp16 in (False, True):
        _, report = convert.export_onnx(tf_model, cases, fp16=fp16)
        gc.collect()  # the last conversion's graphs, before the next one
        print(f"{info.backbone}: {report.line()}\n{report.details()}", flush=True)
        record[report.precision] = {"passed": report.passed,
                                    "max_probability_delta": report.max_probability_delta,
                                    "argmax_agreement": report.argmax_agreement,
                                    "cases": [vars(case) for case in report.cases]}
    return record


def check(backbone: str, output_stride: int, calibration: np.ndarray, cases,
          folder: str) -> dict:
    """Parity records of one backbone with fresh and with calibrated weights."""
    start = time.perf_counter()
    model, info = serving.untrained_model(backbone, output_stride, "cityscapes")
    record = {"backbone": backbone, "output_stride": output_stride,
              "parameters": int(model.count_params())}
    print(f"{backbone}: fresh weights", flush=True)
    record["fresh"] = check_weights(model, info, cases, os.path.join(folder, f"{backbone}_0"))
    calibrate_batchnorm(model, calibration)
    print(f"{backbone}: calibrated weights", flush=True)
    record["calibrated"] = check_weights(model, info, cases,
                                         os.path.join(folder, f"{backbone}_1"))
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def update_records(path: str, record: dict, seed: int, cases) -> list[dict]:
    """Writes `record` into the JSON at `path`, replacing the same backbone's; returns all."""
    records = []
    if os.path.isfile(path):
        with open(path) as source:
            records = json.load(source)["models"]
    records = [old for old in records if old["backbone"] != record["backbone"]] + [record]
    with open(path, "w") as out:
        json.dump({"command": "python export/check_backbones.py", "seed": seed,
                   "cases": [case.name for case in cases], "models": records}, out, indent=2)
        out.write("\n")
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--output_stride", type=int, default=8)
    parser.add_argument("--frames", type=int, default=2, help="bundled CamVid val frames")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--output",
                        default=os.path.join(REPO_ROOT, "benchmarks", "bench_export_parity.json"))
    args = parser.parse_args()
    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    keras.utils.set_random_seed(args.seed)
    cases = parity.parity_cases(
        None, parity.parity_frames(os.path.join(CAMVID_MINI, "val"), args.frames))
    calibration = np.stack([
        images.read_image(path, CALIBRATION_SIZE)
        for path in list_images(os.path.join(CAMVID_MINI, "train"))[:CALIBRATION_FRAMES]
    ]).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        for backbone in args.backbones.split(","):
            record = check(backbone, args.output_stride, calibration, cases, folder)
            records = update_records(args.output, record, args.seed, cases)
    failed = [f"{r['backbone']} {weights} {precision}" for r in records
              for weights in ("fresh", "calibrated") for precision in ("fp32", "fp16")
              if not r[weights][precision]["passed"]]
    print(f"wrote {args.output}; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
