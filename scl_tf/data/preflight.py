"""Before step 1: decode every file a run will read, and stop on any problem, all listed at once.

Labeled and val pairs are checked as `scl_tf.data.check` checks them (image and label decoded
in full by the TensorFlow functions the training input runs, sizes equal, every label value one
the dataset defines); unlabeled images are decoded the same way. A file that passed is
remembered by path, size and modification time (with the label table it was checked against)
in the user cache (`scl_tf.cache.data_cache_dir`), so a second run over the same data decodes
nothing: it only reads the cache and stats the files.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os

from scl_tf.data import check
from scl_tf.data.datasets import Sample, raise_problems
from scl_tf.data.labels import LabelSpec

CACHE_VERSION = 2  # 2: checked with TensorFlow's decoders (1: Pillow's)
_PROGRESS_ABOVE = 200  # files to decode before a progress bar is worth showing


def _stamp(path: str | None) -> str:
    if path is None:
        return "-"
    try:
        status = os.stat(path)
    except OSError:  # gone or unreadable: never verified, and the check names it
        return f"{os.path.abspath(path)}|missing"
    return f"{os.path.abspath(path)}|{status.st_size}|{status.st_mtime_ns}"


def sample_key(sample: Sample) -> str:
    """What identifies one version of a sample's files: paths, sizes, modification times."""
    return f"{_stamp(sample.image)}&{_stamp(sample.label)}"


def cache_name(spec: LabelSpec) -> str:
    """The cache file of the samples verified against `spec`'s label table."""
    digest = hashlib.sha256(f"{CACHE_VERSION}|{spec.num_classes}|".encode())
    digest.update(spec.value_to_train_id.tobytes())
    return f"preflight_{digest.hexdigest()[:16]}.txt"


def _read_verified(folders: list[str], name: str) -> set[str]:
    for folder in folders:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="surrogateescape") as source:
                return set(source.read().splitlines())
    return set()


def _record_verified(folders: list[str], name: str, keys: list[str]) -> None:
    """Appends `keys` to the first writable cache folder's file (best effort: a read-only cache
    only costs the next run its decoding again)."""
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name)
            with open(path, "a", encoding="utf-8", errors="surrogateescape") as out:
                out.writelines(f"{key}\n" for key in keys)
            return
        except OSError:
            continue


def _problems(sample: Sample, spec: LabelSpec) -> list[str]:
    """The problems of one pair (decoded in full, sizes, label values) or unlabeled image."""
    return check.scan_sample(sample, spec)[0]


def preflight(
    labeled: list[Sample],
    unlabeled: list[str],
    val: list[Sample],
    spec: LabelSpec,
    cache_folders: list[str],
    verbose: bool = True,
) -> int:
    """Decodes every file not verified before; raises if any is bad.

    Args:
      labeled, val: image/label pairs; unlabeled: image paths.
      cache_folders: where the verified files are remembered, first writable wins (e.g.
        `scl_tf.data.class_uniform.cache_dirs(data_root)`: the dataset's user cache folder).

    Returns:
      How many files were decoded (0 when all were verified by an earlier run).

    Raises:
      scl_tf.data.datasets.DatasetError: listing every problem, each naming its file.
    """
    import keras  # the progress bar only

    samples = [*labeled, *(Sample(path) for path in unlabeled), *val]
    name = cache_name(spec)
    verified = _read_verified(cache_folders, name)
    keys = [sample_key(sample) for sample in samples]
    todo = [(key, sample) for key, sample in zip(keys, samples) if key not in verified]
    if not todo:
        return 0
    files = sum(1 + (sample.label is not None) for _, sample in todo)
    show = verbose and files > _PROGRESS_ABOVE
    if show:
        print(f"Checking {files} files once (remembered for later runs)")
    progress = keras.utils.Progbar(len(todo), unit_name="sample", verbose=1 if show else 0)
    problems, passed = [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        found = pool.map(lambda item: _problems(item[1], spec), todo)
        for done, ((key, _), sample_problems) in enumerate(zip(todo, found), 1):
            problems.extend(sample_problems)
            if not sample_problems:
                passed.append(key)
            progress.update(done)
    _record_verified(cache_folders, name, passed)
    raise_problems(problems, "the run's files")
    return files
