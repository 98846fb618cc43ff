"""Training entry point: python -m scl_tf.train --flagfile=configs/cityscapes.flags

The teacher-student trainer is not implemented yet; for now this command checks the flags and
the data, builds one batch of the input pipeline and says so.
"""

from __future__ import annotations

import sys

from absl import app, flags

from scl_tf import config as config_lib
from scl_tf.data import pipeline
from scl_tf.data.datasets import DatasetError


def main(argv):
    del argv
    try:
        config = config_lib.from_flags(flags.FLAGS)
        files = pipeline.train_files(config.data, config.model_dir)
        element = next(iter(pipeline.train_dataset(files, config.pipeline)))
    except (config_lib.ConfigError, DatasetError) as error:
        sys.exit(f"error: {error}")
    shapes = {part: {key: tuple(value.shape) for key, value in batch.items()}
              for part, batch in element.items()}
    print(f"Data ready: {len(files.labeled)} labeled, {len(files.unlabeled)} unlabeled images; "
          f"first batch {shapes}.")
    print("Training is not yet available in this version of scl-tf (the trainer is on its way).")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
