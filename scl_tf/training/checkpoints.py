"""Checkpoints of a run: the last few, the best by validation mIoU, and resume.

A checkpoint holds the student, the teacher, the optimizer (its step count drives the learning
rate), the loop's step (which is also the input stream's position: the stream is a function of
the sample number) and the structured loss's sampling state. TensorFlow writes a checkpoint's
files before it points the `checkpoint` index file at them, so a process killed mid-save leaves
the previous checkpoint as the latest: at most the steps since the last save are lost. What such
a save left (`ckpt-N_temp/`, files of a checkpoint the index does not list) is removed when the
run starts again, and a save that fails (a full disk) removes its partial files and stops the
run in one line (`CheckpointError`), as does a checkpoint that cannot be read back.

Under MultiWorkerMirroredStrategy every worker saves (saving is collective) but only the chief
writes into the model dir; the others write to a scratch folder removed at the end.
"""

from __future__ import annotations

import os
import re
import shutil

import tensorflow as tf

from scl_tf.data.decode import error_text
from scl_tf.runs import BEST_FOLDER, LATEST_FOLDER
from scl_tf.training.distribute import is_chief


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read back; the one-line message names it."""


def _reason(error: Exception) -> str:
    return error_text(error) if isinstance(error, tf.errors.OpError) else str(error)


def remove_unfinished(manager: tf.train.CheckpointManager) -> list[str]:
    """Removes what unfinished saves left in a manager's folder: `<prefix>_temp/` folders and the
    files of checkpoints that its `checkpoint` index does not list and that are newer than its
    latest. Returns the paths removed."""
    folder = manager.directory
    if not os.path.isdir(folder):
        return []
    listed = {os.path.basename(path) for path in manager.checkpoints}
    latest = manager.latest_checkpoint
    newest = int(latest.rsplit("-", 1)[1]) if latest else -1
    removed = []
    for name in os.listdir(folder):
        match = re.fullmatch(r"(ckpt-(\d+))(_temp|\.index|\.data-\d+-of-\d+)", name)
        if not match or match[1] in listed:
            continue
        if match[3] != "_temp" and int(match[2]) <= newest:
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(path)
    return removed


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
        if self.chief:  # the run holds its model dir (scl_tf.runs.lock_model_dir)
            for manager in (self.latest, self.best):
                remove_unfinished(manager)

    def restore(self) -> bool:
        """Restores the latest checkpoint, if any; returns whether one was found.

        Raises:
          CheckpointError: it cannot be read (a truncated or damaged file); names it.
        """
        path = self.latest.latest_checkpoint
        if path is None:
            return False
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError, ValueError) as error:
            # IndexError: a truncated data file ("Read less bytes than requested").
            raise CheckpointError(
                f"checkpoint {path} cannot be read, truncated or damaged? ({_reason(error)}); "
                "remove its files and its lines in the checkpoint index to resume from the one "
                "before, or train in a new --model_dir"
            ) from None
        return True

    def saved_step(self) -> int | None:
        """The step of the latest saved checkpoint, None before the first save."""
        path = self.latest.latest_checkpoint
        return None if path is None else int(path.rsplit("-", 1)[1])

    def _save(self, manager: tf.train.CheckpointManager, what: str) -> str:
        """Saves with `manager`; a failed save removes its partial files and raises."""
        try:
            return manager.save(checkpoint_number=self.step)
        except (OSError, tf.errors.OpError) as error:
            remove_unfinished(manager)
            kept = manager.latest_checkpoint
            raise CheckpointError(
                f"saving the {what} checkpoint of step {int(self.step.numpy())} in "
                f"{manager.directory} failed ({_reason(error)}); its partial files are removed, "
                + (f"{kept} is kept" if kept else "no earlier checkpoint is kept")
            ) from None

    def save(self) -> str:
        """Saves the current state as the latest checkpoint (unless it is already saved at this
        step); returns its path.

        Raises:
          CheckpointError: the save failed (e.g. a full disk), its partial files removed.
        """
        if self.saved_step() == int(self.step.numpy()):
            return self.latest.latest_checkpoint
        return self._save(self.latest, "latest")

    def offer_best(self, miou: float) -> bool:
        """Saves the current state as the best checkpoint if `miou` beats the best so far.

        Raises:
          CheckpointError: the save failed, its partial files removed.
        """
        if miou <= float(self.best_miou.numpy()):
            return False
        self.best_miou.assign(miou)
        self._save(self.best, "best")
        return True

    def close(self) -> None:
        """Removes a non-chief worker's scratch checkpoints."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
