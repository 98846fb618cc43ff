"""Per-layer sensitivity of a trained run's int8 ONNX model (issue 28): which layers, left in
float32, win back most of the labels int8 changes.

    python benchmarks/bench_int8_sensitivity.py --model_dir=runs/demo \
        --calibration=data/camvid_mini/train

The run's float32 ONNX model is calibrated once on --calibration_count frames of
--calibration (MinMax), then quantized once per node of scl_tf.export.sensitivity.SWEPT_OPS
with that node alone in float32 (the input normalization and the output head stay float32
throughout), each time scored by its labels' agreement with the float32 model on
--probe_count other unlabeled frames of --calibration (the calibration frames themselves
when none is left). The sessions run with ORT's WeightBiasQuantization off, so that a node
kept float is float (scl_tf/export/sensitivity.py says why). Then the rule of
scl_tf/export/quantize.py (the input block in float32) is checked as deployed, with ORT's
default session, against the all-int8 model on the same frames, and so is the input block's
depthwise convolution kept float alone (what ORT's default session makes of a lone float
node). Prints the largest gains and adds the record to --output (one per run).
"""

import argparse
import os
import pathlib
import platform
import sys
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import onnxruntime as ort  # noqa: E402

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


def frame_sets(pattern: str, count: int, probe_count: int) -> tuple[list[str], list[str]]:
    """(calibration files, probe files): `count` spread over the sorted frames, then
    `probe_count` spread over the others (over all of them when none is left)."""
    everything = calibration.calibration_files(pattern, sys.maxsize)
    calibration_files = calibration.spread(everything, count)
    chosen = set(calibration_files)
    rest = [path for path in everything if path not in chosen]
    return calibration_files, calibration.spread(rest or everything, probe_count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="A model dir of scl_tf.train.")
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest", "best"))
    parser.add_argument("--calibration", required=True, help="Folder or glob of frames.")
    parser.add_argument("--calibration_count", type=int, default=100)
    parser.add_argument("--probe_count", type=int, default=8)
    parser.add_argument("--top", type=int, default=10, help="Gains printed.")
    parser.add_argument(
        "--output", default=str(REPO_ROOT / "benchmarks" / "bench_int8_sensitivity.json")
    )
    args = parser.parse_args()
    start = time.time()
    try:
        calibration_files, probe_files = frame_sets(
            args.calibration, args.calibration_count, args.probe_count
        )
        tf_model = serving.load_source(args.model_dir, args.checkpoint)
    except (ValueError, FileNotFoundError) as error:  # ConfigError, ModelError
        sys.exit(f"error: {error}")
    fp32, report = convert.export_onnx(tf_model, parity.parity_cases(None, []))
    probe = list(calibration.frames(probe_files, None))
    reference = sensitivity.labels(sensitivity.session(fp32), probe)
    with quantize.Quantizer(fp32, calibration.CalibrationFrames(tuple(calibration_files))) as q:
        base, results = sensitivity.sweep(
            q,
            reference,
            probe,
            progress=lambda r: print(f"{100 * r.gain:+.3f} {r.op_type} {r.node}", flush=True),
        )
        deployed = {
            name: sensitivity.agreement(
                sensitivity.labels(sensitivity.session(model, true_float=False), probe),
                reference,
            )
            for name, model in (
                ("int8, input block quantized", q.quantize(float_input_block=False)),
                ("int8, input block float (the export)", q.quantize()),
            )
        }
        block = [
            name
            for name in quantize.input_block(q.prepared)
            if name in {node.name for node in sensitivity.candidates(q.prepared)}
        ]
        nodes = {node.name: node for node in q.prepared.graph.node}
        depthwise = next(name for name in block if quantize.conv_kind(nodes[name]) == "depthwise")
        lone = q.quantize([depthwise], float_input_block=False)
        lone_depthwise = {
            session_kind: sensitivity.agreement(
                sensitivity.labels(sensitivity.session(lone, true_float), probe), reference
            )
            for session_kind, true_float in (("ort_default", False), ("true_float", True))
        }
    info = serving.run_info(args.model_dir)
    record = {
        "model": os.path.abspath(args.model_dir),
        "checkpoint": args.checkpoint,
        "backbone": info.backbone,
        "provider": "cpu",
        "precision": "int8",
        "batch": 1,
        "size": list(probe[0].shape[1:3]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {"onnxruntime": ort.__version__},
        "calibration": {"frames": args.calibration, "count": len(calibration_files)},
        "probe": probe_files,
        "fp32_parity": report.line(),
        "base_agreement": base,
        "input_block": block,
        "deployed_agreement": deployed,
        "lone_depthwise_float": {"node": depthwise, **lone_depthwise},
        "layers": [vars(result) for result in results],
        "seconds": time.time() - start,
    }
    print(f"all int8 (but normalization and head): {100 * base:.3f}% of the probe labels")
    for rank, result in enumerate(results[: args.top], 1):
        mark = " (input block)" if result.node in block else ""
        print(f"{rank:2d}. {100 * result.gain:+.3f} {result.op_type} {result.node}{mark}")
    for name, value in deployed.items():
        print(f"{name}, ORT default session: {100 * value:.3f}%")
    print(
        f"{depthwise} alone in float: {100 * lone_depthwise['true_float']:.3f}% run float, "
        f"{100 * lone_depthwise['ort_default']:.3f}% in ORT's default session"
    )
    bench.update_json(args.output, record)
    print(f"record added to {args.output}")


if __name__ == "__main__":
    main()
