"""The consistency loss a trained model leaves against itself: CutMix and BatchNorm's mode.

    python research/camvid/bn_consistency.py --model=runs/camvid_1-8_recipe/supervised_s0 \
        --data_dir=PATH/TO/CamVid [--batches=16] [--output=PATH.json]

Teacher and student are the same weights (the run's model.keras), so every bit of L_c here is
what no training removes: the teacher in inference mode, as in the step, against the student
1. in inference mode (moving statistics) or 2. in training mode on the step's batch [x, u]
(4 labeled crops and 4 unlabeled, BatchNormalization normalising with their own statistics, as
the step does), on u = u_a (no CutMix) or u = mix(u_a, u_b) against the mixed targets, with
N = 32 boxes (the paper's count) or the box rule's N = 4. Crops are 256x320 of whole frames at
scale 1 from fixed positions; labeled crops come from the run's labeled frames, unlabeled ones
from the rest of train. L_c is eq. 4 summed over classes (the paper's reading); the mean reading
is it / C.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import tensorflow as tf

from scl_tf import runs
from scl_tf.config import DataConfig
from scl_tf.data import datasets, decode
from scl_tf.data.cutmix import cutmix_masks, paste, sample_boxes
from scl_tf.losses import consistency_loss

CROP = (256, 320)
BATCH = 4
BOX_COUNTS = (32, 4)


def crops(paths: list[str], count: int, seed: int) -> np.ndarray:
    """float32 [count, 256, 320, 3]: fixed random crops of the images, cycling through them."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(count):
        image = decode.load_image(paths[index % len(paths)]).astype(np.float32)
        y = rng.integers(0, image.shape[0] - CROP[0] + 1)
        x = rng.integers(0, image.shape[1] - CROP[1] + 1)
        out.append(image[y : y + CROP[0], x : x + CROP[1]])
    return np.stack(out)


def student_probabilities(student, labeled, unlabeled, training: bool):
    """Softmax of the student on u, run on the step's batch [x, u] (BN sees both)."""
    logits = student(tf.concat([labeled, unlabeled], 0), training=training)
    return tf.nn.softmax(logits[len(labeled) :])


def cells(teacher, student, labeled, u_a, u_b, seed: int) -> dict[str, float]:
    """L_c of one batch in each cell: {BN mode}_{no_cutmix | cutmix_N}."""
    target_a = tf.nn.softmax(teacher(u_a, training=False))
    target_b = tf.nn.softmax(teacher(u_b, training=False))
    inputs = {"no_cutmix": (u_a, target_a)}
    for count in BOX_COUNTS:
        boxes = tf.stack(
            [sample_boxes(tf.constant([seed, i]), *CROP, count) for i in range(len(u_a))]
        )
        mix, _ = cutmix_masks(boxes, *CROP, 0)
        inputs[f"cutmix_{count}"] = (paste(mix, u_a, u_b), paste(mix, target_a, target_b))
    losses = {}
    weights = student.get_weights()
    for mode, training in (("inference_bn", False), ("train_bn", True)):
        for name, (image, target) in inputs.items():
            probs = student_probabilities(student, labeled, image, training)
            losses[f"{mode}_{name}"] = float(consistency_loss(probs, target))
            # A training-mode call moves the moving statistics: every cell starts from the run's.
            student.set_weights(weights)
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="A model dir of scl_tf.train.")
    parser.add_argument("--data_dir", required=True, help="CamVid in the SegNet layout.")
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--output", help="JSON; default MODEL/bn_consistency.json.")
    args = parser.parse_args()
    config = DataConfig("camvid", args.data_dir)
    with open(os.path.join(args.model, "labeled_list.txt")) as source:
        labeled_names = {line.strip() for line in source if line.strip()}
    train = sorted(sample.image for sample in datasets.find_pairs(config, "train"))
    labeled = [path for path in train if os.path.relpath(path, args.data_dir) in labeled_names]
    unlabeled = [
        path for path in train if os.path.relpath(path, args.data_dir) not in labeled_names
    ]
    teacher = runs.load_keras(args.model)
    student = runs.load_keras(args.model)
    # A run's model.keras is saved from the frozen teacher; frozen BatchNormalization layers
    # normalise with moving statistics even when called in training mode (Keras 3).
    student.trainable = True
    count = args.batches * BATCH
    x, u_a, u_b = (
        crops(labeled, count, 0),
        crops(unlabeled, count, 1),
        crops(unlabeled[::-1], count, 2),
    )
    per_batch = []
    for b in range(args.batches):
        part = slice(b * BATCH, (b + 1) * BATCH)
        per_batch.append(cells(teacher, student, x[part], u_a[part], u_b[part], seed=b))
        print(f"batch {b + 1}/{args.batches}", flush=True)
    summary = {name: float(np.mean([batch[name] for batch in per_batch])) for name in per_batch[0]}
    record = {"model": args.model, "batches": args.batches, "crop": CROP, "loss_c": summary}
    for name, value in summary.items():
        print(f"  {name:28s} L_c {value:.4f}")
    output = args.output or os.path.join(args.model, "bn_consistency.json")
    with open(output, "w") as out:
        json.dump(record, out, indent=1)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
