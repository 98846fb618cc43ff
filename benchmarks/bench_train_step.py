"""Train-step time: supervised, semi-supervised, and the semi-supervised step's ideal.

    python benchmarks/bench_train_step.py       # writes benchmarks/bench_train_step.json
    python benchmarks/bench_train_step.py --precisions=none,bfloat16 --parts=false \
        --backbones=efficientnet_lite0 --crop=256x320 --batch=4 --output_stride=16 \
        --classes=11 --out=benchmarks/bench_train_step_bf16.json   # the CamVid study's step

For each backbone (DeepLabV3+, output stride 8, C = 19, random init) on --crop crops with 1
labeled + 1 unlabeled image (the paper's per-GPU batch), measured in one process:
- steps: `SCLModel.train_step` in a `tf.function`, as `scl_tf.train` runs it: supervised
  (lambda_c = lambda_sc = 0: no teacher, no unlabeled work), semi-supervised with the structured
  loss exact and pairs (Npair 9000), and (unless --no-jit) pairs with whole-step XLA;
- parts, each alone: the student forward + backward on the step's batch of 2 (x and u_m, with
  the optimizer update), the teacher forward on u_a and u_b, the CutMix masks from the boxes,
  the consistency loss and the structured loss (forward + backward, the latter XLA-compiled as in
  the step) and the EMA update.
The ideal semi-supervised step is student forward + backward + teacher forward, timed as one
graph (`networks_only`: TensorFlow runs the two networks' independent ops side by side, as it
does in the step) and also as the sum of the two timed alone; SSL/ideal is what the unlabeled
branch's own work (masks, mixing, losses, EMA) and the glue cost on top.

With several --precisions (the networks built under each Keras dtype policy in the same
process), the steps run in each, and `over_first_precision` gives each step's time as a ratio to
the same step in the first precision (bfloat16 against float32: AMX units on this CPU).

Every round times each case once, alternating, so that the load of a shared machine affects all
alike; ratios are medians of per-round ratios.
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scl_tf.config import MIXED_POLICIES, ModelConfig, parse_size  # noqa: E402
from scl_tf.data.cutmix import cutmix_masks, sample_boxes  # noqa: E402
from scl_tf.losses import consistency_loss  # noqa: E402
from scl_tf.runs import build_networks  # noqa: E402
from scl_tf.training.optim import build_optimizer  # noqa: E402
from scl_tf.training.scl_model import SCLModel, StepConfig, ema_update  # noqa: E402

NUM_CLASSES = 19
NUM_BOXES, SCL_BOXES, NUM_PAIRS = 32, 16, 9000
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_batch(crop: tuple[int, int], batch: int = 1, classes: int = NUM_CLASSES, seed=0) -> dict:
    """One replica's pipeline element: `batch` labeled images and unlabeled pairs of `crop`."""
    rng = np.random.default_rng(seed)
    height, width = crop

    def image():
        return tf.constant(rng.uniform(0, 255, (batch, height, width, 3)), tf.float32)

    label = tf.constant(rng.integers(0, classes, (batch, height, width)), tf.int32)
    boxes = tf.stack(
        [sample_boxes(tf.constant([seed, i]), height, width, NUM_BOXES) for i in range(batch)]
    )
    return {
        "labeled": {"image": image(), "label": label},
        "unlabeled": {"u_a": image(), "u_b": image(), "boxes": boxes},
    }


def scl_model(student, teacher, **step) -> SCLModel:
    model = SCLModel(student, teacher, StepConfig(num_pairs=NUM_PAIRS, scl_boxes=SCL_BOXES, **step))
    model.compile(optimizer=build_optimizer(0.002, 10**6))
    model.optimizer.build(student.trainable_variables)
    return model


def step_cases(student, teacher, batch, jit: bool, suffix: str = "") -> dict:
    """{name + suffix: zero-argument callable} for the whole train steps."""
    variants = {
        "supervised": (dict(lambda_c=0.0, lambda_sc=0.0), False),
        "ssl_exact": (dict(scl_mode="exact"), False),
        "ssl_pairs": (dict(scl_mode="pairs"), False),
    }
    if jit:
        variants["ssl_pairs_whole_step_xla"] = (dict(scl_mode="pairs"), True)
    return {
        name + suffix: functools.partial(
            tf.function(scl_model(student, teacher, **step).train_step, jit_compile=xla), batch
        )
        for name, (step, xla) in variants.items()
    }


def part_cases(student, teacher, batch) -> dict:
    """{name: zero-argument callable} for the parts of the semi-supervised step, alone."""
    unlabeled = batch["unlabeled"]
    u_a, u_b, boxes = unlabeled["u_a"], unlabeled["u_b"], unlabeled["boxes"]
    height, width = u_a.shape[1:3]
    student_input = tf.concat([batch["labeled"]["image"], u_a], 0)
    optimizer = build_optimizer(0.002, 10**6)
    optimizer.build(student.trainable_variables)
    shape = (*u_a.shape[:3], student.output.shape[-1])
    probs = tf.nn.softmax(tf.random.normal(shape))
    target = tf.nn.softmax(tf.random.normal(shape))
    model = scl_model(student, teacher, scl_mode="pairs")
    exact = scl_model(student, teacher, scl_mode="exact")
    _, box_masks = cutmix_masks(boxes, height, width, SCL_BOXES)

    @tf.function
    def student_forward_backward():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(student(student_input, training=True))
        optimizer.apply(
            tape.gradient(loss, student.trainable_variables), student.trainable_variables
        )

    @tf.function
    def teacher_forward():
        return teacher(tf.concat([u_a, u_b], 0), training=False)

    @tf.function
    def networks_only():
        # Returned, so that the graph keeps it: a stateless call whose output nobody uses is
        # pruned from a tf.function, and the "ideal" would time the student alone.
        teacher_probs = teacher_forward()
        student_forward_backward()
        return teacher_probs

    def gradient_of(loss_fn):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                tape.watch(probs)
                loss = loss_fn(probs, target)
            return tape.gradient(loss, probs)

        return run

    return {
        "student_forward_backward": student_forward_backward,
        "teacher_forward": teacher_forward,
        "networks_only": networks_only,
        "cutmix_masks": tf.function(lambda: cutmix_masks(boxes, height, width, SCL_BOXES)),
        "consistency_loss": gradient_of(consistency_loss),
        "scl_pairs": gradient_of(lambda s, t: model.structured_loss(s, t, box_masks)),
        "scl_exact": gradient_of(lambda s, t: exact.structured_loss(s, t, box_masks)),
        "ema_update": tf.function(lambda: ema_update(teacher.weights, student.weights, 0.999)),
    }


def seconds(function) -> float:
    start = time.perf_counter()
    result = function()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
    return time.perf_counter() - start


def measure(cases: dict, rounds: int) -> dict:
    """{name: [seconds per round]}; every case warmed up (compiled) once first."""
    for function in cases.values():
        function()
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, function in cases.items():
            times[name].append(seconds(function))
    return times


def median_ratio(numerator, denominator) -> float:
    """The median over rounds of numerator / denominator (lists of seconds, one per round)."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def summarise_precisions(times: dict, suffixes: list[str]) -> dict:
    """{step + suffix: its time over the same step's in the first precision} (per round)."""
    first = suffixes[0]
    return {
        name: median_ratio(values, times[name[: len(name) - len(suffix)] + first])
        for name, values in times.items()
        for suffix in suffixes[1:]
        if name.endswith(suffix)
    }


def summarise(times: dict) -> dict:
    """Medians, SSL/ideal and the shares of the unlabeled branch's parts, per-round ratios."""
    if "networks_only" not in times:
        return {"median_s": {name: statistics.median(values) for name, values in times.items()}}
    rounds = len(next(iter(times.values())))
    parts_sum = [
        times["student_forward_backward"][r] + times["teacher_forward"][r] for r in range(rounds)
    ]
    ideal = times["networks_only"]
    summary = {
        "median_s": {name: statistics.median(values) for name, values in times.items()},
        "ideal_s": statistics.median(ideal),
        "student_plus_teacher_alone_s": statistics.median(parts_sum),
    }
    steps = [name for name in times if name.startswith(("ssl", "supervised"))]
    summary["step_over_ideal"] = {name: median_ratio(times[name], ideal) for name in steps}
    summary["ssl_pairs_over_supervised"] = median_ratio(times["ssl_pairs"], times["supervised"])
    parts = ("cutmix_masks", "consistency_loss", "scl_pairs", "scl_exact", "ema_update")
    summary["share_of_ssl_pairs_step"] = {
        name: median_ratio(times[name], times["ssl_pairs"]) for name in parts
    }
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="mobilenetv2,resnet50")
    parser.add_argument("--crop", default="512", help="HxW or N")
    parser.add_argument("--batch", type=int, default=1, help="labeled images = unlabeled pairs")
    parser.add_argument("--output_stride", type=int, default=8)
    parser.add_argument("--classes", type=int, default=NUM_CLASSES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-jit", action="store_true", help="skip the whole-step XLA case")
    parser.add_argument(
        "--precisions",
        default="none",
        help=f"comma-separated --mixed_precision values of {tuple(MIXED_POLICIES)}, side by side",
    )
    parser.add_argument(
        "--parts",
        default="true",
        choices=("true", "false"),
        help="also time the semi-supervised step's parts and its ideal (first precision)",
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "bench_train_step.json"))
    args = parser.parse_args()

    crop = parse_size("crop", args.crop)
    precisions = args.precisions.split(",")
    batch = make_batch(crop, args.batch, args.classes)
    record = {
        "command": "python benchmarks/bench_train_step.py " + " ".join(sys.argv[1:]),
        "settings": {
            "crop": crop,
            "rounds": args.rounds,
            "output_stride": args.output_stride,
            "classes": args.classes,
            "precisions": precisions,
            "whole_step_xla": not args.no_jit,
            "labeled_per_step": args.batch,
            "unlabeled_per_step": args.batch,
            "num_boxes": NUM_BOXES,
            "scl_boxes": SCL_BOXES,
            "num_pairs": NUM_PAIRS,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "tensorflow": tf.__version__,
            "load_average_start": os.getloadavg(),
        },
        "results": {},
    }
    suffixes = [""] + [f"_{precision}" for precision in precisions[1:]]
    for backbone in args.backbones.split(","):
        cases = {}
        for precision, suffix in zip(precisions, suffixes):
            # Layers take the dtype policy in force when they are built.
            keras.mixed_precision.set_dtype_policy(MIXED_POLICIES[precision])
            student, teacher = build_networks(
                ModelConfig(backbone=backbone, output_stride=args.output_stride), args.classes
            )
            cases |= step_cases(student, teacher, batch, not args.no_jit, suffix)
            if suffix == "" and args.parts == "true":
                cases |= part_cases(student, teacher, batch)
        keras.mixed_precision.set_dtype_policy("float32")
        times = measure(cases, args.rounds)
        summary = {"times_s": times, **summarise(times)}
        if len(precisions) > 1:
            summary["over_first_precision"] = summarise_precisions(times, suffixes)
        record["results"][backbone] = summary
        record["machine"]["load_average_end"] = os.getloadavg()
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2))  # after each backbone
        print(f"\n{backbone} at {crop[0]}x{crop[1]}, batch {args.batch}")
        for name, ratio in summary.get("step_over_ideal", {}).items():
            print(f"  {name:28s} {summary['median_s'][name]:7.2f} s  {ratio:5.2f}x ideal")
        for name, share in summary.get("share_of_ssl_pairs_step", {}).items():
            print(f"  {name:28s} {summary['median_s'][name]:7.3f} s  {100 * share:5.1f}% of ssl")
        for name, ratio in summary.get("over_first_precision", {}).items():
            print(f"  {name:28s} {summary['median_s'][name]:7.2f} s  {ratio:5.2f}x {precisions[0]}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
