"""Per-image time of the test-time inference protocols at 1024x2048, as ratios to single scale.

    python benchmarks/bench_inference.py            # writes benchmarks/bench_inference.json
    python benchmarks/bench_inference.py --backbones=resnet50 --rounds=1 --memory

Protocols (scl_tf.eval.inference): single scale; + horizontal flip; scales 0.5/1.0/2.0 + flip on
whole images; single scale in 1024x1024 tiles (stride 683, 1/3 overlap); and the paper's
protocol, 3 scales + flip + tiles. The model is a DeepLabV3+ (19 classes, random weights) run
through the Keras predictor of scl_tf.evaluate (a `tf.function`, no XLA), batch 1, on a random
frame. Before timing, the network runs once on every input shape the protocols use. Then each
round times every protocol once, in turn, so the load of a shared machine affects all alike;
a protocol's ratio is the median over rounds of its time / the same round's single-scale time.
"overhead" is the time of the protocol around a free stand-in network (resizing, blending).

--memory also runs each protocol once in a fresh process and records its peak resident memory
above the process right after building the model (TensorFlow's allocations included), to show
what tiles bound. A later run at the same settings adds its models and measurements to the
JSON record (--rounds=0 --memory: memory only).
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scl_tf.config import InferenceConfig  # noqa: E402
from scl_tf.eval import inference  # noqa: E402
from scl_tf.eval.predictors import keras_predictor  # noqa: E402
from scl_tf.models import build_model  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_CLASSES = 19  # Cityscapes
PAPER_SCALES = (0.5, 1.0, 2.0)
TILE = (1024, 1024)
PROTOCOLS = {
    "single": InferenceConfig(),
    "flip": InferenceConfig(flip=True),
    "3-scale+flip": InferenceConfig(scales=PAPER_SCALES, flip=True),
    "tiles": InferenceConfig(tile=TILE),
    "3-scale+flip+tiles": InferenceConfig(scales=PAPER_SCALES, flip=True, tile=TILE),
}


def network_inputs(config: InferenceConfig, size) -> list[tuple[int, int]]:
    """The (h, w) of every network call of a protocol, found with a stand-in network."""
    shapes = []

    def record(images):
        shapes.append(images.shape[1:3])
        return np.zeros(images.shape[:3] + (1,), np.float32)

    inference.predict_probabilities(record, np.zeros(size + (3,), np.float32), config)
    return shapes


@functools.cache
def _uniform(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape + (NUM_CLASSES,), 1.0 / NUM_CLASSES, np.float32)


def stand_in(images):
    """A free network (uniform probabilities, made once per shape), to time what inference
    adds around the network."""
    return _uniform(images.shape[:3])


def build_predictor(backbone: str, output_stride: int):
    keras.utils.set_random_seed(0)
    model = build_model(backbone, NUM_CLASSES, output_stride=output_stride)
    return keras_predictor(model, f"{backbone} OS{output_stride}")


def random_frame(size) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, size + (3,)).astype(np.float32)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM: unlike ru_maxrss, it does not
    inherit the parent's peak across fork and exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise OSError("no VmHWM in /proc/self/status")


def time_protocols(backbone: str, args) -> dict:
    """{protocol: {seconds, ratio, ...}} of one backbone, timed in alternating rounds."""
    size = tuple(args.size)
    predictor = build_predictor(backbone, args.output_stride)
    frame = random_frame(size)
    names = [name for name in PROTOCOLS if name in args.protocols]
    calls = {name: network_inputs(PROTOCOLS[name], size) for name in names}
    for shape in sorted({shape for shapes in calls.values() for shape in shapes}):
        predictor(np.zeros((1, *shape, 3), np.float32))  # trace and create kernels
    times = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            start = time.perf_counter()
            inference.predict_probabilities(predictor, frame, PROTOCOLS[name])
            times[name].append(time.perf_counter() - start)
            print(
                f"  {backbone} round {round_index + 1}: {name:<20} {times[name][-1]:8.2f} s",
                flush=True,
            )
    results = {}
    for name in names:
        start = time.perf_counter()
        inference.predict_probabilities(stand_in, frame, PROTOCOLS[name])
        overhead = time.perf_counter() - start
        ratios = (
            [t / s for t, s in zip(times[name], times["single"])]
            if "single" in times
            else [float("nan")]
        )
        results[name] = {
            "seconds": round(statistics.median(times[name]), 3),
            "seconds_all": [round(t, 3) for t in times[name]],
            "rounds": args.rounds,
            "ratio_to_single": round(statistics.median(ratios), 2),
            "overhead_seconds": round(overhead, 3),
            "network_calls": len(calls[name]),
            "network_megapixels": round(sum(h * w for h, w in calls[name]) / 1e6, 2),
            "largest_network_input": list(max(calls[name], key=lambda s: s[0] * s[1])),
        }
    return results


def measure_memory(backbone: str, protocol: str, args) -> float:
    """Peak RSS (MB) of one run of `protocol` in a fresh process, above the built model."""
    command = [
        sys.executable,
        __file__,
        "--child",
        protocol,
        f"--backbones={backbone}",
        f"--output_stride={args.output_stride}",
        "--size",
        *map(str, args.size),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def child(args) -> None:
    """--child PROTOCOL: one run; prints the peak RSS growth in MB."""
    size = tuple(args.size)
    predictor = build_predictor(args.backbones[0], args.output_stride)
    frame = random_frame(size)
    before = peak_rss_mb()
    inference.predict_probabilities(predictor, frame, PROTOCOLS[args.child])
    print(round(peak_rss_mb() - before, 1))


def print_table(results: dict) -> None:
    print(
        f"\n{'model':<16} {'protocol':<20} {'s/image':>8} {'x single':>9} {'calls':>6} "
        f"{'Mpx':>6} {'overhead s':>10} {'peak MB':>8}"
    )

    def cell(row, key, width, digits):
        return f"{row[key]:{width}.{digits}f}" if key in row else " " * width

    for backbone, protocols in results.items():
        for name, row in protocols.items():
            print(
                f"{backbone:<16} {name:<20} {cell(row, 'seconds', 8, 2)} "
                f"{cell(row, 'ratio_to_single', 9, 2)} {cell(row, 'network_calls', 6, 0)} "
                f"{cell(row, 'network_megapixels', 6, 2)} {cell(row, 'overhead_seconds', 10, 2)} "
                f"{cell(row, 'peak_rss_mb_above_model', 8, 0)}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones", type=lambda text: text.split(","), default=["mobilenetv2", "resnet50"]
    )
    parser.add_argument("--output_stride", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--protocols", type=lambda text: text.split(","), default=list(PROTOCOLS))
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--child", choices=list(PROTOCOLS), help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "bench_inference.json"))
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    load_start = os.getloadavg()
    results = {}
    for backbone in args.backbones:
        protocols = time_protocols(backbone, args) if args.rounds > 0 else {}
        if args.memory:
            for name in args.protocols:
                protocols.setdefault(name, {})["peak_rss_mb_above_model"] = measure_memory(
                    backbone, name, args
                )
        results[f"{backbone} OS{args.output_stride}"] = protocols
    print_table(results)
    write_record(args, results, load_start)


def write_record(args, results: dict, load_start) -> None:
    """Writes (or, for other models at the same settings, extends) the JSON record."""
    command = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    record = {
        "commands": [command],
        "settings": {
            "size": list(args.size),
            "num_classes": NUM_CLASSES,
            "output_stride": args.output_stride,
            "tile": list(TILE),
            "tile_stride": list(PROTOCOLS["tiles"].stride),
            "scales": list(PAPER_SCALES),
            "batch": 1,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "results": results,
    }
    if os.path.isfile(args.output):
        with open(args.output) as source:
            previous = json.load(source)
        if previous.get("settings") == record["settings"]:
            record["commands"] = previous["commands"] + record["commands"]
            record["results"] = previous["results"]
            for backbone, protocols in results.items():
                for name, row in protocols.items():
                    record["results"].setdefault(backbone, {}).setdefault(name, {}).update(row)
            record["machine"] = {**record["machine"], "earlier": previous["machine"]}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as out:
        json.dump(record, out, indent=2)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
