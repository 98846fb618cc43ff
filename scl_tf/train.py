"""Training entry point.

    python -m scl_tf.train --flagfile=configs/cityscapes.flags

Trains (or resumes, if the model dir has checkpoints) the student and EMA teacher, validates on
the val split, and exports the evaluation weights to MODEL_DIR/model.keras.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from scl_tf import config as config_lib
from scl_tf import flags as flags_lib
from scl_tf.data.datasets import DatasetError


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint INFO lines drown the bar
    from scl_tf.models.imagenet import ImageNetWeightsError
    from scl_tf.training.checkpoints import CheckpointError
    from scl_tf.training.loop import TrainingError, train

    try:
        config = flags_lib.config(flags.FLAGS)
        result = train(config)
    except (
        config_lib.ConfigError,
        DatasetError,
        TrainingError,
        CheckpointError,
        ImageNetWeightsError,
    ) as error:
        sys.exit(f"error: {error}")
    if result.stopped_early:
        sys.exit(
            f"stopped at step {result.step} of {result.total_steps}; run the same command "
            "again to resume"
        )
    # A rerun of a finished run makes no step and so no evaluation.
    score = "" if result.val_miou is None else f", val mIoU {100 * result.val_miou:.2f}"
    print(f"Done: {result.step} steps ({result.updates} updates in this process){score}")


def run():
    flags_lib.define_train_flags()
    app.run(main)


if __name__ == "__main__":
    run()
