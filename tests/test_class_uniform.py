"""Class-uniform index against a loop reference; cache reuse and invalidation; the sampler."""

import os
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from scl_tf.data import class_uniform, labels
from scl_tf.data.datasets import DatasetError


def reference_locations(train_ids, num_classes, rows, cols):
    """Loops: per (class, tile), the class pixel nearest the centroid, first in raster order."""
    height, width = train_ids.shape
    found = set()
    for c in range(num_classes):
        for r in range(rows):
            for q in range(cols):
                pixels = [
                    (y, x)
                    for y in range(height)
                    for x in range(width)
                    if train_ids[y, x] == c and y * rows // height == r and x * cols // width == q
                ]
                if not pixels:
                    continue
                cy = np.mean([p[0] for p in pixels])
                cx = np.mean([p[1] for p in pixels])
                distances = [(y - cy) ** 2 + (x - cx) ** 2 for y, x in pixels]
                found.add((c, *pixels[int(np.argmin(distances))]))
    return found


def test_locate_classes_matches_loop_reference():
    rng = np.random.default_rng(0)
    train_ids = rng.integers(0, 4, (18, 30))
    train_ids[rng.random((18, 30)) < 0.2] = 255
    classes, yx = class_uniform.locate_classes(train_ids, 4, tiles=6)
    got = {(int(c), int(y), int(x)) for c, (y, x) in zip(classes, yx)}
    assert got == reference_locations(train_ids, 4, rows=2, cols=3)


def write_labels(folder, count=4, size=(20, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        label = rng.integers(0, 12, size).astype(np.uint8)  # CamVid values, 11 = void
        path = folder / f"{i}.png"
        Image.fromarray(label).save(path)
        paths.append(str(path))
    return paths


def test_index_is_cached_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    paths = write_labels(tmp_path / "labels")
    spec = labels.camvid()
    caches = [str(tmp_path / "cache")]
    index = class_uniform.build_index(paths, spec, 16, caches, verbose=False)
    assert len(os.listdir(caches[0])) == 1
    assert index.class_offsets[-1] == len(index.image_index) == len(index.yx)

    def fail(*args):
        raise AssertionError("rebuilt although cached")

    with monkeypatch.context() as patch:
        patch.setattr(class_uniform, "_build", fail)
        cached = class_uniform.build_index(paths, spec, 16, caches, verbose=False)
    np.testing.assert_array_equal(cached.yx, index.yx)
    label = np.asarray(Image.open(paths[0])).copy()
    label[:] = 3
    Image.fromarray(label).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    changed = class_uniform.build_index(paths, spec, 16, caches, verbose=False)
    assert len(os.listdir(caches[0])) == 2
    assert (changed.image_index == 0).sum() < (index.image_index == 0).sum()


def test_unwritable_first_cache_falls_back(tmp_path):
    paths = write_labels(tmp_path / "labels")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    fallback = tmp_path / "fallback"
    class_uniform.build_index(
        paths, labels.camvid(), 16, [str(blocker), str(fallback)], verbose=False
    )
    assert len(os.listdir(fallback)) == 1


def test_undefined_label_value_names_the_file(tmp_path):
    paths = write_labels(tmp_path / "labels")
    Image.fromarray(np.full((20, 24), 40, np.uint8)).save(paths[2])
    with pytest.raises(DatasetError, match=f"{paths[2]} holds values .* \\[40\\]"):
        class_uniform.build_index(paths, labels.camvid(), 16, [str(tmp_path / "c")], verbose=False)


@pytest.mark.slow
def test_sampler_draws_classes_uniformly(tmp_path):
    paths = write_labels(tmp_path / "labels")
    # Class 7 only in one pixel of one image: it must still be drawn ~1/11 of the time.
    label = np.zeros((20, 24), np.uint8)
    label[5, 6] = 7
    Image.fromarray(label).save(paths[3])
    for path in paths[:3]:
        values = np.asarray(Image.open(path)).copy()
        values[values == 7] = 1
        Image.fromarray(values).save(path)
    index = class_uniform.build_index(
        paths, labels.camvid(), 16, [str(tmp_path / "c")], verbose=False
    )
    sampler = class_uniform.CenterSampler(index)
    draw = tf.function(lambda k: sampler(tf.stack([tf.constant(0, tf.int64), k])))
    classes = Counter()
    for k in range(2200):
        image_index, (y, x) = draw(tf.constant(k, tf.int64))
        value = np.asarray(Image.open(paths[int(image_index)]))[int(y), int(x)]
        classes[int(value)] += 1
    assert set(classes) == set(range(11))
    assert all(140 <= count <= 260 for count in classes.values()), classes
