"""Run in subprocesses by test_training_runs.py: a short real training run on camvid_mini with
the strategy named on the command line; prints the final logs, the first step's scalars as
written to TensorBoard (chief only) and a digest of the student weights as JSON.
Usage: run_check.py STRATEGY MODEL_DIR PER_REPLICA_BATCH"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from scl_tf.config import Config, DataConfig, ModelConfig, PipelineConfig, TrainConfig  # noqa: E402
from scl_tf.training.distribute import select_strategy  # noqa: E402
from scl_tf.training.loop import train  # noqa: E402
from scl_tf.training.summaries import read_scalars  # noqa: E402

MINI = os.path.join(os.path.dirname(__file__), "..", "data", "camvid_mini")


def tiny_config(model_dir, per_replica_batch):
    return Config(
        data=DataConfig("camvid", MINI, labeled_count=4),
        pipeline=PipelineConfig(
            crop_size=(64, 64),
            labeled_batch_size=per_replica_batch,
            unlabeled_batch_size=per_replica_batch,
            cutmix_boxes=8,
            scl_boxes=4,
        ),
        model=ModelConfig(backbone="mobilenetv2", output_stride=16),
        train=TrainConfig(
            steps=2,
            scl_mode="exact",
            checkpoint_every=2,
            eval_every=2,
            eval_images=1,
            image_every=0,
            learning_rate=0.01,
            log_every=1,
        ),
        model_dir=model_dir,
    )


def scalars_at(model_dir, step):
    """{tag: value} of the TensorBoard scalars written at `step` ({} without logs)."""
    return {
        tag: value
        for tag, points in read_scalars(os.path.join(model_dir, "logs")).items()
        for at, value in points
        if at == step
    }


def main():
    name, model_dir, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    strategy = select_strategy(name)
    result = train(tiny_config(model_dir, batch), strategy=strategy, verbose=False)
    digest = float(sum(np.abs(w).sum() for w in result.model.student.get_weights()))
    json.dump(
        {
            "logs": result.last_logs,
            "first_logs": scalars_at(model_dir, 1),
            "digest": digest,
            "step": result.step,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
