"""The paper's ablation (Tables 2 and 3) at small scale: CamVid with 1/8 of the labels.

    python research/camvid/run_study.py --data_dir=PATH/TO/CamVid [--study=imagenet|recipe|random]

Trains and evaluates each run of a study in turn, one subprocess of `scl_tf.train` and of
`scl_tf.evaluate` each, from the study's flag file. Two studies (STUDIES):

imagenet (configs/camvid_semi_1-8_imagenet.flags: EfficientNet-Lite0 from ImageNet, the paper's
unlabeled weights lambda_c 20 and lambda_sc 3 constant, EMA decay scaled to the run's length):
  supervised        labeled cross entropy only (lambda_c = lambda_sc = 0)
  consistency       + lambda_c * L_c
  scl_exact         + lambda_c * L_c + lambda_sc * L_sc, every pair (the full method)
  scl_pairs         the same with the paper's sampler, Drop(., Npair = 9000)
  teacher_student   the full method with the student as its own teacher (no EMA teacher);
                    with scl_exact scored with EMA and student weights: Table 3's four cells
  ema_0999          the full method with the paper's literal EMA decay 0.999
  supervised_random supervised from random weights (what ImageNet weights are worth)
  scl_exact_rampup, scl_exact_light
                    diagnostics, queued only if the full method falls below supervised (it
                    did): its unlabeled weights ramped up over the first 30% of the steps,
                    and the same with the weights / 10
  consistency_light scl_exact_light without the structured term (Table 2's middle row for it)

recipe (issue 26: the same flag file in bfloat16; RECIPE_ARMS, RECIPE_RUNS): supervised for 750
  and 1500 steps, 750 semi-supervised steps from the 750-step supervised run with the paper's
  weights, eq. 4 read as a mean over classes, the box rule, the batch or pixel confidence gate;
  the better gate from ImageNet; then the best arm's lambda_sc 0 and teacher = student twins and
  more seeds. Runs named "{gate}_s0" or "{best}_s1" are resolved by the study's rules
  (better_gate, best_arm) from the seed-0 runs finished when they are reached.

random (configs/camvid_semi_1-8.flags: MobileNetV2 from random weights; issue 8, finished and
kept to reproduce RESULTS.md's earlier studies): its arms are RANDOM_ARMS, its order RANDOM_RUNS.

Every run is resumable: an interrupted study started again continues each run from its last
checkpoint and skips what is done. Each run is scored on the val split with the EMA weights and
with the student's. Writes --results.json (everything), --results.md (the tables: per arm,
the study's comparisons paired by seed with any target's verdict, per class) and
--results.png (val mIoU per arm and the training curves) from every finished run under
--runs_dir; `--runs` picks which to train, extra `scl_tf.train` flags follow `--`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Study:
    """A study: its flag file, arms {name: (label, flags)}, run order and where it writes.

    `warm_start` maps an arm to the arm whose finished run (same seed) it starts from.
    """

    config: str
    arms: dict[str, tuple[str, list[str]]]
    runs: tuple[str, ...]
    runs_dir: str
    results: str
    warm_start: dict[str, str] = dataclasses.field(default_factory=dict)
    flags: tuple[str, ...] = ()  # scl_tf.train flags of every arm (before the arm's own)
    choices: dict[str, Callable[[dict[str, float]], str]] = dataclasses.field(
        default_factory=dict
    )  # {placeholder: rule}: runs named "{placeholder}_sN" are resolved when reached
    comparisons: tuple[Comparison, ...] = ()  # fixed with the arms, reported seed by seed


@dataclasses.dataclass(frozen=True)
class Comparison:
    """An arm against a baseline, seed by seed (either may be a "{choice}..." template).

    `target`: the gain in mIoU points the arm must reach on the mean of TARGET_SEEDS seeds, each
    seed ahead; None for a comparison that is reported whatever its sign.
    """

    label: str
    arm: str
    baseline: str
    target: float | None = None


TARGET_SEEDS = 3
SUPERVISED = ["--lambda_c=0", "--lambda_sc=0"]
# The ImageNet study's unlabeled-weight diagnostics (after the paper's arms, and only if those
# hurt): the Mean Teacher ramp-up over 30% of the 750 steps, and that with the weights / 10.
RAMPUP = ["--rampup_steps=225"]
IMAGENET_ARMS = {
    "supervised": ("Supervised only", SUPERVISED),
    "consistency": ("+ consistency (lambda_c 20)", ["--lambda_sc=0"]),
    "scl_exact": ("+ consistency + SCL exact (full method: lambda_c 20, lambda_sc 3)", []),
    "scl_pairs": (
        "full method, SCL pairs (Npair 9000) instead of exact",
        ["--scl_mode=pairs", "--num_pairs=9000"],
    ),
    "teacher_student": ("full method, teacher = student (no EMA teacher)", ["--teacher=student"]),
    "ema_0999": ("full method, the paper's literal EMA decay 0.999", ["--ema_decay=0.999"]),
    "supervised_random": ("Supervised only, from random weights", [*SUPERVISED, "--weights="]),
    "scl_exact_rampup": ("full method, unlabeled weights ramped up over 225 steps", RAMPUP),
    "scl_exact_light": (
        "full method, lambda_c 2 / lambda_sc 0.3, ramped up over 225 steps",
        [*RAMPUP, "--lambda_c=2", "--lambda_sc=0.3"],
    ),
    # Table 2's consistency row for the light setting, should it become the default.
    "consistency_light": (
        "consistency alone, lambda_c 2, ramped up over 225 steps",
        [*RAMPUP, "--lambda_c=2", "--lambda_sc=0"],
    ),
}
# The order after seed 0, where the full method fell below supervised (34.7% / 36.5% against
# 46.3% / 52.0% at steps 250 / 500): the diagnostics first, then three seeds of the baseline, of
# the setting recommended from them (the light one unless the ramp-up alone does better) and of
# the paper's, then Table 2's light consistency row and the other ablations, one seed each.
# (Before, the paper's arms came first and no diagnostic was queued: git history.)
IMAGENET_RUNS = (
    "supervised_s0",
    "scl_exact_s0",
    "scl_exact_light_s0",
    "scl_exact_rampup_s0",
    "supervised_random_s0",
    "supervised_s1",
    "supervised_s2",
    "scl_exact_light_s1",
    "scl_exact_light_s2",
    "consistency_light_s0",
    "consistency_s0",
    "scl_exact_s1",
    "scl_exact_s2",
    "teacher_student_s0",
    "ema_0999_s0",
    "scl_pairs_s0",
)

# The random-weights study (issue 8): the paper's unlabeled weights (20, 3) divided by 10 and
# ramped up over 300 steps: the only setting of the full method that does not fall below the
# baseline at that scale (RESULTS.md).
LIGHT_WEIGHTS = ["--rampup_steps=300", "--lambda_c=2", "--lambda_sc=0.3"]
# A second, shorter schedule at half the learning rate for runs that start from a trained model.
FINETUNE = ["--steps=500", "--learning_rate=0.005"]
RANDOM_ARMS = {
    "supervised": ("Supervised only", SUPERVISED),
    "consistency": ("+ consistency (lambda_c)", ["--lambda_sc=0"]),
    "scl_exact": ("+ consistency + SCL exact (full method)", ["--scl_mode=exact"]),
    # Diagnostic, not in the paper: from random weights the teacher's early targets are noise.
    "scl_exact_rampup": (
        "full method, unlabeled weights ramped up over 300 steps",
        ["--scl_mode=exact", "--rampup_steps=300"],
    ),
    "scl_exact_light": (
        "full method, lambda_c 2 / lambda_sc 0.3, ramped up over 300 steps",
        ["--scl_mode=exact", *LIGHT_WEIGHTS],
    ),
    # The remaining ablations vary the light full method, the one that trains.
    "scl_pairs": (
        "light full method, SCL pairs (Npair 9000) instead of exact",
        ["--scl_mode=pairs", "--num_pairs=9000", *LIGHT_WEIGHTS],
    ),
    "teacher_student": (
        "light full method, teacher = student (no EMA teacher)",
        ["--scl_mode=exact", "--teacher=student", *LIGHT_WEIGHTS],
    ),
    # Table 2's consistency-alone row for the teacher = student variant.
    "teacher_student_consistency": (
        "light consistency alone (lambda_sc 0), teacher = student",
        ["--teacher=student", *LIGHT_WEIGHTS, "--lambda_sc=0"],
    ),
    # Diagnostic: between the 0.99 EMA teacher and teacher = student, a teacher ~10 steps behind.
    "ema_fast": (
        "light full method, EMA decay 0.9 instead of 0.99",
        ["--scl_mode=exact", "--ema_decay=0.9", *LIGHT_WEIGHTS],
    ),
    # Table 2's consistency-alone row for the 0.9 EMA teacher.
    "ema_fast_consistency": (
        "light consistency alone (lambda_sc 0), EMA decay 0.9",
        ["--ema_decay=0.9", *LIGHT_WEIGHTS, "--lambda_sc=0"],
    ),
    # Diagnostic: the paper starts from a network whose predictions are already good; here the
    # finished supervised run of the same seed plays that part (warm_start).
    "finetune_supervised": (
        "supervised, 500 more steps from the supervised run",
        [*SUPERVISED, *FINETUNE],
    ),
    "finetune_scl": (
        "full method (paper's lambdas), 500 steps from the supervised run",
        ["--scl_mode=exact", *FINETUNE],
    ),
}
# One seed of every arm first, then further seeds of the baseline, the full method and the
# variants ahead of the baseline at the time (RESULTS.md, the random-weights study).
RANDOM_RUNS = (
    "supervised_s0",
    "scl_exact_s0",
    "consistency_s0",
    "scl_exact_rampup_s0",
    "scl_exact_light_s0",
    "supervised_s1",
    "scl_exact_light_s1",
    "finetune_supervised_s0",
    "finetune_scl_s0",
    "scl_pairs_s0",
    "teacher_student_s0",
    "teacher_student_s1",
    "teacher_student_consistency_s0",
    "scl_exact_s1",
    "supervised_s2",
    "ema_fast_s0",
    "ema_fast_s1",
    "ema_fast_consistency_s0",
    "teacher_student_s2",
    "teacher_student_consistency_s1",
    "scl_exact_light_s2",
)
# The recipe study (issue 26), fixed before its first run. Every arm runs the ImageNet study's
# flag file in bfloat16 (RECIPE_FLAGS); the warm arms ("warm_*") start from the final weights of
# S750 (the arm "supervised") of the same seed and train 750 semi-supervised steps more, so their
# baseline is S1500, the supervised run with the same labeled steps; the cold arm's is S750.
MEAN_READING = ["--consistency_class_reduction=mean"]  # eq. 4 averaged over classes
# The box rule (configs/camvid_semi_1-8_imagenet.flags says why 8 cells): N from the crop and the
# output stride, Nbox = N / 2 as the paper's 16 of 32.
BOX_RULE = ["--cutmix_min_box_cells=8"]
BATCH_GATE = ["--confidence_threshold=0.97", "--confidence_form=batch"]  # French et al.
PIXEL_GATE = ["--confidence_threshold=0.97", "--confidence_form=pixel"]  # FixMatch-style
RECIPE_FLAGS = ("--mixed_precision=bfloat16",)
# The EMA horizon rule of the flag file for 1500 steps: 1000 / 65,078 * 1500 = 23.05 steps.
S1500 = ["--steps=1500", "--ema_decay=0.957"]
RECIPE_BASE_ARMS = {
    "supervised": ("S750: supervised, 750 steps from ImageNet", SUPERVISED),
    "supervised_1500": ("S1500: supervised, 1500 steps from ImageNet", [*SUPERVISED, *S1500]),
    # The precision check: S750's float32 twin on this machine (the ImageNet study's, 54.19%,
    # ran on another one); bfloat16 is kept if S750 holds within 1 point of it.
    "supervised_fp32": (
        "S750 in float32 (the precision check)",
        [*SUPERVISED, "--mixed_precision=none"],
    ),
    "warm_paper": ("W-paper: from S750, the paper's weights (lambda_c 20 summed, lambda_sc 3)", []),
    "warm_mean": ("W-mean: W-paper with eq. 4 averaged over classes", MEAN_READING),
    "warm_mean_boxes": ("W-mean-boxes: W-mean with the box rule", [*MEAN_READING, *BOX_RULE]),
    "warm_mean_boxes_gate": (
        "W-mean-boxes-gate: W-mean-boxes, batch confidence gate 0.97",
        [*MEAN_READING, *BOX_RULE, *BATCH_GATE],
    ),
    "warm_mean_boxes_pixel": (
        "W-mean-boxes-pixel: W-mean-boxes, pixel confidence gate 0.97",
        [*MEAN_READING, *BOX_RULE, *PIXEL_GATE],
    ),
    "cold_mean_boxes_gate": (
        "C-mean-boxes-gate: W-mean-boxes-gate from ImageNet, 750 steps",
        [*MEAN_READING, *BOX_RULE, *BATCH_GATE],
    ),
    "cold_mean_boxes_pixel": (
        "C-mean-boxes-pixel: W-mean-boxes-pixel from ImageNet, 750 steps",
        [*MEAN_READING, *BOX_RULE, *PIXEL_GATE],
    ),
}
RECIPE_SEMI_ARMS = tuple(arm for arm in RECIPE_BASE_ARMS if not arm.startswith("supervised"))
# Table 2's middle row and Table 3 of every semi-supervised arm (run for the best one only).
RECIPE_ARMS = {
    **RECIPE_BASE_ARMS,
    **{
        f"{arm}_consistency": (f"{label}; lambda_sc 0", [*flags, "--lambda_sc=0"])
        for arm, (label, flags) in RECIPE_BASE_ARMS.items()
        if arm in RECIPE_SEMI_ARMS
    },
    **{
        f"{arm}_teacher_student": (f"{label}; teacher = student", [*flags, "--teacher=student"])
        for arm, (label, flags) in RECIPE_BASE_ARMS.items()
        if arm in RECIPE_SEMI_ARMS
    },
}


def recipe_baseline(arm: str) -> str:
    """The supervised arm with the same labeled steps: S1500 for warm arms, S750 otherwise."""
    return "supervised_1500" if arm.startswith("warm_") else "supervised"


def better_gate(scores: dict[str, float]) -> str:
    """The cold arm to run: the gate form whose warm arm scored higher on seed 0 (EMA)."""
    batch, pixel = scores["warm_mean_boxes_gate"], scores["warm_mean_boxes_pixel"]
    return "cold_mean_boxes_gate" if batch >= pixel else "cold_mean_boxes_pixel"


def best_arm(scores: dict[str, float]) -> str:
    """The semi-supervised arm furthest ahead of its baseline on seed 0 (EMA val mIoU).

    Raises:
      KeyError: an arm the rule needs that has no score (a baseline, or the first semi arm).
    """
    ran = [arm for arm in RECIPE_SEMI_ARMS if arm in scores]
    if not ran:
        raise KeyError(RECIPE_SEMI_ARMS[0])  # the rule needs one, the first in line
    return max(ran, key=lambda arm: scores[arm] - scores[recipe_baseline(arm)])


# Seed 0 of every arm in the order (the cold arm after both gated warm arms, the best
# arm's twins after every arm; the float32 twin of S750, added after S750 scored 1.9 points
# above the ImageNet study's float32 run, as soon as the queue allowed), then seeds 1 and 2 of
# both baselines, the best arm and its lambda_sc 0 twin. "{gate}" and "{best}" are resolved by
# better_gate and best_arm when reached.
RECIPE_RUNS = (
    "supervised_s0",
    "supervised_1500_s0",
    "warm_paper_s0",
    "supervised_fp32_s0",
    "warm_mean_s0",
    "warm_mean_boxes_s0",
    "warm_mean_boxes_gate_s0",
    "warm_mean_boxes_pixel_s0",
    "{gate}_s0",
    "{best}_consistency_s0",
    "{best}_teacher_student_s0",
    "supervised_s1",
    "supervised_1500_s1",
    "{best}_s1",
    "{best}_consistency_s1",
    "supervised_s2",
    "supervised_1500_s2",
    "{best}_s2",
    "{best}_consistency_s2",
    # The precision check on 3 seeds: S750 in float32 ended 3.9 points below bfloat16 on seed 0,
    # and 1.95 below the same float32 flags on another machine: one pair cannot resolve 1 point.
    "supervised_fp32_s1",
    "supervised_fp32_s2",
)
# The measures, fixed with its arms: the target, the structured loss's own share (Table
# 2's last step) and the precision check.
RECIPE_COMPARISONS = (
    Comparison("best arm against S1500 (the target)", "{best}", "supervised_1500", target=2.0),
    Comparison("cold arm against S750", "{gate}", "supervised"),
    Comparison(
        "the SCL's own share: best arm against its lambda_sc 0 twin", "{best}", "{best}_consistency"
    ),
    Comparison("S750: bfloat16 against float32", "supervised", "supervised_fp32"),
)
STUDIES = {
    "imagenet": Study(
        "configs/camvid_semi_1-8_imagenet.flags",
        IMAGENET_ARMS,
        IMAGENET_RUNS,
        "runs/camvid_1-8_imagenet",
        "research/camvid/results/camvid_1-8_imagenet",
    ),
    "random": Study(
        "configs/camvid_semi_1-8.flags",
        RANDOM_ARMS,
        RANDOM_RUNS,
        "runs/camvid_1-8",
        "research/camvid/results/camvid_1-8",
        warm_start={"finetune_supervised": "supervised", "finetune_scl": "supervised"},
    ),
    "recipe": Study(
        "configs/camvid_semi_1-8_imagenet.flags",
        RECIPE_ARMS,
        RECIPE_RUNS,
        "runs/camvid_1-8_recipe",
        "research/camvid/results/camvid_1-8_recipe",
        warm_start={arm: "supervised" for arm in RECIPE_ARMS if arm.startswith("warm_")},
        flags=RECIPE_FLAGS,
        choices={"gate": better_gate, "best": best_arm},
        comparisons=RECIPE_COMPARISONS,
    ),
}
EVAL_WEIGHTS = ("ema", "student")
CURVE_TAGS = ("loss_x", "loss_c", "loss_sc", "val/miou")
LOSS_SMOOTHING = 5  # logged values (every --log_every steps) averaged in the plotted L_x
SEED_LINE_STYLES = ("-", "--", ":")


def is_run_name(study: Study, name: str) -> bool:
    """True for ARM_sSEED with ARM one of the study's arms."""
    arm, _, seed = name.rpartition("_s")
    return arm in study.arms and seed.isdigit()


def parse_run(study: Study, name: str) -> tuple[str, int]:
    """'scl_exact_s1' -> ('scl_exact', 1)."""
    if not is_run_name(study, name):
        raise SystemExit(f"--runs: {name!r} is not ARM_sSEED with ARM one of {sorted(study.arms)}")
    arm, _, seed = name.rpartition("_s")
    return arm, int(seed)


def warm_source(study: Study, name: str) -> str | None:
    """The run `name` starts from ('supervised_s1' for 'warm_mean_s1'), or None."""
    arm, seed = parse_run(study, name)
    return f"{study.warm_start[arm]}_s{seed}" if arm in study.warm_start else None


def warm_start_flags(study: Study, runs_dir: str, name: str) -> list[str]:
    """`--weights=` the model dir of the run this one starts from, if its arm warm-starts.

    Raises:
      SystemExit: that run has not finished training.
    """
    source = warm_source(study, name)
    if source is None:
        return []
    source_dir = os.path.join(runs_dir, source)
    if not is_trained(source_dir):
        raise SystemExit(
            f"--runs: {name} starts from {source_dir}, which has not finished "
            f"training; run {source} first"
        )
    return [f"--weights={source_dir}"]


def train_command(study: Study, args, name: str, extra: list[str]) -> list[str]:
    arm, seed = parse_run(study, name)
    return [
        sys.executable,
        "-m",
        "scl_tf.train",
        f"--flagfile={args.config}",
        f"--data_dir={args.data_dir}",
        f"--seed={seed}",
        f"--model_dir={os.path.join(args.runs_dir, name)}",
        *study.flags,
        *study.arms[arm][1],
        *warm_start_flags(study, args.runs_dir, name),
        *extra,
    ]


def placeholder(name: str) -> str | None:
    """'{best}_s1' -> 'best'; None for a plain run name."""
    return name[1 : name.index("}")] if name.startswith("{") and "}" in name else None


def check_run_name(study: Study, name: str) -> None:
    """A run name, or a "{choice}..." template of one of the study's choices.

    Raises:
      SystemExit: naming --runs and the name.
    """
    choice = placeholder(name)
    if choice is None:
        parse_run(study, name)
    elif choice not in study.choices:
        raise SystemExit(f"--runs: {name!r}: no choice {{{choice}}} in this study")


def recorded_runs(study: Study, results: str) -> dict[str, dict]:
    """The runs of the study that --results.json holds: what earlier sessions scored (run dirs
    do not survive a change of machine; their committed scores do)."""
    path = results + ".json"
    if not os.path.isfile(path):
        return {}
    with open(path) as source:
        return {
            name: run for name, run in json.load(source)["runs"].items() if is_run_name(study, name)
        }


def scores(study: Study, runs_dir: str, recorded: dict[str, dict]) -> dict[str, float]:
    """{run: val mIoU, EMA weights}: the recorded runs', then those finished under runs_dir."""
    found = {name: run["miou"]["ema"] for name, run in recorded.items()}
    for name in os.listdir(runs_dir) if os.path.isdir(runs_dir) else []:
        path = eval_path(os.path.join(runs_dir, name), "ema")
        if is_run_name(study, name) and os.path.isfile(path):
            with open(path) as source:
                found[name] = json.load(source)["miou"]
    return found


def seed0_scores(study: Study, run_scores: dict[str, float]) -> dict[str, float]:
    """{arm: its seed-0 run's score} of the arms whose seed-0 run has one."""
    return {arm: run_scores[f"{arm}_s0"] for arm in study.arms if f"{arm}_s0" in run_scores}


def resolve(study: Study, run_scores: dict[str, float], name: str) -> str:
    """What a run or arm name stands for: '{best}_consistency_s1' -> the best arm's twin, by the
    study's rule for "best" over the seed-0 runs scored so far (`scores`); a plain name is itself.

    Raises:
      KeyError: the arm whose seed-0 run the rule needs and lacks.
    """
    choice = placeholder(name)
    if choice is None:
        return name
    return study.choices[choice](seed0_scores(study, run_scores)) + name[len(choice) + 2 :]


def resolve_run(study: Study, run_scores: dict[str, float], name: str) -> str:
    """`resolve` for a queued run.

    Raises:
      SystemExit: the rule needs a seed-0 run that has not finished.
    """
    try:
        return resolve(study, run_scores, name)
    except KeyError as missing:
        raise SystemExit(f"--runs: {name} needs the finished run {missing.args[0]}_s0") from None


def eval_path(run_dir: str, weights: str) -> str:
    return os.path.join(run_dir, f"eval_val_{weights}.json")


def eval_command(run_dir: str, weights: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scl_tf.evaluate",
        f"--model={run_dir}",
        "--checkpoint=latest",
        f"--eval_weights={weights}",
        f"--output={eval_path(run_dir, weights)}",
    ]


def is_trained(run_dir: str) -> bool:
    """Training ended (the final export is written last, after the final checkpoint)."""
    return os.path.isfile(os.path.join(run_dir, "model.keras"))


def execute(command: list[str], log_path: str) -> None:
    """Runs `command`, appending its output to `log_path`; stops the study if it fails."""
    print(" ".join(command), flush=True)
    with open(log_path, "a") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"failed with exit code {code}; see {log_path}")


def run_queued(study: Study, args, name: str, extra: list[str], recorded: dict) -> None:
    """One run of the queue: skipped if an earlier session scored it; a warm start whose source
    this machine lacks first trains the source again (which replaces its record)."""
    if name in recorded and not os.path.isdir(os.path.join(args.runs_dir, name)):
        print(f"{name}: scored in {args.results}.json; skipped", flush=True)
        return
    source = warm_source(study, name)
    if source and not is_trained(os.path.join(args.runs_dir, source)):
        print(f"{name} starts from {source}, not on this machine: training it again", flush=True)
        run_one(study, args, source, extra)
    run_one(study, args, name, extra)


def run_one(study: Study, args, name: str, extra: list[str]) -> None:
    """Trains (or resumes) one run and evaluates it with both weights, skipping what is done."""
    run_dir = os.path.join(args.runs_dir, name)
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "study.log")
    if not is_trained(run_dir):
        execute(train_command(study, args, name, extra), log_path)
    for weights in EVAL_WEIGHTS:
        if not os.path.isfile(eval_path(run_dir, weights)):
            execute(eval_command(run_dir, weights), log_path)


def collect_run(run_dir: str) -> dict:
    """The scores, settings and curves of a finished run."""
    from scl_tf.training.summaries import read_scalars

    with open(os.path.join(run_dir, "config.json")) as source:
        config = json.load(source)
    scores = {}
    for weights in EVAL_WEIGHTS:
        with open(eval_path(run_dir, weights)) as source:
            scores[weights] = json.load(source)
    curves = read_scalars(os.path.join(run_dir, "logs"))
    return {
        "steps": config["train"]["steps"],
        "config": config,
        "miou": {weights: scores[weights]["miou"] for weights in EVAL_WEIGHTS},
        "class_iou": {weights: scores[weights]["class_iou"] for weights in EVAL_WEIGHTS},
        "curves": {tag: curves.get(tag, []) for tag in CURVE_TAGS},
    }


def summarize_arms(study: Study, runs: dict[str, dict]) -> dict[str, dict]:
    """Per arm: seeds, mIoU (EMA and student weights) per seed, their mean and spread."""
    arms: dict[str, dict] = {}
    for name, run in runs.items():
        arm, seed = parse_run(study, name)
        entry = arms.setdefault(
            arm,
            {"label": study.arms[arm][0], "seeds": [], **{weights: [] for weights in EVAL_WEIGHTS}},
        )
        entry["seeds"].append(seed)
        entry.setdefault("class_iou", []).append(run["class_iou"]["ema"])
        for weights in EVAL_WEIGHTS:
            entry[weights].append(run["miou"][weights])
    for entry in arms.values():
        for weights in EVAL_WEIGHTS:
            values = np.asarray(entry[weights])
            entry[f"{weights}_mean"] = float(values.mean())
            entry[f"{weights}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
        per_seed = entry.pop("class_iou")
        entry["class_iou_mean"] = {
            name: float(np.mean([seed[name] for seed in per_seed])) for name in per_seed[0]
        }
    return {arm: arms[arm] for arm in study.arms if arm in arms}


def markdown_table(arms: dict[str, dict]) -> str:
    """The mIoU table (in %), one row per arm; mean and spread (sample std) over seeds."""

    def cell(entry, weights):
        text = f"{100 * entry[f'{weights}_mean']:.2f}"
        if entry[f"{weights}_std"] is not None:
            text += f" +- {100 * entry[f'{weights}_std']:.2f}"
        return text + "".join(f" ({100 * v:.2f})" for v in entry[weights]) * (
            len(entry[weights]) > 1
        )

    lines = [
        "| arm | seeds | val mIoU %, EMA weights | val mIoU %, student weights |",
        "|---|---|---|---|",
    ]
    for entry in arms.values():
        seeds = ",".join(str(seed) for seed in entry["seeds"])
        lines.append(
            f"| {entry['label']} | {seeds} | {cell(entry, 'ema')} | {cell(entry, 'student')} |"
        )
    return "\n".join(lines) + "\n"


def class_table(arms: dict[str, dict]) -> str:
    """The per-class IoU table (in %, EMA weights, mean over seeds), one row per arm."""
    names = list(next(iter(arms.values()))["class_iou_mean"])
    lines = [
        "| arm | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for entry in arms.values():
        cells = " | ".join(f"{100 * entry['class_iou_mean'][name]:.1f}" for name in names)
        lines.append(f"| {entry['label']} | {cells} |")
    return "\n".join(lines) + "\n"


def compare(study: Study, runs: dict[str, dict], comparison: Comparison) -> dict | None:
    """The arm minus its baseline on each seed both ran (val mIoU, EMA and student weights),
    their mean and spread, and the verdict on `comparison.target` (EMA weights): "met" when the
    mean over >= TARGET_SEEDS seeds reaches it with every seed ahead, "not met" (from the first
    seed that is not ahead), or "undecided" (fewer seeds, each ahead so far); None while no seed
    has both runs or a "{choice}" lacks its seed-0 runs."""
    run_scores = {name: run["miou"]["ema"] for name, run in runs.items()}
    try:
        arm, baseline = (
            resolve(study, run_scores, name) for name in (comparison.arm, comparison.baseline)
        )
    except KeyError:
        return None
    parsed = [parse_run(study, name) for name in runs]
    seeds = sorted(
        seed for run_arm, seed in parsed if run_arm == arm and f"{baseline}_s{seed}" in runs
    )
    if not seeds:
        return None
    result = {"label": comparison.label, "arm": arm, "baseline": baseline, "seeds": seeds}
    for weights in EVAL_WEIGHTS:
        gains = np.array(
            [
                runs[f"{arm}_s{seed}"]["miou"][weights]
                - runs[f"{baseline}_s{seed}"]["miou"][weights]
                for seed in seeds
            ]
        )
        result[weights] = gains.tolist()
        result[f"{weights}_mean"] = float(gains.mean())
        result[f"{weights}_std"] = float(gains.std(ddof=1)) if gains.size > 1 else None
    result["target"] = comparison.target
    if comparison.target is not None:
        if min(result["ema"]) <= 0:
            result["verdict"] = "not met"  # a seed behind: no further seed changes that
        elif len(seeds) < TARGET_SEEDS:
            result["verdict"] = "undecided"
        else:
            reached = 100 * result["ema_mean"] >= comparison.target
            result["verdict"] = "met" if reached else "not met"
    return result


def comparison_table(comparisons: list[dict]) -> str:
    """The paired gains (in mIoU points): per seed, mean +- sample std, and any target's verdict."""

    def cell(entry, weights):
        gains = " ".join(f"{100 * gain:+.2f}" for gain in entry[weights])
        if len(entry[weights]) == 1:
            return gains
        mean, std = 100 * entry[f"{weights}_mean"], 100 * entry[f"{weights}_std"]
        return f"{mean:+.2f} +- {std:.2f} ({gains})"

    lines = [
        "| comparison | seeds | gain, EMA weights | gain, student weights | target (EMA) |",
        "|---|---|---|---|---|",
    ]
    for entry in comparisons:
        target = (
            "-"
            if entry["target"] is None
            else f"+{entry['target']:.1f} on {TARGET_SEEDS} seeds, each ahead: {entry['verdict']}"
        )
        seeds = ",".join(str(seed) for seed in entry["seeds"])
        lines.append(
            f"| {entry['label']} | {seeds} | {cell(entry, 'ema')} | {cell(entry, 'student')} "
            f"| {target} |"
        )
    return "\n".join(lines) + "\n"


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Means of each `window` consecutive values: float [N] -> [N - window + 1] (N >= window)."""
    return np.convolve(values, np.full(window, 1.0 / window), mode="valid")


def run_style(study: Study, name: str) -> dict:
    """Matplotlib line style of a run: its arm's colour (tab20, the study's arm order), its
    seed's dashes."""
    import matplotlib

    arm, seed = parse_run(study, name)
    colours = matplotlib.colormaps["tab20"].colors
    return {
        "color": colours[list(study.arms).index(arm) % len(colours)],
        "linestyle": SEED_LINE_STYLES[seed % len(SEED_LINE_STYLES)],
        "label": name,
    }


def steps_before(study: Study, runs: dict[str, dict], name: str) -> int:
    """The steps a run's weights had trained before its step 1: its warm-start source's steps
    (750 for 'warm_mean_s0' from 'supervised_s0'), else 0."""
    source = warm_source(study, name)
    return runs[source]["steps"] if source in runs else 0


def plot(study: Study, runs: dict[str, dict], arms: dict[str, dict], path: str) -> None:
    """val mIoU per arm (bars, seeds as dots) and the curves of loss_x (smoothed over
    LOSS_SMOOTHING logged values) and val mIoU per run: one colour per arm, one line style per
    seed; a warm start's curves go on from its source's last step (`steps_before`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, loss_axes, miou_axes) = plt.subplots(1, 3, figsize=(17, 4.8))
    labels = list(arms)
    means = [100 * arms[arm]["ema_mean"] for arm in labels]
    bars.bar(range(len(labels)), means, color="#7fa7d9")
    for position, arm in enumerate(labels):
        values = [100 * value for value in arms[arm]["ema"]]
        bars.plot([position] * len(values), values, "k.", markersize=8)
    bars.set_xticks(range(len(labels)), labels, rotation=25, ha="right")
    bars.set_ylabel("val mIoU % (EMA weights)")
    bars.set_title("CamVid 1/8: val mIoU per arm")
    for name, run in runs.items():
        style = run_style(study, name)
        offset = (steps_before(study, runs, name), 0)
        loss = np.asarray(run["curves"]["loss_x"], dtype=float).reshape(-1, 2) + offset
        if len(loss) >= LOSS_SMOOTHING:
            loss_axes.plot(
                moving_average(loss[:, 0], LOSS_SMOOTHING),
                moving_average(loss[:, 1], LOSS_SMOOTHING),
                **style,
            )
        miou = np.asarray(run["curves"]["val/miou"], dtype=float).reshape(-1, 2) + offset
        miou_axes.plot(miou[:, 0], 100 * miou[:, 1], marker=".", **style)
    loss_axes.set_title(f"labeled loss L_x (training, mean of {LOSS_SMOOTHING} logged values)")
    loss_axes.set_xlabel("step (a warm start's from its source's start)")
    loss_axes.set_yscale("log")
    miou_axes.set_title("val mIoU % during training (EMA weights)")
    miou_axes.set_xlabel("step (a warm start's from its source's start)")
    miou_axes.legend(fontsize=6, ncol=2, loc="lower center")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def finished_runs(study: Study, runs_dir: str) -> list[str]:
    """The runs under `runs_dir` scored with every weight, in the study's order, then by name."""
    names = (
        [
            name
            for name in sorted(os.listdir(runs_dir))
            if name not in study.runs and is_run_name(study, name)
        ]
        if os.path.isdir(runs_dir)
        else []
    )
    return [
        name
        for name in (*study.runs, *names)
        if all(
            os.path.isfile(eval_path(os.path.join(runs_dir, name), weights))
            for weights in EVAL_WEIGHTS
        )
    ]


def write_results(study: Study, args) -> None:
    """Collects the recorded runs and every finished run under --runs_dir (which replaces the
    record of a run of the same name) into --results.{json,md,png}."""
    recorded = recorded_runs(study, args.results)
    on_disk = {
        name: collect_run(os.path.join(args.runs_dir, name))
        for name in finished_runs(study, args.runs_dir)
    }
    for name in recorded.keys() & on_disk.keys():
        before, now = recorded[name]["miou"]["ema"], on_disk[name]["miou"]["ema"]
        if abs(before - now) > 5e-5:
            print(f"{name}: trained again here, {100 * now:.2f} (recorded {100 * before:.2f})")
    order = [*study.runs, *sorted(recorded.keys() | on_disk.keys())]
    runs = {
        name: on_disk.get(name) or recorded[name]
        for name in dict.fromkeys(order)
        if name in on_disk or name in recorded
    }
    if not runs:
        return
    arms = summarize_arms(study, runs)
    compared = [
        entry
        for entry in (compare(study, runs, comparison) for comparison in study.comparisons)
        if entry is not None
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results + ".json", "w") as out:
        record = {"command": " ".join(sys.argv), "arms": arms, "comparisons": compared}
        json.dump({**record, "runs": runs}, out, indent=1)
    tables = markdown_table(arms)
    if compared:
        tables += "\nPaired by seed, mIoU points:\n\n" + comparison_table(compared)
    tables += "\nPer-class IoU %, EMA weights:\n\n" + class_table(arms)
    with open(args.results + ".md", "w") as out:
        out.write(tables)
    plot(study, runs, arms, args.results + ".png")
    print(tables)
    print(f"Wrote {args.results}.json, .md and .png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, help="CamVid in the SegNet layout.")
    parser.add_argument("--study", default="imagenet", choices=sorted(STUDIES))
    parser.add_argument("--config", help="Flag file; default: the study's.")
    parser.add_argument(
        "--runs_dir", help="One model dir per run, named ARM_sSEED; default: the study's."
    )
    parser.add_argument(
        "--results", help="Output path without extension (.json, .md, .png); default: the study's."
    )
    parser.add_argument(
        "--runs",
        help="Comma-separated runs ARM_sSEED (or a study's {CHOICE}_... template), trained in "
        "this order; default: the study's.",
    )
    parser.add_argument(
        "--collect_only",
        action="store_true",
        help="Only gather the finished runs under --runs_dir into the results.",
    )
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:split]), argv[split + 1 :]
    study = STUDIES[args.study]
    args.config = args.config or study.config
    args.runs_dir = args.runs_dir or study.runs_dir
    args.results = args.results or study.results
    if not os.path.isfile(args.config):
        raise SystemExit(f"--config: no such file: {args.config}")
    names = [
        name.strip() for name in (args.runs or ",".join(study.runs)).split(",") if name.strip()
    ]
    for name in names:
        check_run_name(study, name)
    for name in [] if args.collect_only else names:
        recorded = recorded_runs(study, args.results)
        resolved = resolve_run(study, scores(study, args.runs_dir, recorded), name)
        run_queued(study, args, resolved, extra, recorded)
        write_results(study, args)
    if args.collect_only:
        write_results(study, args)


if __name__ == "__main__":
    main()
