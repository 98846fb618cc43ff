"""Quantized deployment of one trained run: every export format's size, latency, val mIoU and
argmax agreement with the float32 model, side by side (issues 23 and 28).

    python benchmarks/bench_quantized.py --model_dir=runs/demo --label=demo \
        --data_dir=data/camvid_mini --calibration=data/camvid_mini/train
    python benchmarks/bench_quantized.py --summary    # the table of every record

Exports the run's evaluation model (the EMA teacher) as a SavedModel, ONNX fp32, fp16 and int8
(scl_tf/export/quantize.py) and TFLite fp32, fp16 and int8 at --size (scl_tf/export/tflite.py),
int8 calibrated on --calibration_count frames of --calibration, each checked as
export/to_onnx.py and export/to_tflite.py check it, with their defaults (the verdict is
recorded; nothing is refused here). Then, on this machine's CPU:
- latency: the ONNX Runtime models on the same random float32 image at --size and at
  --large_size, batch 1, one call of each in turn per round (bench.time_side_by_side), p50
  over --iters rounds after --warmup, through IOBinding, one thread per core. Their sessions
  do not spin (session.intra_op.allow_spinning 0): called in turn, a session's threads
  otherwise spin on the cores while the next session runs, which charges one model's wait to
  another's time (on 2 shared cores ORT's default doubled fp32's p50 and moved int8/fp32 from
  0.40 to 0.52). The ratios with ORT's default session are recorded too. The TFLite files and
  the SavedModel (serving_logits, TensorFlow) are timed the same way in a second group at
  --size, TFLite with the runtime named in the record (LiteRT where installed).
- accuracy: val mIoU of each format on --split of the CamVid-layout --data_dir (single scale,
  scl_tf.eval.scoring.evaluate_model through scl_tf.eval.predictors.load_predictor, as
  `python -m scl_tf.evaluate --model=FILE` scores it), the share of those pixels whose label
  equals the SavedModel's (the float32 model's), and that share per image, from which the
  spread of a judgement on N frames is computed (`frame_spread`).
Prints a markdown table and adds the record to --output (replacing the record of the same run
and size). --summary prints the table of all records: one row per model and format.
"""

import argparse
import json
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
from scl_tf.config import (  # noqa: E402
    CalibrationConfig,
    DataConfig,
    ExportConfig,
    InferenceConfig,
    parse_size,
)
from scl_tf.data import datasets  # noqa: E402
from scl_tf.eval import predictors, scoring  # noqa: E402
from scl_tf.export import (  # noqa: E402
    agreement,
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
BASELINE = "onnx fp32"  # ONNX Runtime latency ratios are to it
TFLITE_BASELINE = "tflite fp32"
FRAME_COUNTS = (1, 2, 4, 8, 12, 16, 24)  # N of `frame_spread`


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
        self.per_call: list[float] = []  # each call's share of agreeing pixels
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
            agreeing = int((labels == expected).sum())
            self.agreeing += agreeing
            self.pixels += labels.size
            self.per_call.append(agreeing / labels.size)
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
    files = tuple(calibration.calibration_files(args.calibration, args.calibration_count))
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
        if precision == "fp16":
            report = agreement.judge(
                report,
                None,
                ExportConfig.min_fp16_agreement,
                "TensorFlow fp32",
                "fp16",
                "--min_fp16_agreement",
            )
        fp32 = fp32 or proto
        keep(f"onnx {precision}", report, proto.SerializeToString())
    proto, report = quantize.export_int8(
        fp32,
        calibration.CalibrationFrames(files),
        frames,
        CalibrationConfig.min_agreement,
        args.calibration_method,
    )
    keep("onnx int8", report, proto.SerializeToString())
    for precision in PRECISIONS:
        calibration_frames = calibration.CalibrationFrames(files, size)
        flatbuffer, report = tflite.export_tflite(
            tf_model, size, precision, frames, calibration_frames if precision == "int8" else None
        )
        keep(f"tflite {precision}", report, flatbuffer)
    return paths, checks


def file_bytes(path: str) -> int:
    """Size of a file, or of all files under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(item.stat().st_size for item in pathlib.Path(path).rglob("*") if item.is_file())


def runner(name: str, path: str, images: np.ndarray, spinning: bool = False):
    """A no-argument call of one export on fixed `images` (float32 [1, H, W, 3])."""
    if name.startswith("onnx"):
        options = runtime.RuntimeOptions(spinning=spinning)
        return runtime.BoundRunner(runs.onnx_session(path, options), images, options)
    if name.startswith("tflite"):
        return tflite.bound_runner(runs.tflite_interpreter(path), images)
    return serving.signature_runner(
        serving.load_saved_model(path), serving.SIGNATURE_LOGITS, images
    )


def latency(
    paths: dict[str, str],
    size: tuple[int, int],
    iters: int,
    warmup: int,
    baseline: str,
    spinning: bool = False,
) -> dict:
    """{name: LatencyStats as a dict, with "ratio": the median of its per-round time ratios to
    `baseline`'s}, timed side by side."""
    images = parity.random_images(1, size, seed=0)
    calls = {name: runner(name, path, images, spinning) for name, path in paths.items()}
    times = bench.time_side_by_side(calls, iters, warmup)
    return {
        name: {
            **vars(bench.summarize(seconds, 1)),
            "ratio": bench.paired_ratio(seconds, times[baseline]),
        }
        for name, seconds in times.items()
    }


def frame_spread(per_frame: list[float]) -> dict[str, dict[str, float]]:
    """How far the agreement on N frames strays from the agreement on all of them (the mean of
    `per_frame`, in split order): for each N of FRAME_COUNTS, the 95th percentile and the
    maximum of |mean of N consecutive frames - mean of all| over every window of N (a sorted
    folder's first frames are consecutive), and the 95th percentile over N frames spread
    evenly from every starting frame (what --parity_frames takes)."""
    values = np.asarray(per_frame)
    whole = values.mean()
    spread = {}
    for count in FRAME_COUNTS:
        if count > len(values):
            break
        windows = np.array(
            [values[start : start + count].mean() for start in range(len(values) - count + 1)]
        )
        evenly = np.array(
            [
                values[
                    [(start + index * len(values) // count) % len(values) for index in range(count)]
                ].mean()
                for start in range(len(values))
            ]
        )
        spread[str(count)] = {
            "consecutive_p95": float(np.quantile(abs(windows - whole), 0.95)),
            "consecutive_max": float(abs(windows - whole).max()),
            "spread_p95": float(np.quantile(abs(evenly - whole), 0.95)),
        }
    return spread


def accuracy(paths: dict[str, str], args) -> tuple[dict, dict, dict, int]:
    """({name: val mIoU}, {name: argmax agreement with the SavedModel}, {name: agreement per
    image}, images scored)."""
    data = DataConfig("camvid", data_dir=args.data_dir)
    samples = datasets.find_pairs(data, args.split)
    samples = samples[: args.eval_images] if args.eval_images else samples
    spec = datasets.label_spec(data)
    mious, agreements, per_image, reference = {}, {}, {}, None
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
            per_image[name] = recorder.per_call
        print(f"{name}: mIoU {100 * mious[name]:.2f}, agreement {100 * agreements[name]:.3f}%")
    return mious, agreements, per_image, len(samples)


def table(record: dict) -> str:
    """The markdown table of a record."""
    small, large = record["size"], record["large_size"]
    lines = [
        f"| format | file MB | p50 ms {small[0]}x{small[1]} | ratio | p50 ms {large[0]}x{large[1]} "
        f"| ratio | val mIoU | agreement with fp32 | export check |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        large_p50, large_ratio = row["p50_ms_large"], row["ratio_large"]
        lines.append(
            f"| {row['format']} | {row['file_bytes'] / 2**20:.1f} | {row['p50_ms']:.1f} "
            f"| {row['ratio']:.2f} "
            f"| {'-' if large_p50 is None else f'{large_p50:.1f}'} "
            f"| {'-' if large_ratio is None else f'{large_ratio:.2f}'} "
            f"| {100 * row['miou']:.2f} | {100 * row['argmax_agreement']:.2f}% "
            f"| {'pass' if row['export_passed'] else 'FAIL'} |"
        )
    lines.append(
        "ratio: ONNX Runtime models to ONNX fp32, TFLite models and the SavedModel to TFLite "
        "fp32 (median of paired per-round ratios)."
    )
    return "\n".join(lines)


def summary(records: list[dict]) -> str:
    """One row per model and quantized format: fp32 and int8/fp16 mIoU, agreement, ratios."""

    def ratio(value):
        return "-" if value is None else f"{value:.2f}"

    lines = [
        "| model | format | fp32 mIoU | mIoU | change | agreement | export check "
        "| p50 ratio 360x480 | p50 ratio 512x1024 | ORT defaults: 360x480 | 512x1024 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        rows = {row["format"]: row for row in record["rows"]}
        for name in ("onnx int8", "tflite int8", "onnx fp16", "tflite fp16"):
            row = rows[name]
            fp32 = rows[name.split()[0] + " fp32"]
            lines.append(
                f"| {record['label']} | {name} | {100 * fp32['miou']:.2f} "
                f"| {100 * row['miou']:.2f} | {100 * (row['miou'] - fp32['miou']):+.2f} "
                f"| {100 * row['argmax_agreement']:.2f}% "
                f"| {'pass' if row['export_passed'] else 'FAIL'} "
                f"| {ratio(row['ratio'])} | {ratio(row['ratio_large'])} "
                f"| {ratio(row['ratio_ort_defaults'])} | {ratio(row['ratio_large_ort_defaults'])} |"
            )
    lines.append(
        "Ratios: median of paired per-round p50 ratios, ONNX to ONNX fp32 (sessions that do not "
        "spin; ORT defaults: spinning sessions), TFLite to TFLite fp32 (360x480 only); "
        "agreement: share of the val pixels whose label is the float32 SavedModel's."
    )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", help="A model dir of scl_tf.train.")
    parser.add_argument("--label", help="The model's name in the tables (default: the dir's).")
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest", "best"))
    parser.add_argument("--data_dir", help="CamVid in the SegNet layout.")
    parser.add_argument("--split", default="val")
    parser.add_argument("--eval_images", type=int, default=0, help="Score at most N (0: all).")
    parser.add_argument("--calibration", help="Folder or glob of frames.")
    parser.add_argument(
        "--calibration_count", type=int, default=CalibrationConfig.calibration_count
    )
    parser.add_argument("--calibration_method", default=CalibrationConfig.calibration_method)
    parser.add_argument("--parity_dir", default=str(REPO_ROOT / ExportConfig.parity_dir))
    parser.add_argument("--parity_frames", type=int, default=ExportConfig.parity_frames)
    parser.add_argument("--size", default="360x480", help="TFLite input and timing size.")
    parser.add_argument("--large_size", default="512x1024", help="ONNX Runtime timed again.")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--work_dir", default="", help="Keep the exports here (default: none).")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "bench_quantized.json"))
    parser.add_argument("--summary", action="store_true", help="Print --output's table, exit.")
    args = parser.parse_args()
    if args.summary:
        with open(args.output) as source:
            print(summary(json.load(source)))
        return
    for name in ("model_dir", "data_dir", "calibration"):
        if not getattr(args, name):
            sys.exit(f"error: --{name}: required")
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_quantized_")
    os.makedirs(work_dir, exist_ok=True)
    try:
        paths, checks = export_all(args, work_dir)
        size, large_size = parse_size("size", args.size), parse_size("large_size", args.large_size)
        onnx_paths = {name: path for name, path in paths.items() if name.startswith("onnx")}
        other_paths = {name: path for name, path in paths.items() if name not in onnx_paths}
        timings = {
            "onnx": latency(onnx_paths, size, args.iters, args.warmup, BASELINE),
            "onnx_large": latency(onnx_paths, large_size, args.iters, args.warmup, BASELINE),
            "onnx_spinning": latency(onnx_paths, size, args.iters, args.warmup, BASELINE, True),
            "onnx_large_spinning": latency(
                onnx_paths, large_size, args.iters, args.warmup, BASELINE, True
            ),
            "others": latency(other_paths, size, args.iters, args.warmup, TFLITE_BASELINE),
        }
        mious, agreements, per_image, num_images = accuracy(paths, args)
        sizes = {name: file_bytes(path) for name, path in paths.items()}
    except (ValueError, FileNotFoundError) as error:  # ConfigError, ModelError, DatasetError
        sys.exit(f"error: {error}")
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir)
    info = serving.run_info(args.model_dir)

    def timing(name, key, field):
        """An ONNX model's figure of timing group `key`; the others' of their own group (at
        --size only)."""
        if name.startswith("onnx"):
            return timings[key][name][field]
        return timings["others"][name][field] if key == "onnx" else None

    record = {
        "model": os.path.abspath(args.model_dir),
        "label": args.label or os.path.basename(os.path.normpath(args.model_dir)),
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
        "calibration": {
            "frames": args.calibration,
            "count": args.calibration_count,
            "method": args.calibration_method,
        },
        "parity": {"dir": args.parity_dir, "frames": args.parity_frames},
        "split": args.split,
        "num_images": num_images,
        "iters": args.iters,
        "rows": [
            {
                "format": name,
                **checks[name],
                "file_bytes": sizes[name],
                "p50_ms": timing(name, "onnx", "p50_ms"),
                "p90_ms": timing(name, "onnx", "p90_ms"),
                "ratio": timing(name, "onnx", "ratio"),
                "p50_ms_large": timing(name, "onnx_large", "p50_ms"),
                "ratio_large": timing(name, "onnx_large", "ratio"),
                "ratio_ort_defaults": timing(name, "onnx_spinning", "ratio")
                if name in onnx_paths
                else None,
                "ratio_large_ort_defaults": timing(name, "onnx_large_spinning", "ratio")
                if name in onnx_paths
                else None,
                "miou": mious[name],
                "argmax_agreement": agreements[name],
                "agreement_per_image": per_image.get(name),
                "frame_spread": frame_spread(per_image[name]) if name in per_image else None,
            }
            for name in paths
        ],
        "latency": timings,
    }
    print(table(record))
    bench.update_json(args.output, record)
    print(f"record added to {args.output}")


if __name__ == "__main__":
    main()
