"""What CutMix alone costs a trained network: its prediction on a mixed image against the mix
of its predictions on the two images.

    python research/camvid/cutmix_disagreement.py --model=runs/camvid_1-8/supervised_s0 \
        --dataset=camvid --data_dir=PATH/TO/CamVid --crops=160x224,360x480 --boxes=32,8,1

At the first step of a run whose student and teacher both start from this model, the paper's
consistency loss L_c (eq. 4) compares the network on the CutMix image u_m with the CutMix of the
network's own predictions on u_a and u_b. A network whose prediction at a pixel depended only on
that pixel would give L_c = 0; any other gives the price of the pasted regions losing their
context, which is the pull the unlabeled term exerts before the student and teacher differ at
all. For each crop size and number of boxes (their union covers --area of the crop, as in
training), on crops of --images frames spread over the split, each pasted into by the frame half
the batch away (consecutive video frames would hide the cost), this prints and writes as JSON:
L_c, the mean box side in pixels, and the pixel accuracy against the mixed labels of the
network on the mixed image and of the mixed predictions (the target). Both networks run in
inference mode (the student's batch statistics in training are left out).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scl_tf.config import DataConfig  # noqa: E402
from scl_tf.data import datasets, pipeline  # noqa: E402
from scl_tf.data.cutmix import cutmix_masks, sample_boxes  # noqa: E402
from scl_tf.data.labels import IGNORE_LABEL  # noqa: E402
from scl_tf.eval.predictors import load_predictor  # noqa: E402
from scl_tf.losses.consistency import consistency_loss  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    """'160x224' -> (160, 224)."""
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise SystemExit(f"--crops: {text!r} is not HEIGHTxWIDTH")
    return int(height), int(width)


def random_crops(images, labels, size: tuple[int, int], seed: int):
    """One random window of each frame and its label, at the same place in both.

    Args:
      images: float32 [H_i, W_i, 3] frames, each at least `size`.
      labels: int32 [H_i, W_i] train ids.
      size: (height, width) of the crops.

    Returns:
      float32 [B, height, width, 3] and int32 [B, height, width].
    """
    height, width = size
    rng = np.random.default_rng(seed)
    windows = []
    for image in images:
        top = rng.integers(0, image.shape[0] - height + 1)
        left = rng.integers(0, image.shape[1] - width + 1)
        windows.append((slice(top, top + height), slice(left, left + width)))
    return (
        np.stack([image[w] for image, w in zip(images, windows)]).astype(np.float32),
        np.stack([label[w] for label, w in zip(labels, windows)]),
    )


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of the scored pixels of labels [B, H, W] where argmax of [B, H, W, C] is right."""
    scored = labels != IGNORE_LABEL
    return float((probabilities.argmax(-1) == labels)[scored].mean())


def disagreement(
    predictor, images: np.ndarray, labels: np.ndarray, num_boxes: int, area: float, seed: int
) -> dict:
    """L_c and accuracies of CutMix on B pairs (image i, image i + B // 2) of a batch of crops.

    Args:
      predictor: float RGB [B, H, W, 3] in [0, 255] -> probabilities [B, H, W, C].
      images: float32 [B, H, W, 3], B >= 2.
      labels: int32 [B, H, W] train ids, IGNORE_LABEL where not scored.
      num_boxes: N boxes pasted from image i + B // 2 onto image i.
      area: expected share of the crop under the union of the boxes.
      seed: seeds the boxes.

    Returns:
      {"l_c", "accuracy_mixed_image", "accuracy_mixed_predictions", "mean_box_side"}.
    """
    count, height, width = images.shape[:3]
    partner = np.roll(np.arange(count), -(count // 2))
    boxes = tf.stack(
        [sample_boxes(tf.constant([seed, i]), height, width, num_boxes, area) for i in range(count)]
    )
    mix = cutmix_masks(boxes, height, width, num_scl_boxes=0)[0].numpy()
    probabilities = np.asarray(predictor(images))
    target = mix * probabilities[partner] + (1.0 - mix) * probabilities
    mixed = np.asarray(predictor(mix * images[partner] + (1.0 - mix) * images))
    mixed_labels = np.where(mix[..., 0] > 0, labels[partner], labels)
    sides = np.sqrt(np.prod((boxes[..., 2:] - boxes[..., :2]).numpy(), axis=-1))
    return {
        "l_c": float(consistency_loss(mixed, target)),
        "accuracy_mixed_image": accuracy(mixed, mixed_labels),
        "accuracy_mixed_predictions": accuracy(target, mixed_labels),
        "mean_box_side": float(sides.mean()),
    }


def load_frames(dataset: str, data_dir: str, split: str, count: int):
    """`count` frames evenly spaced over a split: float32 images and int32 train-id labels."""
    config = DataConfig(dataset, data_dir)
    samples = datasets.find_pairs(config, split)
    samples = [
        samples[i] for i in np.unique(np.linspace(0, len(samples) - 1, count).round().astype(int))
    ]
    frames = list(pipeline.eval_dataset(samples, datasets.label_spec(config)))
    return (
        [frame["image"][0].numpy() for frame in frames],
        [frame["label"][0].numpy() for frame in frames],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", required=True, help="A model dir of scl_tf.train, .keras, SavedModel or .onnx."
    )
    parser.add_argument("--dataset", choices=("camvid", "cityscapes"), default="camvid")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=16, help="Frames used, one pair each.")
    parser.add_argument("--crops", default="160x224,360x480", help="Crop sizes HEIGHTxWIDTH.")
    parser.add_argument("--boxes", default="32,8,1", help="Numbers of CutMix boxes N.")
    parser.add_argument("--area", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="research/camvid/results/cutmix_disagreement.json")
    args = parser.parse_args()
    if args.images < 2:
        raise SystemExit(f"--images: need at least 2 frames to pair, got {args.images}")
    predictor = load_predictor(args.model)
    images, labels = load_frames(args.dataset, args.data_dir, args.split, args.images)
    rows = []
    for crop in [parse_size(text) for text in args.crops.split(",")]:
        if any(image.shape[0] < crop[0] or image.shape[1] < crop[1] for image in images):
            raise SystemExit(
                f"--crops: {crop[0]}x{crop[1]} is larger than a frame of "
                f"{args.data_dir} ({args.split})"
            )
        batch_images, batch_labels = random_crops(images, labels, crop, args.seed)
        for num_boxes in [int(text) for text in args.boxes.split(",")]:
            row = {
                "crop": list(crop),
                "boxes": num_boxes,
                **disagreement(
                    predictor, batch_images, batch_labels, num_boxes, args.area, args.seed
                ),
            }
            rows.append(row)
            print(
                f"crop {crop[0]}x{crop[1]}, {num_boxes:2d} boxes (mean side "
                f"{row['mean_box_side']:5.1f} px): L_c {row['l_c']:.4f}, accuracy on the "
                f"mixed image {100 * row['accuracy_mixed_image']:.1f}%, of the mixed "
                f"predictions {100 * row['accuracy_mixed_predictions']:.1f}%",
                flush=True,
            )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as out:
        json.dump(
            {
                "model": args.model,
                "data_dir": args.data_dir,
                "split": args.split,
                "pairs": len(images),
                "area": args.area,
                "rows": rows,
            },
            out,
            indent=1,
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
