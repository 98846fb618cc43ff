"""TensorBoard output of a run: scalars and an image panel of the unlabeled branch."""

from __future__ import annotations

import glob
import os

import numpy as np
import tensorflow as tf

from scl_tf.data.labels import IGNORE_LABEL
from scl_tf.data.pipeline import apply_photometric


def colorize(train_ids, palette: np.ndarray) -> tf.Tensor:
    """int [..., H, W] train ids -> uint8 [..., H, W, 3]; ignore (255) is black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette
    table[IGNORE_LABEL] = 0
    return tf.gather(tf.constant(table), tf.cast(train_ids, tf.int32))


def panel_images(model, batch, palette: np.ndarray) -> tf.Tensor:
    """One row per unlabeled pair: CutMix input | teacher target | student prediction, and the
    labeled input | its label | the student's prediction above them.

    Args:
      model: SCLModel; batch: one replica's pipeline element (photometric change not applied).
    Returns:
      uint8 [rows, h, 3 * w, 3].
    """
    batch = apply_photometric(batch)
    labeled = batch["labeled"]
    rows = [
        tf.concat(
            [
                tf.cast(labeled["image"], tf.uint8),
                colorize(labeled["label"], palette),
                colorize(tf.argmax(model(labeled["image"]), -1), palette),
            ],
            axis=2,
        )
    ]
    if "unlabeled" in batch:
        mixed, target, _ = model.cutmix_batch(batch["unlabeled"])
        rows.append(
            tf.concat(
                [
                    tf.cast(mixed, tf.uint8),
                    colorize(tf.argmax(target, -1), palette),
                    colorize(tf.argmax(model(mixed), -1), palette),
                ],
                axis=2,
            )
        )
    return tf.concat(rows, axis=0)


def write_scalars(writer, step: int, values: dict) -> None:
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)


def write_panel(writer, step: int, images) -> None:
    with writer.as_default(step=step):
        tf.summary.image("panel", images, max_outputs=8)


def read_events(path: str) -> list:
    """The events of one TensorBoard file, in order (tf.compat.v1.Event protos)."""
    return [
        tf.compat.v1.Event.FromString(raw)
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator()
    ]


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars of a run's TensorBoard files, {tag: [(step, value), ...] by step}.

    A resumed run writes a new file and repeats the steps after its last checkpoint; the value
    written last (newest file) is kept for each step. {} when `log_dir` has no event files.
    """
    latest: dict[str, dict[int, float]] = {}
    for path in sorted(
        glob.glob(os.path.join(log_dir, "events.out.tfevents.*")), key=os.path.getmtime
    ):
        for event in read_events(path):
            for value in event.summary.value:
                latest.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return {tag: sorted(values.items()) for tag, values in latest.items()}


def drop_events_after(log_dir: str, step: int) -> None:
    """Removes the events of steps after `step` from the event files in `log_dir`.

    A run killed after its last checkpoint logged steps that its resumed run logs again; kept,
    TensorBoard would show both. Files without such events are left untouched; the others
    are rewritten whole (a new file, then renamed over the old one).
    """
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
        kept = [raw for raw in records if tf.compat.v1.Event.FromString(raw).step <= step]
        if len(kept) == len(records):
            continue
        temporary = path + ".tmp"
        with tf.io.TFRecordWriter(temporary) as out:
            for raw in kept:
                out.write(raw)
        os.replace(temporary, path)
