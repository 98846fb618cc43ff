"""Checkpoints of a run: the last few, the best by validation mIoU, and resume.

A checkpoint holds the student, the teacher, the optimizer (its step count drives the learning
rate), the loop's step (which is also the input stream's position: the stream is a function of
the sample number) and the structured loss's sampling state. TensorFlow writes a checkpoint's
files before it points the `checkpoint` index file at them, so a process killed mid-save leaves
the previous checkpoint as the latest: at most the steps since the last save are lost.

Under MultiWorkerMirroredStrategy every worker saves (saving is collective) but only the chief
writes into the model dir; the others write to a scratch folder removed at the end.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from scl_tf.runs import BEST_FOLDER, LATEST_FOLDER
from scl_tf.training.distribute import is_chief


class RunCheckpoints:
    """Saves and restores the state of a run.

    Args:
      model_dir: the run's folder.
      strategy: the run's strategy (decides who writes where).
      keep: recent checkpoints kept.
      **objects: trackables to save (models, optimizer, variables).
    """

    def __init__(self, model_dir: str, strategy: tf.distribute.Strategy, keep: int, **objects):
        self.chief = is_chief(strategy)
        root = model_dir
        if not self.chief:
            resolver = strategy.cluster_resolver
            root = os.path.join(model_dir, f".scratch_{resolver.task_type}_{resolver.task_id}")
        self._scratch = None if self.chief else root
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_miou = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_miou")
        self.checkpoint = tf.train.Checkpoint(step=self.step, best_miou=self.best_miou, **objects)
        self.latest = tf.train.CheckpointManager(
            self.checkpoint,
            os.path.join(root, LATEST_FOLDER),
            max_to_keep=keep,
            step_counter=self.step,
        )
        self.best = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(root, BEST_FOLDER), max_to_keep=1, step_counter=self.step
        )

    def restore(self) -> bool:
        """Restores the latest checkpoint, if any; returns whether one was found."""
        path = self.latest.latest_checkpoint
        if path is None:
            return False
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return True

    def saved_step(self) -> int | None:
        """The step of the latest saved checkpoint, None before the first save."""
        path = self.latest.latest_checkpoint
        return None if path is None else int(path.rsplit("-", 1)[1])

    def save(self) -> str:
        """Saves the current state as the latest checkpoint; returns its path."""
        return self.latest.save(checkpoint_number=self.step)

    def offer_best(self, miou: float) -> bool:
        """Saves the current state as the best checkpoint if `miou` beats the best so far."""
        if miou <= float(self.best_miou.numpy()):
            return False
        self.best_miou.assign(miou)
        self.best.save(checkpoint_number=self.step)
        return True

    def close(self) -> None:
        """Removes a non-chief worker's scratch checkpoints."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
