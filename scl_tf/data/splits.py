"""Choosing the labeled subset of the train split; the rest joins the unlabeled pool.

The choice is deterministic: train pairs are sorted by path and permuted with a seeded NumPy
generator, so the same data, fraction and seed give the same list on every machine. The chosen
list is written to the model dir so that a run can be reproduced with --labeled_list.
"""

from __future__ import annotations

import os

import numpy as np

from scl_tf.config import DataConfig
from scl_tf.data.datasets import DatasetError, Sample, raise_problems

LABELED_LIST_NAME = "labeled_list.txt"


def choose_labeled(
    train: list[Sample], config: DataConfig, root: str
) -> tuple[list[Sample], list[Sample]]:
    """Splits train pairs into (labeled, unlabeled), both sorted by image path.

    Args:
      train: the train split's pairs.
      config: --labeled_fraction, --labeled_count or --labeled_list (at most one; none means
        every pair is labeled), and --split_seed.
      root: folder that relative names in a labeled list are relative to.
    """
    train = sorted(train, key=lambda sample: sample.image)
    if config.labeled_list is not None:
        chosen = _read_labeled_list(config.labeled_list, train, root)
    else:
        count = _labeled_count(len(train), config)
        order = np.random.default_rng(config.split_seed).permutation(len(train))
        chosen = set(order[:count].tolist())
    labeled = [sample for index, sample in enumerate(train) if index in chosen]
    unlabeled = [sample for index, sample in enumerate(train) if index not in chosen]
    return labeled, unlabeled


def _labeled_count(num_train: int, config: DataConfig) -> int:
    if config.labeled_count is not None:
        if config.labeled_count > num_train:
            raise DatasetError(
                f"--labeled_count={config.labeled_count} exceeds the {num_train} train pairs"
            )
        return config.labeled_count
    fraction = 1.0 if config.labeled_fraction is None else config.labeled_fraction
    return max(1, round(fraction * num_train))


def _names(sample: Sample, root: str) -> tuple[str, ...]:
    """The names a labeled list may use for a sample: relative path, file name, stem."""
    relative = os.path.relpath(sample.image, root)
    file_name = os.path.basename(sample.image)
    stem = os.path.splitext(file_name)[0]
    return relative, file_name, stem, stem.removesuffix("_leftImg8bit")


def read_list_lines(path: str, flag: str) -> list[str]:
    """The lines of a list file: UTF-8 text, with or without a byte-order mark, any line ends.

    Raises:
      DatasetError: unreadable, or not UTF-8; names `flag`, the file and the line.
    """
    try:
        with open(path, "rb") as source:
            data = source.read()
    except OSError as error:
        raise DatasetError(f"{flag} {path}: unreadable ({error.strerror})") from None
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{flag} {path}: line {line} is not UTF-8 text (byte 0x{data[error.start]:02x}); "
            "save the list as UTF-8"
        ) from None


def _read_labeled_list(path: str, train: list[Sample], root: str) -> set[int]:
    index_of: dict[str, set[int]] = {}
    for index, sample in enumerate(train):
        for name in _names(sample, root):
            index_of.setdefault(name, set()).add(index)
    chosen: set[int] = set()
    problems = []
    for number, line in enumerate(read_list_lines(path, "--labeled_list"), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        matches = index_of.get(name, set())
        if len(matches) == 1:
            chosen |= matches
        elif not matches:
            problems.append(f"line {number}: {name!r} is not a train image")
        else:
            problems.append(
                f"line {number}: {name!r} matches {len(matches)} train images; "
                "use the relative path"
            )
    raise_problems(problems, f"--labeled_list {path}")
    if not chosen:
        raise DatasetError(f"--labeled_list {path}: names no image")
    return chosen


def labeled_names(labeled: list[Sample], root: str) -> list[str]:
    """The labeled images' paths relative to `root`, as labeled_list.txt holds them."""
    return [os.path.relpath(sample.image, root) for sample in labeled]


def write_labeled_list(model_dir: str, labeled: list[Sample], root: str) -> str:
    """Writes the labeled images' paths relative to `root`, one per line; returns the file."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LABELED_LIST_NAME)
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(name + "\n" for name in labeled_names(labeled, root))
    return path
