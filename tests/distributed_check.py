"""Run in a subprocess by test_distributed.py: one train step on one device and on a
MirroredStrategy over two logical CPUs, same global batch; prints both as JSON."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

from train_helpers import random_batch, tiny_segmenter  # noqa: E402

from scl_tf.training.optim import CoupledSGD  # noqa: E402
from scl_tf.training.scl_model import SCLModel, StepConfig  # noqa: E402

STEP = StepConfig(lambda_c=20.0, lambda_sc=3.0, scl_mode="exact", scl_boxes=4, ema_decay=0.9)


def build(strategy):
    with strategy.scope():
        student = tiny_segmenter(sync=True, seed=1)
        teacher = tiny_segmenter(sync=True, seed=2)
        model = SCLModel(student, teacher, STEP)
        model.copy_student_to_teacher()
        model.compile(optimizer=CoupledSGD(l2=1e-3, learning_rate=0.05, momentum=0.9))
        model.optimizer.build(student.trainable_variables)
    return model


def run(strategy, batch):
    model = build(strategy)
    replicas = strategy.num_replicas_in_sync

    def part(context):
        index = context.replica_id_in_sync_group
        return tf.nest.map_structure(
            lambda t: t[index * t.shape[0] // replicas : (index + 1) * t.shape[0] // replicas],
            batch,
        )

    @tf.function
    def step():
        values = strategy.experimental_distribute_values_from_function(part)
        shares = strategy.run(model.train_step, args=(values,))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in shares.items()}

    logs = {k: float(v) for k, v in step().items()}
    weights = {
        "student": [w.numpy().tolist() for w in model.student.weights],
        "teacher": [w.numpy().tolist() for w in model.teacher.weights],
    }
    return {"logs": logs, "weights": weights}


def main():
    batch = random_batch(batch=2, seed=5, num_boxes=8)
    labels = batch["labeled"]["label"].numpy()
    labels[1, :8] = 255  # the replicas see different numbers of labeled pixels
    batch["labeled"]["label"] = tf.constant(labels)
    one = run(tf.distribute.get_strategy(), batch)
    two = run(tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]), batch)
    json.dump({"one_device": one, "mirrored": two}, sys.stdout)


if __name__ == "__main__":
    np.random.seed(0)
    main()
