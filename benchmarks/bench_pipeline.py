"""Input pipeline throughput at Cityscapes size: full semi-supervised stream vs bare PNG decode.

    python benchmarks/bench_pipeline.py [--frames 24] [--rounds 3] [--crop 896]

Makes 2048x1024 PNGs by upscaling bundled CamVid frames (bicubic images, nearest labels) into a
temporary CamVid-layout folder, then measures, alternating in one run:
  (a) bare decode: tf.data read + decode_png of the same image files, parallel, images/s;
  (b) the training stream of scl_tf.data.pipeline (labeled image + label, and an unlabeled
      pair u_a/u_b per element: scale/crop/flip, class-uniform crops, CutMix boxes, the colour
      jitter and blur parameters), counted as 3 decoded images per element (label maps not
      counted);
  (c) the part the train step does with those parameters (`pipeline.apply_photometric`: colour
      jitter and blur of the 3 crops), on this CPU, as milliseconds per image.
Reports the median of each over the rounds and (b)/(a).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from scl_tf.config import DataConfig, PipelineConfig  # noqa: E402
from scl_tf.data import pipeline  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = (2048, 1024)  # W, H


def make_frames(source: pathlib.Path, target: pathlib.Path, count: int) -> None:
    """Upscales `count` CamVid train frames (and labels) to SIZE in the SegNet layout."""
    names = sorted(os.listdir(source / "train"))[:count]
    for split in ("train", "trainannot"):
        (target / split).mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.open(source / "train" / name).resize(SIZE, Image.BICUBIC).save(
            target / "train" / name
        )
        Image.open(source / "trainannot" / name).resize(SIZE, Image.NEAREST).save(
            target / "trainannot" / name
        )


def images_per_second(
    dataset: tf.data.Dataset, elements: int, images_per_element: int, warmup: int
) -> float:
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(elements):
        next(iterator)
    return elements * images_per_element / (time.perf_counter() - start)


def bare_decode(paths: list[str]) -> tf.data.Dataset:
    return (
        tf.data.Dataset.from_tensor_slices(paths)
        .repeat()
        .map(
            lambda path: tf.io.decode_png(tf.io.read_file(path), channels=3),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def photometric_ms_per_image(dataset: tf.data.Dataset, repeats: int) -> float:
    """Milliseconds per image of the train step's photometric change of one element."""
    element = next(iter(dataset))
    apply = tf.function(pipeline.apply_photometric)
    apply(element)
    start = time.perf_counter()
    for _ in range(repeats):
        tf.nest.map_structure(lambda tensor: tensor.numpy(), apply(element))
    return (time.perf_counter() - start) / repeats / 3 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--elements", type=int, default=40, help="timed elements per round")
    parser.add_argument("--crop", type=int, default=896)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "bench_pipeline.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = pathlib.Path(folder)
        make_frames(REPO / "data" / "camvid_mini", root, args.frames)
        files = pipeline.train_files(DataConfig("camvid", str(root), labeled_fraction=0.5))
        config = PipelineConfig(crop_size=(args.crop, args.crop))
        full = pipeline.train_dataset(files, config, verbose=False)
        bare = bare_decode(sorted(str(p) for p in (root / "train").iterdir()))
        rates = {"bare_decode": [], "full_pipeline": []}
        step_ms = []
        for _ in range(args.rounds):
            rates["bare_decode"].append(images_per_second(bare, 3 * args.elements, 1, 6))
            rates["full_pipeline"].append(images_per_second(full, args.elements, 3, 2))
            step_ms.append(photometric_ms_per_image(full, 5))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["full_pipeline"] / medians["bare_decode"]
    result = {
        "what": "images/s at 2048x1024, per decoded image; full = 3 decoded images/element; "
        "colour jitter and blur run in the train step (timed apart)",
        "crop": args.crop,
        "frames": args.frames,
        "rounds": rates,
        "median": medians,
        "ratio_full_over_bare": ratio,
        "target_ratio": 0.8,
        "photometric_in_step_ms_per_image": {
            "rounds": step_ms,
            "median": statistics.median(step_ms),
        },
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
    }
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'case':<16}{'images/s (median)':>20}")
    for name, value in medians.items():
        print(f"{name:<16}{value:>20.2f}")
    print(f"full / bare = {ratio:.3f} (target >= 0.8)  -> {args.output}")
    print(
        f"colour jitter + blur in the train step: {statistics.median(step_ms):.1f} ms per "
        "image on this CPU"
    )


if __name__ == "__main__":
    main()
