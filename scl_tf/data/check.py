"""Scan a dataset and report every problem at once, with per-split counts and class shares.

    python -m scl_tf.data.check --dataset=camvid --data_dir=data/camvid_mini

Every image and label is decoded in full by TensorFlow's decoders, the ones training uses, so
"No problems found" means a training run will not stop on a file (corrupt or truncated files,
files of another format, image/label size mismatches, label values the dataset does not define,
unpaired files, empty or missing splits). Exits with status 1 if anything is wrong.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys

import numpy as np
from absl import app, flags

from scl_tf import config as config_lib
from scl_tf import flags as flags_lib
from scl_tf.data import datasets, decode
from scl_tf.data.datasets import DatasetError, Sample
from scl_tf.data.labels import LabelSpec

REQUIRED_SPLITS = ("train", "val")


def scan_sample(sample: Sample, spec: LabelSpec) -> tuple[list[str], np.ndarray]:
    """Checks one image (and label) as training reads it: headers first (special files, images
    too large, label mode, sizes), then TensorFlow's decoders, the ones training uses, and the
    label values. Returns (problems, int64 [C + 1] pixel counts per train id, the last entry
    counting ignored pixels)."""
    counts = np.zeros(spec.num_classes + 1, np.int64)
    problems = datasets.header_problems(sample)
    if problems:  # decoding would hang (a FIFO), exhaust memory, or repeat the problem
        return problems, counts
    try:
        decode.load_image(sample.image)
    except DatasetError as error:
        problems.append(str(error))
    if sample.label is None:
        return problems, counts
    try:
        label = decode.load_label_values(sample.label)
        train_ids = decode.train_ids_of(label, spec.value_to_train_id, sample.label)
    except DatasetError as error:
        return problems + [str(error)], counts
    scored = train_ids[(train_ids >= 0) & (train_ids < spec.num_classes)]
    counts[: spec.num_classes] = np.bincount(scored, minlength=spec.num_classes)
    counts[-1] = label.size - scored.size
    return problems, counts


def scan(samples: list[Sample], spec: LabelSpec) -> tuple[list[str], np.ndarray]:
    """scan_sample over many samples in threads; problems in file order, summed counts."""
    problems, total = [], np.zeros(spec.num_classes + 1, np.int64)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        for found, counts in pool.map(lambda sample: scan_sample(sample, spec), samples):
            problems.extend(found)
            total += counts
    return problems, total


def image_problem(path: str) -> str | None:
    """Why an image (or label) file does not decode as training decodes it, or None."""
    problems = datasets.header_problems(Sample(path))
    if problems:
        return problems[0]
    try:
        decode.load_image(path)
    except DatasetError as error:
        return str(error)
    return None


def find_unreadable(paths: list[str]) -> list[str]:
    """The problems of the paths among `paths` that do not decode as training decodes them
    (for naming the file behind a decode error raised inside tf.data)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return [problem for problem in pool.map(image_problem, paths) if problem]


def bad_file_message(error, paths: list[str]) -> str:
    """One line naming the file behind a tf.errors.OpError raised inside tf.data: the path the
    error names (scl_tf.data's checks put it there), else the first of `paths` that does not
    decode now (TensorFlow's own decoders name none)."""
    text = decode.error_text(error)
    if any(path in text for path in paths):
        return text
    unreadable = find_unreadable(paths)
    return unreadable[0] if unreadable else text


def _report(config: config_lib.DataConfig) -> list[str]:
    """Prints counts and class shares per split; returns every problem found."""
    spec = datasets.label_spec(config)
    splits = datasets.existing_splits(config)
    problems = [f"split {split!r} is missing" for split in REQUIRED_SPLITS if split not in splits]
    for split in splits:
        try:
            samples = datasets.find_pairs(config, split)
        except DatasetError as error:
            problems.append(str(error))
            continue
        found, counts = scan(samples, spec)
        problems.extend(found)
        shares = counts / max(counts.sum(), 1)
        print(f"\n{split}: {len(samples)} pairs, {len(found)} problem(s); pixel shares:")
        for name, share in zip(spec.class_names + ("(ignored)",), shares):
            print(f"  {name:<20} {100 * share:6.2f} %")
    try:
        extra = datasets.find_extra_unlabeled(config)
    except DatasetError as error:
        problems.append(str(error))
        extra = []
    if extra:
        found = find_unreadable(extra)
        problems.extend(found)
        print(f"\nextra unlabeled: {len(extra)} images, {len(found)} problem(s)")
    return problems


def main(argv):
    del argv
    try:
        problems = _report(flags_lib.data_config(flags.FLAGS))
    except (config_lib.ConfigError, DatasetError) as error:
        sys.exit(f"error: {error}")
    if problems:
        print(f"\n{len(problems)} problem(s):", *problems, sep="\n  ")
        sys.exit(1)
    print("\nNo problems found.")


if __name__ == "__main__":
    flags_lib.define_data_flags()
    app.run(main)
