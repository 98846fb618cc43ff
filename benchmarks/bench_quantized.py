"""Quantized deployment of one trained run: every export format's size, latency, val mIoU and
argmax agreement with the float32 model, side by side (issue 23).

    python benchmarks/bench_quantized.py --model_dir=runs/camvid_semi_1-8_imagenet \
        --checkpoint=best --data_dir=data/camvid --calibration=data/camvid/train

Exports the run's evaluation model (the EMA teacher) as a SavedModel, ONNX fp32, fp16 and int8
(scl_tf/export/quantize.py) and TFLite fp32, fp16 and int8 at --size (scl_tf/export/tflite.py),
int8 calibrated on --calibration_count frames of --calibration, each checked as
export/to_onnx.py and export/to_tflite.py check it (the verdict is recorded; nothing is
refused here). Then, on this machine's CPU:
- latency: every format on the same random float32 image at --size, batch 1, one call of each
  in turn per round (bench.time_side_by_side), p50/p90 over --iters rounds after --warmup;
  ONNX Runtime's three again at --large_size. ONNX Runtime through IOBinding, TFLite with the
  runtime named in the record (LiteRT where installed), one thread per CPU; the SavedModel
  through its serving_logits signature (TensorFlow).
- accuracy: val mIoU of each format on --split of the CamVid-layout --data_dir (single scale,
  scl_tf.eval.scoring.evaluate_model through scl_tf.eval.predictors.load_predictor, as
  `python -m scl_tf.evaluate --model=FILE` scores it), and the share of those pixels whose
  label equals the SavedModel's (the float32 model's).
Prints a markdown table and adds the record to --output (replacing the record of the same run
and size).
"""

import argparse
import os
import pathlib
import platform
import shutil
import sys
import tempfile

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402

from scl_tf import runs  # noqa: E402
from scl_tf.config import DataConfig, InferenceConfig, parse_size  # noqa: E402
from scl_tf.data import datasets  # noqa: E402
from scl_tf.eval import predictors, scoring  # noqa: E402
from scl_tf.export import (  # noqa: E402
    bench,
    calibration,
    convert,
    parity,
    quantize,
    runtime,
    serving,
    tflite,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "int8")
BASELINE = "onnx fp32"  # latency ratios are to it


class LabelRecorder:
    """A predictor that also records the argmax labels of each call (the reference), or
    counts how many of its labels equal those a reference recorded on the same calls.

    Args:
      predictor: float32 images [B, H, W, 3] -> probabilities [B, H, W, C].
      reference: `labels` of a recorder run on the same inputs; None: record.
    """

    def __init__(self, predictor, reference: list[np.ndarray] | None = None):
        self._predictor = predictor
        self._reference = reference
        self.labels: list[np.ndarray] = []  # uint8 [B, H, W] per call, when recording
        self.calls = self.agreeing = self.pixels = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        probabilities = self._predictor(images)
        labels = probabilities.argmax(axis=-1).astype(np.uint8)
        if self._reference is None:
            self.labels.append(labels)
        else:
            calls = len(self._reference)
            expected = self._reference[self.calls] if self.calls < calls else None
            if expected is None or expected.shape != labels.shape:
                raise ValueError(
                    "--size: smaller than the split's images, which a fixed-size model then "
                    "runs in tiles that cannot be compared with the float32 model call by "
                    "call; give the frames' size"
                )
            self.agreeing += int((labels == expected).sum())
            self.pixels += labels.size
        self.calls += 1
        return probabilities


def export_all(args, work_dir: str) -> tuple[dict[str, str], dict[str, dict]]:
    """Writes the SavedModel and the six ONNX and TFLite files into `work_dir`.

    Returns:
      ({name: path}, {name: {"precision", "export_check", "export_passed"}}), names like
      "onnx int8".
    """
    keras_model, info = serving.run_model(args.model_dir, args.checkpoint)
    paths = {"savedmodel fp32": os.path.join(work_dir, "saved_model")}
    tf_model = serving.save_saved_model(keras_model, info, paths["savedmodel fp32"])
    checks = {
        "savedmodel fp32": {"precision": "fp32", "export_check": "reference", "export_passed": True}
    }
    frames = parity.parity_frames(args.parity_dir, args.parity_frames)
    files = calibration.calibration_files(args.calibration, args.calibration_count)
    size = parse_size("size", args.size)

    def keep(name, report, content: bytes):
        paths[name] = os.path.join(work_dir, name.replace(" ", "_") + "." + name.split()[0])
        with open(paths[name], "wb") as out:
            out.write(content)
        checks[name] = {
            "precision": name.split()[1],
            "export_check": report.line(),
            "export_passed": report.passed,
        }
        print(report.line(), flush=True)

    fp32 = None
    for precision in ("fp32", "fp16"):
        proto, report = convert.export_onnx(
            tf_model, parity.parity_cases(None, frames), fp16=precision == "fp16"
        )
        fp32 = fp32 or proto
        keep(f"onnx {precision}", report, proto.SerializeToString())
    proto, report = quantize.export_int8(
        fp32, calibration.frames(files, None), frames, args.min_agreement
    )
    keep("onnx int8", report, proto.SerializeToString())
    for precision in PRECISIONS:
        calibration_frames = calibration.frames(files, size) if precision == "int8" else None
        flatbuffer, report = tflite.export_tflite(
            tf_model, size, precision, frames, calibration_frames, args.min_agreement
        )
        keep(f"tflite {precision}", report, flatbuffer)
    return paths, checks


def file_bytes(path: str) -> int:
    """Size of a file, or of all files under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(item.stat().st_size for item in pathlib.Path(path).rglob("*") if item.is_file())


def runner(name: str, path: str, images: np.ndarray):
    """A no-argument call of one export on fixed `images` (float32 [1, H, W, 3])."""
    if name.startswith("onnx"):
        return runtime.BoundRunner(runs.onnx_session(path), images, runtime.RuntimeOptions())
    if name.startswith("tflite"):
        return tflite.bound_runner(runs.tflite_interpreter(path), images)
    return serving.signature_runner(
        serving.load_saved_model(path), serving.SIGNATURE_LOGITS, images
    )


def latency(paths: dict[str, str], size: tuple[int, int], iters: int, warmup: int) -> dict:
    """{name: LatencyStats as a dict, with "ratio_to_onnx_fp32": the median of its per-round
    time ratios to ONNX fp32's}, timed side by side."""
    images = parity.random_images(1, size, seed=0)
    calls = {name: runner(name, path, images) for name, path in paths.items()}
    times = bench.time_side_by_side(calls, iters, warmup)
    return {
        name: {
            **vars(bench.summarize(seconds, 1)),
            "ratio_to_onnx_fp32": bench.paired_ratio(seconds, times[BASELINE]),
        }
        for name, seconds in times.items()
    }


def accuracy(paths: dict[str, str], args) -> tuple[dict[str, float], dict[str, float], int]:
    """({name: val mIoU}, {name: argmax agreement with the SavedModel}, images scored)."""
    data = DataConfig("camvid", data_dir=args.data_dir)
    samples = datasets.find_pairs(data, args.split)
    samples = samples[: args.eval_images] if args.eval_images else samples
    spec = datasets.label_spec(data)
    mious, agreements, reference = {}, {}, None
    for name, path in paths.items():
        predictor = predictors.load_predictor(path)
        recorder = LabelRecorder(predictor, reference)
        config = predictors.with_model_tiles(InferenceConfig(), predictor)
        evaluation = scoring.evaluate_model(recorder, samples, spec, config, verbose=False)
        mious[name] = evaluation.miou()
        if reference is None:
            reference = recorder.labels
            agreements[name] = 1.0
        else:
            agreements[name] = recorder.agreeing / recorder.pixels
        print(f"{name}: mIoU {100 * mious[name]:.2f}, agreement {100 * agreements[name]:.3f}%")
    return mious, agreements, len(samples)


def table(record: dict) -> str:
    """The markdown table of a record."""
    small, large = record["size"], record["large_size"]
    lines = [
        f"| format | file MB | p50 ms {small[0]}x{small[1]} | p50 ms {large[0]}x{large[1]} "
        f"| val mIoU | agreement with fp32 | export check |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        large_p50 = row["p50_ms_large"]
        lines.append(
            f"| {row['format']} | {row['file_bytes'] / 2**20:.1f} | {row['p50_ms']:.1f} "
            f"| {'-' if large_p50 is None else f'{large_p50:.1f}'} "
            f"| {100 * row['miou']:.2f} | {100 * row['argmax_agreement']:.2f}% "
            f"| {'pass' if row['export_passed'] else 'FAIL'} |"
        )
    rows = {row["format"]: row for row in record["rows"]}
    lines.append(
        f"ONNX Runtime int8 / fp32 latency (median of paired ratios): "
        f"{rows['onnx int8']['ratio_to_onnx_fp32']:.2f} at {small[0]}x{small[1]}, "
        f"{rows['onnx int8']['ratio_to_onnx_fp32_large']:.2f} at {large[0]}x{large[1]}; "
        f"TFLite int8 / fp32: {rows['tflite int8']['p50_ms'] / rows['tflite fp32']['p50_ms']:.2f} "
        f"(p50). mIoU drop of int8: ONNX "
        f"{100 * (rows['onnx fp32']['miou'] - rows['onnx int8']['miou']):.2f}, TFLite "
        f"{100 * (rows['tflite fp32']['miou'] - rows['tflite int8']['miou']):.2f} points."
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="A model dir of scl_tf.train.")
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest", "best"))
    parser.add_argument("--data_dir", required=True, help="CamVid in the SegNet layout.")
    parser.add_argument("--split", default="val")
    parser.add_argument("--eval_images", type=int, default=0, help="Score at most N (0: all).")
    parser.add_argument("--calibration", required=True, help="Folder or glob of frames.")
    parser.add_argument("--calibration_count", type=int, default=100)
    parser.add_argument("--min_agreement", type=float, default=0.95)
    parser.add_argument("--parity_dir", default=str(REPO_ROOT / "data" / "camvid_mini" / "val"))
    parser.add_argument("--parity_frames", type=int, default=2)
    parser.add_argument("--size", default="360x480", help="TFLite input and timing size.")
    parser.add_argument("--large_size", default="512x1024", help="ONNX Runtime timed again.")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--work_dir", default="", help="Keep the exports here (default: none).")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "bench_quantized.json"))
    args = parser.parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_quantized_")
    os.makedirs(work_dir, exist_ok=True)
    try:
        paths, checks = export_all(args, work_dir)
        size, large_size = parse_size("size", args.size), parse_size("large_size", args.large_size)
        small = latency(paths, size, args.iters, args.warmup)
        large = latency(
            {name: path for name, path in paths.items() if name.startswith("onnx")},
            large_size,
            args.iters,
            args.warmup,
        )
        mious, agreements, num_images = accuracy(paths, args)
    except (ValueError, FileNotFoundError) as error:  # ConfigError, ModelError, DatasetError
        sys.exit(f"error: {error}")
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir)
    info = serving.run_info(args.model_dir)
    record = {
        "model": os.path.abspath(args.model_dir),
        "checkpoint": args.checkpoint,
        "backbone": info.backbone,
        "provider": "cpu",
        "precision": ",".join(PRECISIONS),
        "batch": 1,
        "size": list(size),
        "large_size": list(large_size),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {
            "tensorflow": tf.__version__,
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "tflite_runtime": runs.tflite_runtime(),
        },
        "calibration": {"frames": args.calibration, "count": args.calibration_count},
        "split": args.split,
        "num_images": num_images,
        "iters": args.iters,
        "rows": [
            {
                "format": name,
                **checks[name],
                "file_bytes": file_bytes(paths[name]),
                "p50_ms": small[name]["p50_ms"],
                "p90_ms": small[name]["p90_ms"],
                "ratio_to_onnx_fp32": small[name]["ratio_to_onnx_fp32"],
                **{
                    key + "_large": large[name][key] if name in large else None
                    for key in ("p50_ms", "p90_ms", "ratio_to_onnx_fp32")
                },
                "miou": mious[name],
                "argmax_agreement": agreements[name],
            }
            for name in paths
        ],
        "latency": {"size": small, "large_size": large},
    }
    print(table(record))
    bench.update_json(args.output, record)
    print(f"record added to {args.output}")


if __name__ == "__main__":
    main()
