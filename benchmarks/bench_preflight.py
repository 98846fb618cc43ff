"""What the preflight of scl_tf.train costs: first run (every file decoded) and second (cache).

    python benchmarks/bench_preflight.py --camvid=PATH/TO/CamVid   # benchmarks/bench_preflight.json

Measured: the full CamVid train + val splits (367 + 101 pairs at 360x480). Extrapolated: a
Cityscapes-sized tree, 2,975 labeled pairs + 500 val pairs + 20,000 coarse images at 1024x2048,
from a timed sample of Cityscapes-sized frames (CamVid frames upscaled to 1024x2048, written as
PNG like Cityscapes' own, labels with nearest-neighbour), scaled by the file counts.

The preflight decodes with TensorFlow, the decoders training uses (`scl_tf.data.decode`); beside
it, in the same run and on the same files (already in the page cache), the CamVid files are
decoded with Pillow as the preflight did before: `tensorflow_over_pillow` is the ratio.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from scl_tf.config import DataConfig
from scl_tf.data import datasets, pipeline, preflight

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CITYSCAPES = {"labeled": 2975, "val": 500, "unlabeled": 20000}
CITYSCAPES_SIZE = (2048, 1024)  # W x H


def timed_preflight(files, val, folders):
    """(seconds, files decoded) of one preflight."""
    start = time.perf_counter()
    decoded = preflight.preflight(
        files.labeled, files.unlabeled, val, files.spec, folders, verbose=False
    )
    return time.perf_counter() - start, decoded


def pillow_seconds(paths: list[str]) -> float:
    """Seconds to decode `paths` in full with Pillow on every core (the preflight's decoder
    before it decoded as training does)."""

    def decode(path):
        with Image.open(path) as image:
            return np.asarray(image).shape

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(decode, paths))
    return time.perf_counter() - start


def camvid_costs(camvid: str, work: str) -> dict:
    """Preflight of the full CamVid train + val splits, cold and warm (a private cache), and
    the same files decoded with Pillow."""
    config = DataConfig("camvid", camvid)
    files, val = pipeline.train_files(config), datasets.find_pairs(config, "val")
    paths = [path for sample in (*files.labeled, *val) for path in (sample.image, sample.label)]
    for path in paths:  # into the page cache: both decoders then read from memory
        pathlib.Path(path).read_bytes()
    pillow = pillow_seconds(paths)
    folders = [os.path.join(work, "camvid_cache")]
    first, decoded = timed_preflight(files, val, folders)
    second, again = timed_preflight(files, val, folders)
    return {
        "pairs": len(files.labeled) + len(val),
        "files_decoded": decoded,
        "first_run_s": round(first, 2),
        "second_run_s": round(second, 3),
        "second_run_files_decoded": again,
        "pillow_decode_s": round(pillow, 2),
        "tensorflow_over_pillow": round(first / pillow, 2),
    }


def cityscapes_sample(camvid: str, work: str, count: int) -> pathlib.Path:
    """A CamVid-layout tree of `count` train pairs upscaled to Cityscapes' 1024x2048."""
    root = pathlib.Path(work) / "large"
    for split in ("train", "trainannot", "val", "valannot"):
        (root / split).mkdir(parents=True)
    for path in sorted(pathlib.Path(camvid, "train").glob("*.png"))[:count]:
        with Image.open(path) as image:
            image.resize(CITYSCAPES_SIZE, Image.BILINEAR).save(root / "train" / path.name)
        with Image.open(pathlib.Path(camvid, "trainannot", path.name)) as label:
            label.resize(CITYSCAPES_SIZE, Image.NEAREST).save(root / "trainannot" / path.name)
    first = sorted((root / "train").glob("*.png"))[0].name
    shutil.copy(root / "train" / first, root / "val" / first)
    shutil.copy(root / "trainannot" / first, root / "valannot" / first)
    return root


def cityscapes_costs(camvid: str, work: str, count: int) -> dict:
    """Per-pair and per-image decode times at 1024x2048, scaled to CITYSCAPES' counts."""
    root = cityscapes_sample(camvid, work, count)
    config = DataConfig("camvid", str(root), labeled_fraction=1.0)
    files = pipeline.train_files(config)
    images_only = pipeline.TrainFiles(files.spec, files.root, [], [s.image for s in files.labeled])
    pair_s, _ = timed_preflight(files, [], [os.path.join(work, "pairs_cache")])
    image_s, _ = timed_preflight(images_only, [], [os.path.join(work, "images_cache")])
    per_pair, per_image = pair_s / count, image_s / count
    pairs = CITYSCAPES["labeled"] + CITYSCAPES["val"]
    first = pairs * per_pair + CITYSCAPES["unlabeled"] * per_image
    return {
        "sample_pairs": count,
        "seconds_per_pair": round(per_pair, 4),
        "seconds_per_image": round(per_image, 4),
        "files": CITYSCAPES,
        "first_run_minutes_extrapolated": round(first / 60, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", required=True, help="CamVid in the SegNet layout")
    parser.add_argument("--sample", type=int, default=24, help="Cityscapes-sized pairs timed")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "bench_preflight.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        record = {
            "command": " ".join(["python benchmarks/bench_preflight.py", *sys.argv[1:]]),
            "threads": os.cpu_count(),
            "camvid": camvid_costs(args.camvid, work),
            "cityscapes_sized": cityscapes_costs(args.camvid, work, args.sample),
        }
    with open(args.output, "w") as out:
        json.dump(record, out, indent=2)
        out.write("\n")
    print(json.dumps(record, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
