"""INT8 ONNX calibration choices on one trained run (issue 28): each --methods at
--method_count frames, and MinMax at each of --counts frames, scored on a labeled split.

    python benchmarks/bench_int8_calibration.py --model_dir=runs/demo \
        --data_dir=data/camvid_mini --calibration=data/camvid_mini/train --counts=8,16,32 \
        --method_count=32

The run's float32 ONNX model is quantized as export/to_onnx.py --int8 does
(scl_tf.export.quantize.Quantizer: the input block and the head in float32), calibrated on
frames of --calibration spread over the sorted set; each int8 model is scored on --split of the
CamVid-layout --data_dir: its val mIoU and the share of the split's pixels whose label is the
float32 ONNX model's, with ONNX Runtime's CPU provider. The calibration time (one pass per
frame, then the ranges) is recorded. Prints a table and adds the record to --output.
"""

import argparse
import os
import pathlib
import platform
import sys
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from scl_tf.config import CALIBRATION_METHODS, DataConfig  # noqa: E402
from scl_tf.data import datasets, pipeline  # noqa: E402
from scl_tf.eval import scoring  # noqa: E402
from scl_tf.export import (  # noqa: E402
    bench,
    calibration,
    convert,
    parity,
    quantize,
    sensitivity,
    serving,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def split(data_dir: str, name: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """([(image float32 [1, H, W, 3], train ids [H, W])], classes) of a CamVid split."""
    data = DataConfig("camvid", data_dir=data_dir)
    spec = datasets.label_spec(data)
    pairs = [
        (element["image"].numpy(), element["label"][0].numpy())
        for element in pipeline.eval_dataset(datasets.find_pairs(data, name), spec)
    ]
    return pairs, spec.num_classes


def score(session, pairs, num_classes, reference=None) -> dict:
    """{"miou", "agreement", "labels"} of a session's labels on `pairs`; agreement with the
    `reference` labels (1 without)."""
    predicted = sensitivity.labels(session, [image for image, _ in pairs])
    confusion = sum(
        scoring.count_pixels(label, labels, num_classes)
        for (_, label), labels in zip(pairs, predicted, strict=True)
    )
    evaluation = scoring.Evaluation(confusion, tuple(map(str, range(num_classes))), len(pairs), 0)
    return {
        "miou": evaluation.miou(),
        "agreement": 1.0 if reference is None else sensitivity.agreement(predicted, reference),
        "labels": predicted,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="A model dir of scl_tf.train.")
    parser.add_argument("--label", help="The model's name in the tables (default: the dir's).")
    parser.add_argument("--data_dir", required=True, help="CamVid in the SegNet layout.")
    parser.add_argument("--split", default="val")
    parser.add_argument("--calibration", required=True, help="Folder or glob of frames.")
    parser.add_argument("--counts", default="8,32,100,300", help="MinMax's frame counts.")
    parser.add_argument("--methods", default=",".join(CALIBRATION_METHODS))
    parser.add_argument("--method_count", type=int, default=100)
    parser.add_argument(
        "--output", default=str(REPO_ROOT / "benchmarks" / "bench_int8_calibration.json")
    )
    args = parser.parse_args()
    variants = [("minmax", int(count)) for count in args.counts.split(",")]
    variants += [
        (method, args.method_count)
        for method in args.methods.split(",")
        if (method, args.method_count) not in variants
    ]
    for method, _ in variants:
        if method not in CALIBRATION_METHODS:
            sys.exit(f"error: --methods: expected some of {CALIBRATION_METHODS}, got {method!r}")
    try:
        pairs, num_classes = split(args.data_dir, args.split)
        tf_model = serving.load_source(args.model_dir)
        everything = calibration.calibration_files(args.calibration, sys.maxsize)
    except (ValueError, FileNotFoundError) as error:  # ConfigError, ModelError, DatasetError
        sys.exit(f"error: {error}")
    fp32, _ = convert.export_onnx(tf_model, parity.parity_cases(None, []))
    reference = score(sensitivity.session(fp32, true_float=False), pairs, num_classes)
    rows = []
    for method, count in variants:
        frames = calibration.CalibrationFrames(tuple(calibration.spread(everything, count)))
        start = time.perf_counter()
        with quantize.Quantizer(fp32, frames, method) as quantizer:
            seconds = time.perf_counter() - start
            model = quantizer.quantize()
        result = score(
            sensitivity.session(model, true_float=False), pairs, num_classes, reference["labels"]
        )
        rows.append(
            {
                "method": method,
                "count": len(frames),
                "calibration_s": seconds,
                "miou": result["miou"],
                "agreement": result["agreement"],
            }
        )
        print(
            f"{method} {len(frames)} frames: agreement {100 * result['agreement']:.3f}%, "
            f"mIoU {100 * result['miou']:.2f} (fp32 {100 * reference['miou']:.2f}), "
            f"calibration {seconds:.0f} s",
            flush=True,
        )
    info = serving.run_info(args.model_dir)
    record = {
        "model": os.path.abspath(args.model_dir),
        "label": args.label or os.path.basename(os.path.normpath(args.model_dir)),
        "backbone": info.backbone,
        "provider": "cpu",
        "precision": "int8",
        "batch": 1,
        "size": list(pairs[0][0].shape[1:3]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {"onnxruntime": ort.__version__},
        "calibration": args.calibration,
        "split": args.split,
        "num_images": len(pairs),
        "fp32_miou": reference["miou"],
        "rows": rows,
    }
    print(f"| method | frames | agreement | mIoU (fp32 {100 * reference['miou']:.2f}) | seconds |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['method']} | {row['count']} | {100 * row['agreement']:.3f}% "
            f"| {100 * row['miou']:.2f} | {row['calibration_s']:.0f} |"
        )
    bench.update_json(args.output, record)
    print(f"record added to {args.output}")


if __name__ == "__main__":
    main()
