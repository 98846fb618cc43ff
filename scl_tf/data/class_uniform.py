"""Class-uniform sampling (Zhu et al. 2019): crops centred on a pixel of a uniformly chosen class.

Rare classes (poles, riders, trains) occupy a tiny share of the pixels; choosing the class first
and then a place where it occurs lets every class be seen about equally often. The index of where
each class occurs is built once by decoding every labeled label map, and cached as an .npz keyed
by the label files' paths, sizes and modification times, so a changed file rebuilds it. The
cache is the dataset's user cache folder (`scl_tf.cache.data_cache_dir`), never the dataset.

Each image is cut into about `tiles` tiles; for every (class, tile) that holds the class the index
keeps one pixel of that class: the one nearest the class pixels' centroid in the tile.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf

from scl_tf.cache import data_cache_dir
from scl_tf.data import decode
from scl_tf.data.datasets import DatasetError
from scl_tf.data.labels import LabelSpec

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ClassIndex:
    """Pixels where each class occurs, grouped by class.

    Attributes:
      class_offsets: int64 [C + 1]: entries of class c are class_offsets[c]:class_offsets[c+1].
      image_index: int32 [E]: index of the image (in the list the index was built from).
      yx: int32 [E, 2]: pixel row and column in that image.
    """

    class_offsets: np.ndarray
    image_index: np.ndarray
    yx: np.ndarray

    def class_counts(self) -> np.ndarray:
        """int64 [C]: entries per class."""
        return np.diff(self.class_offsets)


def locate_classes(train_ids: np.ndarray, num_classes: int, tiles: int):
    """One pixel per (class, tile): the class pixel nearest the centroid of the class's pixels
    in that tile.

    Args:
      train_ids: int [H, W] train ids (values >= num_classes are ignored).
      num_classes: C.
      tiles: about this many tiles, laid out to keep them near square.

    Returns:
      classes: int32 [K]; yx: int32 [K, 2].
    """
    height, width = train_ids.shape
    rows = max(1, round(np.sqrt(tiles * height / width)))
    cols = max(1, round(tiles / rows))
    ys, xs = np.nonzero(train_ids < num_classes)
    classes = train_ids[ys, xs].astype(np.int64)
    tile = (ys * rows // height) * cols + xs * cols // width
    key = classes * (rows * cols) + tile
    num_keys = num_classes * rows * cols
    count = np.maximum(np.bincount(key, minlength=num_keys), 1)
    center_y = np.bincount(key, ys, num_keys) / count
    center_x = np.bincount(key, xs, num_keys) / count
    distance = (ys - center_y[key]) ** 2 + (xs - center_x[key]) ** 2
    nearest = np.full(num_keys, np.inf)
    np.minimum.at(nearest, key, distance)
    candidates = np.flatnonzero(distance == nearest[key])
    _, first = np.unique(key[candidates], return_index=True)  # first in raster order per key
    chosen = candidates[first]
    return (
        classes[chosen].astype(np.int32),
        np.stack([ys[chosen], xs[chosen]], axis=1).astype(np.int32),
    )


def _read_train_ids(path: str, spec: LabelSpec) -> np.ndarray:
    return decode.train_ids_of(decode.decode_label_file(path), spec.value_to_train_id, path)


def _cache_key(label_paths: list[str], spec: LabelSpec, tiles: int) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{tiles}|{spec.num_classes}|".encode())
    digest.update(spec.value_to_train_id.tobytes())
    for path in label_paths:
        status = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{status.st_size}|{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_dirs(data_root: str) -> list[str]:
    """Where a dataset's caches (this index, the preflight's verified files) are kept: its
    folder in the user cache, or under $SCL_TF_DATA_CACHE (`scl_tf.cache.data_cache_dir`)."""
    return [data_cache_dir(data_root)]


def build_index(
    label_paths: list[str],
    spec: LabelSpec,
    tiles: int,
    cache_candidates: list[str],
    verbose: bool = True,
) -> ClassIndex:
    """The class index of `label_paths`, from the first cache that has it, else built (with a
    progress bar) and saved to the first writable cache folder."""
    name = f"class_uniform_{_cache_key(label_paths, spec, tiles)}.npz"
    for folder in cache_candidates:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with np.load(path) as cached:
                return ClassIndex(cached["class_offsets"], cached["image_index"], cached["yx"])
    index = _build(label_paths, spec, tiles, verbose)
    for folder in cache_candidates:
        try:
            os.makedirs(folder, exist_ok=True)
            temporary = os.path.join(folder, name + f".{os.getpid()}.tmp.npz")
            np.savez(temporary, **dataclasses.asdict(index))
            os.replace(temporary, os.path.join(folder, name))  # atomic: never a half file
            break
        except OSError:
            continue
    return index


def _build(label_paths: list[str], spec: LabelSpec, tiles: int, verbose: bool) -> ClassIndex:
    import keras  # the progress bar only

    def locate(path):
        return locate_classes(_read_train_ids(path, spec), spec.num_classes, tiles)

    progress = keras.utils.Progbar(
        len(label_paths), unit_name="label map", verbose=1 if verbose else 0
    )
    if verbose:
        print(
            f"Building the class-uniform index of {len(label_paths)} label maps (cached afterwards)"
        )
    found = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        for image_index, (classes, yx) in enumerate(pool.map(locate, label_paths)):
            found.append((np.full(len(classes), image_index, np.int32), classes, yx))
            progress.update(image_index + 1)
    image_index, classes, yx = (np.concatenate(parts) for parts in zip(*found))
    order = np.argsort(classes, kind="stable")
    offsets = np.searchsorted(classes[order], np.arange(spec.num_classes + 1)).astype(np.int64)
    return ClassIndex(offsets, image_index[order], yx[order])


class CenterSampler:
    """Draws a class uniformly among those present, then one of its index entries uniformly.

    The index arrays become tensors once, here, and are captured by the tf.data functions
    that call the sampler.
    """

    def __init__(self, index: ClassIndex):
        counts = index.class_counts()
        present = np.flatnonzero(counts > 0)
        if present.size == 0:
            raise DatasetError("class-uniform sampling: no labeled pixel of any class")
        self._present = tf.constant(present, tf.int32)
        self._first = tf.constant(index.class_offsets[:-1], tf.int64)
        self._count = tf.constant(counts, tf.int64)
        self._image_index = tf.constant(index.image_index, tf.int32)
        self._yx = tf.constant(index.yx, tf.int32)

    def __call__(self, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """seed: int [2] stateless seed -> (image_index int32 scalar, yx int32 [2])."""
        draw = tf.random.stateless_uniform([2], seed, dtype=tf.float64)
        num_present = tf.size(self._present, tf.int64)
        pick = tf.minimum(
            tf.cast(draw[0] * tf.cast(num_present, tf.float64), tf.int64), num_present - 1
        )
        class_id = tf.gather(self._present, pick)
        count = tf.gather(self._count, class_id)
        offset = tf.minimum(tf.cast(draw[1] * tf.cast(count, tf.float64), tf.int64), count - 1)
        entry = tf.gather(self._first, class_id) + offset
        return tf.gather(self._image_index, entry), tf.gather(self._yx, entry)
