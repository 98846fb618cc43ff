"""How good the teacher's unlabeled targets are, measured with the labels the frames do have.

    python research/camvid/target_quality.py --run=runs/camvid_1-8_recipe/warm_paper_s0 \
        [--frames=64] [--threshold=0.97] [--output=PATH.json]

CamVid's unlabeled frames of a study (the train frames outside the run's labeled list) have
labels; training never reads them. This reads them to measure only: for the EMA teacher of each
checkpoint the run kept (and, for a warm start, of the model it started from: step 0), the
CutMixed targets of fixed pairs of those frames are scored against the CutMix of the two frames'
labels: pixel accuracy, per-class IoU and mIoU of the target's argmax, the share of target
pixels whose top probability reaches --threshold (the confidence gate's share) and the accuracy
of those pixels. Pairs are frames (2k, 2k + 1) of --frames unlabeled frames spread evenly over
the sorted set (every sequence), whole 360x480 frames at scale 1, mixed by boxes drawn with the
run's own N and area from a fixed seed: the same pixels for every checkpoint and run. Mixing
changes which frame a target pixel comes from, not the teacher's prediction there (the teacher
sees u_a and u_b whole).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import tensorflow as tf

from scl_tf import runs
from scl_tf.config import DataConfig, ModelConfig
from scl_tf.data import datasets, decode
from scl_tf.data.cutmix import cutmix_masks, paste, sample_boxes
from scl_tf.data.labels import IGNORE_LABEL
from scl_tf.eval import metrics

BOX_SEED = 2026  # the boxes' seed: the same pairs and boxes for every checkpoint and run


def unlabeled_samples(run_dir: str, record: dict, count: int) -> list[datasets.Sample]:
    """`count` train samples that the run did not use as labeled, spread evenly over them in
    sorted order (CamVid's sorted names run sequence by sequence)."""
    config = DataConfig(**{**record["data"], "labeled_list": None})
    root = config.data_dir
    with open(os.path.join(run_dir, "labeled_list.txt")) as source:
        labeled = {line.strip() for line in source if line.strip()}
    train = sorted(datasets.find_pairs(config, "train"), key=lambda sample: sample.image)
    rest = [s for s in train if os.path.relpath(s.image, root) not in labeled]
    picks = np.linspace(0, len(rest) - 1, min(count, len(rest))).round().astype(int)
    return [rest[index] for index in picks]


def load_frames(samples, spec) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [N, H, W, 3] in [0, 255], train ids int32 [N, H, W]), read as training
    reads them."""
    images = np.stack([decode.load_image(s.image).astype(np.float32) for s in samples])
    labels = np.stack(
        [
            decode.train_ids_of(decode.load_label_values(s.label), spec.value_to_train_id, s.label)
            for s in samples
        ]
    )
    return images, labels


def mixed_pairs(images, labels, num_boxes: int, area: float):
    """CutMix of frames (2k, 2k + 1): (mix float32 [P, H, W, 1], pasted label ids [P, H, W])."""
    height, width = images.shape[1:3]
    pairs = len(images) // 2
    boxes = tf.stack(
        [
            sample_boxes(tf.constant([BOX_SEED, k]), height, width, num_boxes, area)
            for k in range(pairs)
        ]
    )
    mix, _ = cutmix_masks(boxes, height, width, 0)
    label_mix = paste(mix, labels[0::2, ..., None], labels[1::2, ..., None])
    return mix, tf.cast(label_mix[..., 0], tf.int32)


def teacher_probabilities(model, images, batch: int = 4) -> np.ndarray:
    """float32 [N, H, W, C] softmax of `model` on `images`, `batch` frames at a time."""
    return np.concatenate(
        [
            tf.nn.softmax(model(images[i : i + batch], training=False)).numpy()
            for i in range(0, len(images), batch)
        ]
    )


def score_targets(probs, mix, mixed_labels, num_classes: int, threshold: float) -> dict:
    """Scores of the CutMixed targets of one teacher (see the module docstring)."""
    target = paste(mix, probs[0::2], probs[1::2])
    prediction = tf.argmax(target, axis=-1, output_type=tf.int32)
    confusion = metrics.confusion_counts(mixed_labels, prediction, num_classes, IGNORE_LABEL)
    scored = mixed_labels.numpy() != IGNORE_LABEL
    confident = tf.reduce_max(target, axis=-1).numpy() >= threshold
    correct = prediction.numpy() == mixed_labels.numpy()
    kept = confident & scored
    return {
        "pixel_accuracy": metrics.pixel_accuracy(np.asarray(confusion)),
        "miou": metrics.mean_iou(np.asarray(confusion)),
        "class_iou": [float(v) for v in metrics.class_iou(np.asarray(confusion))],
        "confident_share": float(confident.mean()),
        "confident_accuracy": float(correct[kept].mean()) if kept.any() else float("nan"),
        "confident_share_of_class": [
            float(confident[scored & (mixed_labels.numpy() == c)].mean())
            if (scored & (mixed_labels.numpy() == c)).any()
            else float("nan")
            for c in range(num_classes)
        ],
    }


def teachers(run_dir: str, record: dict, info: runs.RunInfo, warm_source: str | None):
    """(step, EMA teacher) at the warm start's source (step 0) and at each kept checkpoint."""
    student, teacher = runs.build_networks(
        ModelConfig(**{**record["model"], "weights": None}), info.num_classes
    )
    if warm_source:
        yield 0, runs.load_keras(warm_source)
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, runs.LATEST_FOLDER))
    for path in state.all_model_checkpoint_paths if state else []:
        checkpoint = tf.train.Checkpoint(student=student, teacher=teacher)
        checkpoint.restore(path).expect_partial()
        yield int(path.rsplit("-", 1)[1]), teacher


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="A model dir of scl_tf.train (CamVid).")
    parser.add_argument("--frames", type=int, default=64, help="Unlabeled frames (pairs x 2).")
    parser.add_argument("--threshold", type=float, default=0.97, help="Confidence threshold.")
    parser.add_argument("--output", help="JSON to write; default RUN/target_quality.json.")
    parser.add_argument(
        "--warm_source",
        help="What the run warm-started from; default its --weights (a relative one is read "
        "from where the run was started).",
    )
    args = parser.parse_args()
    try:
        record, info = runs.read_record(args.run), runs.read_info(args.run)
    except runs.ModelError as error:
        sys.exit(f"error: --run: {error}")
    spec = datasets.label_spec(DataConfig(**{**record["data"], "labeled_list": None}))
    images, labels = load_frames(unlabeled_samples(args.run, record, args.frames), spec)
    pipeline = record["pipeline"]
    mix, mixed_labels = mixed_pairs(
        images, labels, pipeline["cutmix_boxes"], pipeline["cutmix_area"]
    )
    result = {
        "run": args.run,
        "frames": len(images),
        "threshold": args.threshold,
        "class_names": list(info.class_names),
        "steps": {},
    }
    warm_source = args.warm_source or record["model"]["weights"]
    if warm_source == "imagenet":
        warm_source = None
    if warm_source and not os.path.exists(warm_source):
        sys.exit(f"error: --warm_source: the run started from {warm_source}, not found from here")
    for step, teacher in teachers(args.run, record, info, warm_source):
        probs = teacher_probabilities(teacher, images)
        scores = score_targets(probs, mix, mixed_labels, info.num_classes, args.threshold)
        result["steps"][str(step)] = scores
        print(
            f"step {step:5d}: pixel accuracy {100 * scores['pixel_accuracy']:.2f}%, mIoU "
            f"{100 * scores['miou']:.2f}%, confident {100 * scores['confident_share']:.1f}% "
            f"(accuracy {100 * scores['confident_accuracy']:.2f}%)",
            flush=True,
        )
    output = args.output or os.path.join(args.run, "target_quality.json")
    with open(output, "w") as out:
        json.dump(result, out, indent=1)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
