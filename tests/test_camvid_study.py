"""research/camvid/run_study.py: arm bookkeeping, the results table, and a real (tiny) study run
on data/camvid_mini that is resumed without redoing finished work."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "research", "camvid", "run_study.py")


@pytest.fixture(scope="module")
def runner(import_script):
    return import_script("run_study", folder="research/camvid")


@pytest.fixture(scope="module")
def study(runner):
    """The random-weights study (issue 8), whose arms the bookkeeping tests use."""
    return runner.STUDIES["random"]


def fake_run(ema, student, steps=10):
    curve = [(step, 1.0 / step) for step in range(1, steps + 1)]
    return {
        "steps": steps,
        "miou": {"ema": ema, "student": student},
        "class_iou": {"ema": {"road": ema, "car": student}},
        "curves": {"loss_x": curve, "loss_c": curve, "loss_sc": curve, "val/miou": [(steps, ema)]},
    }


def test_run_names_parse_and_bad_ones_are_named(runner, study):
    assert runner.parse_run(study, "scl_exact_s1") == ("scl_exact", 1)
    assert runner.parse_run(study, "teacher_student_s0") == ("teacher_student", 0)
    for name in ("scl_exact", "magic_s0", "supervised_sX"):
        with pytest.raises(SystemExit, match=name):
            runner.parse_run(study, name)
    for each in runner.STUDIES.values():
        for name in each.runs:
            runner.check_run_name(each, name)


def test_results_gather_every_finished_run_whatever_was_trained(runner, study, tmp_path):
    for name, files in (
        ("supervised_s0", ("ema", "student")),
        ("scl_exact_s0", ("ema",)),
        ("scl_exact_light_s2", ("ema", "student")),
        ("notes", ("ema", "student")),
        ("consistency_s0", ()),
    ):
        (tmp_path / name).mkdir()
        for weights in files:
            (tmp_path / name / f"eval_val_{weights}.json").write_text("{}")
    assert runner.finished_runs(study, str(tmp_path)) == ["supervised_s0", "scl_exact_light_s2"]
    assert runner.finished_runs(study, str(tmp_path / "missing")) == []


def seeds_per_arm(runner, study):
    seeds = {}
    for name in study.runs:
        arm, seed = runner.parse_run(study, name)
        seeds.setdefault(arm, set()).add(seed)
    return seeds


def test_imagenet_arms_are_the_papers_ablation_with_its_weights(runner):
    study = runner.STUDIES["imagenet"]
    flags = {arm: flags for arm, (_, flags) in study.arms.items()}
    assert flags["supervised"] == ["--lambda_c=0", "--lambda_sc=0"]
    assert flags["consistency"] == ["--lambda_sc=0"]
    assert flags["scl_exact"] == []  # the flag file is the paper's full method
    assert flags["scl_pairs"] == ["--scl_mode=pairs", "--num_pairs=9000"]
    assert flags["teacher_student"] == ["--teacher=student"]
    assert flags["ema_0999"] == ["--ema_decay=0.999"]
    assert flags["supervised_random"][-1] == "--weights="
    # The diagnostics of a full method below the baseline: ramp-up, and lambdas / 10 with it.
    assert flags["scl_exact_rampup"] == ["--rampup_steps=225"]  # 30% of the 750 steps
    assert flags["scl_exact_light"] == ["--rampup_steps=225", "--lambda_c=2", "--lambda_sc=0.3"]
    assert flags["consistency_light"][-1] == "--lambda_sc=0"
    seeds = seeds_per_arm(runner, study)
    assert seeds["supervised"] == seeds["scl_exact"] == seeds["scl_exact_light"] == {0, 1, 2}
    for arm in ("consistency", "consistency_light", "scl_pairs", "teacher_student", "ema_0999"):
        assert seeds[arm] == {0}
    # Seed 0 of the two ends of Table 2, then the diagnostics.
    assert study.runs[:4] == (
        "supervised_s0",
        "scl_exact_s0",
        "scl_exact_light_s0",
        "scl_exact_rampup_s0",
    )


def test_imagenet_flag_file_is_the_papers_method_and_scales_the_ema_decay():
    path = os.path.join(REPO, "configs", "camvid_semi_1-8_imagenet.flags")
    values = dict(
        line.strip().lstrip("-").split("=", 1) for line in open(path) if line.startswith("--")
    )
    assert values["backbone"] == "efficientnet_lite0" and values["weights"] == "imagenet"
    assert values["lambda_c"] == "20" and values["lambda_sc"] == "3"
    assert values["scl_mode"] == "exact" and "rampup_steps" not in values
    # The paper's EMA horizon, 1 / (1 - 0.999) = 1000 steps of its 65,078 (175 epochs of 2,975
    # frames at batch 8), as the same share of this run's steps.
    horizon = 1000 / 65_078 * int(values["steps"])
    assert float(values["ema_decay"]) == pytest.approx(1 - 1 / horizon, abs=5e-4)


def test_random_arms_are_the_issues_ablation(runner, study):
    flags = {arm: flags for arm, (_, flags) in study.arms.items()}
    assert flags["supervised"] == ["--lambda_c=0", "--lambda_sc=0"]
    assert flags["consistency"] == ["--lambda_sc=0"]
    assert "--num_pairs=9000" in flags["scl_pairs"] and "--scl_mode=pairs" in flags["scl_pairs"]
    assert "--teacher=student" in flags["teacher_student"]
    assert "--ema_decay=0.9" in flags["ema_fast"]
    # Flags given later win: the consistency-alone variant drops the structured term.
    assert flags["teacher_student_consistency"][-1] == "--lambda_sc=0"
    assert "--teacher=student" in flags["teacher_student_consistency"]
    # The ablations of the full method vary its light setting, the one that trains.
    for arm in ("scl_pairs", "teacher_student", "ema_fast"):
        assert set(runner.LIGHT_WEIGHTS) <= set(flags[arm])
    seeds = seeds_per_arm(runner, study)
    assert seeds["supervised"] == seeds["scl_exact_light"] == seeds["teacher_student"] == {0, 1, 2}
    assert set(seeds) == set(study.arms)
    # The warm-started arms run after the run they start from.
    order = list(study.runs)
    for arm, source in study.warm_start.items():
        assert order.index(f"{source}_s0") < order.index(f"{arm}_s0")


def test_warm_started_runs_load_their_sources_model_and_wait_for_it(runner, study, tmp_path):
    assert runner.warm_start_flags(study, str(tmp_path), "scl_exact_s0") == []
    with pytest.raises(SystemExit, match="run supervised_s1 first"):
        runner.warm_start_flags(study, str(tmp_path), "finetune_scl_s1")
    (tmp_path / "supervised_s1").mkdir()
    (tmp_path / "supervised_s1" / "model.keras").write_text("")
    expected = f"--weights={tmp_path / 'supervised_s1'}"
    assert runner.warm_start_flags(study, str(tmp_path), "finetune_scl_s1") == [expected]
    args = argparse.Namespace(config="study.flags", data_dir="camvid", runs_dir=str(tmp_path))
    command = runner.train_command(study, args, "finetune_supervised_s1", ["--steps=3"])
    assert command[-2:] == [expected, "--steps=3"]  # flags given to the study come last
    assert "--lambda_c=0" in command and "--steps=500" in command


def test_recipe_arms_are_the_issues_fixed_before_the_first_run(runner):
    study = runner.STUDIES["recipe"]
    flags = {arm: flags for arm, (_, flags) in study.arms.items()}
    assert study.config == "configs/camvid_semi_1-8_imagenet.flags"
    assert study.flags == ("--mixed_precision=bfloat16",)
    assert flags["supervised"] == ["--lambda_c=0", "--lambda_sc=0"]
    assert flags["supervised_1500"] == [*flags["supervised"], "--steps=1500", "--ema_decay=0.957"]
    assert flags["warm_paper"] == []  # the flag file: lambda_c 20 summed, lambda_sc 3
    assert flags["warm_mean"] == ["--consistency_class_reduction=mean"]
    assert flags["warm_mean_boxes"] == [*flags["warm_mean"], "--cutmix_min_box_cells=8"]
    gate, pixel = flags["warm_mean_boxes_gate"], flags["warm_mean_boxes_pixel"]
    assert gate == [
        *flags["warm_mean_boxes"],
        "--confidence_threshold=0.97",
        "--confidence_form=batch",
    ]
    assert pixel == [
        *flags["warm_mean_boxes"],
        "--confidence_threshold=0.97",
        "--confidence_form=pixel",
    ]
    assert flags["cold_mean_boxes_gate"] == gate and flags["cold_mean_boxes_pixel"] == pixel
    assert flags["warm_mean_boxes_gate_consistency"][-1] == "--lambda_sc=0"
    assert flags["warm_mean_teacher_student"][-1] == "--teacher=student"
    # Warm arms (and their twins) start from S750 of the same seed; cold ones from ImageNet.
    assert (
        study.warm_start["warm_paper"] == study.warm_start["warm_mean_consistency"] == "supervised"
    )
    assert not any(arm.startswith("cold") for arm in study.warm_start)
    assert runner.recipe_baseline("warm_mean") == "supervised_1500"
    assert runner.recipe_baseline("cold_mean_boxes_gate") == "supervised"
    for name in study.runs:
        runner.check_run_name(study, name)
    assert flags["supervised_fp32"][-1] == "--mixed_precision=none"  # after the study's flags
    assert study.runs[:8] == (
        "supervised_s0",
        "supervised_1500_s0",
        "warm_paper_s0",
        "supervised_fp32_s0",
        "warm_mean_s0",
        "warm_mean_boxes_s0",
        "warm_mean_boxes_gate_s0",
        "warm_mean_boxes_pixel_s0",
    )


def test_recipe_choices_follow_their_rules_on_seed_0(runner, tmp_path):
    study = runner.STUDIES["recipe"]
    scores = {
        "supervised": 0.54,
        "supervised_1500": 0.56,
        "warm_paper": 0.45,
        "warm_mean": 0.565,
        "warm_mean_boxes_gate": 0.57,
        "warm_mean_boxes_pixel": 0.575,
        "cold_mean_boxes_pixel": 0.55,  # +1.0 over S750, behind the best warm arm's +1.5
    }
    assert runner.better_gate(scores) == "cold_mean_boxes_pixel"
    assert runner.best_arm(scores) == "warm_mean_boxes_pixel"  # +1.5 over S1500
    # Scored on this machine, or recorded by an earlier session (a record of its results JSON).
    recorded = {"warm_mean_boxes_pixel_s0": {"miou": {"ema": 0.575}}}
    for arm, score in scores.items():
        if f"{arm}_s0" not in recorded:
            (tmp_path / f"{arm}_s0").mkdir()
            (tmp_path / f"{arm}_s0" / "eval_val_ema.json").write_text(json.dumps({"miou": score}))
    run_scores = runner.scores(study, str(tmp_path), recorded)
    assert runner.seed0_scores(study, run_scores) == scores
    resolved = runner.resolve_run(study, run_scores, "{best}_consistency_s2")
    assert resolved == "warm_mean_boxes_pixel_consistency_s2"
    assert runner.resolve_run(study, run_scores, "{gate}_s0") == "cold_mean_boxes_pixel_s0"
    assert runner.resolve_run(study, run_scores, "supervised_s1") == "supervised_s1"
    without = runner.scores(study, str(tmp_path), {})
    with pytest.raises(SystemExit, match="needs the finished run warm_mean_boxes_pixel_s0"):
        runner.resolve_run(study, without, "{gate}_s0")


def test_a_new_machine_skips_recorded_runs_and_trains_a_missing_source_again(
    runner, tmp_path, monkeypatch
):
    """Run dirs do not survive a change of machine; the committed results do."""
    study = runner.STUDIES["recipe"]
    results = tmp_path / "results" / "recipe"
    results.parent.mkdir()
    record = {"miou": {"ema": 0.56, "student": 0.55}}
    results.with_suffix(".json").write_text(
        json.dumps({"runs": {"supervised_s0": record, "warm_paper_s0": record, "notes": {}}})
    )
    args = argparse.Namespace(
        config="study.flags",
        data_dir="camvid",
        runs_dir=str(tmp_path / "runs"),
        results=str(results),
    )
    trained = []

    def fake_run_one(study, args, name, extra):
        trained.append(name)
        os.makedirs(os.path.join(args.runs_dir, name), exist_ok=True)
        (tmp_path / "runs" / name / "model.keras").write_text("")

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    recorded = runner.recorded_runs(study, args.results)
    assert set(recorded) == {"supervised_s0", "warm_paper_s0"}
    runner.run_queued(study, args, "warm_paper_s0", [], recorded)
    runner.run_queued(study, args, "supervised_1500_s0", [], recorded)
    runner.run_queued(study, args, "warm_mean_s0", [], recorded)
    assert trained == ["supervised_1500_s0", "supervised_s0", "warm_mean_s0"]
    runner.run_queued(study, args, "supervised_s0", [], recorded)  # its dir is here now
    assert trained[-1] == "supervised_s0"
    with pytest.raises(SystemExit, match="no choice"):
        runner.check_run_name(study, "{worst}_s0")


def test_comparisons_pair_seeds_and_judge_the_target_on_three(runner):
    study = runner.STUDIES["recipe"]
    target = runner.Comparison("best against S1500", "{best}", "supervised_1500", target=2.0)
    share = runner.Comparison("SCL share", "{best}", "{best}_consistency")
    seed0 = {
        "supervised_s0": fake_run(0.54, 0.54),
        "supervised_1500_s0": fake_run(0.56, 0.55),
        "warm_mean_boxes_gate_s0": fake_run(0.57, 0.57),
        "warm_mean_boxes_pixel_s0": fake_run(0.59, 0.58),  # the best arm: +3.0
        "warm_mean_boxes_pixel_consistency_s0": fake_run(0.595, 0.58),
    }
    runs = {
        **seed0,
        "supervised_1500_s1": fake_run(0.55, 0.55),
        "warm_mean_boxes_pixel_s1": fake_run(0.59, 0.56),  # +4.0
        "warm_mean_boxes_pixel_s2": fake_run(0.60, 0.60),  # no S1500 seed 2: not paired
    }
    entry = runner.compare(study, runs, target)
    assert entry["arm"] == "warm_mean_boxes_pixel" and entry["baseline"] == "supervised_1500"
    assert entry["seeds"] == [0, 1]
    assert entry["ema"] == pytest.approx([0.03, 0.04])
    assert entry["student"] == pytest.approx([0.03, 0.01])
    assert entry["student_std"] == pytest.approx(np.std([0.03, 0.01], ddof=1))
    assert entry["verdict"] == "undecided"  # 2 seeds of 3, each ahead
    behind = {**runs, "supervised_1500_s1": fake_run(0.60, 0.55)}
    assert runner.compare(study, behind, target)["verdict"] == "not met"  # seed 1 behind
    runs["supervised_1500_s2"] = fake_run(0.61, 0.59)  # seed 2 behind: -1.0
    entry = runner.compare(study, runs, target)
    assert entry["ema_mean"] == pytest.approx(0.02) and entry["verdict"] == "not met"
    runs["supervised_1500_s2"] = fake_run(0.595, 0.59)  # each ahead, mean +2.5
    assert runner.compare(study, runs, target)["verdict"] == "met"
    runs["supervised_1500_s2"] = fake_run(0.60, 0.59)  # mean +2.33, seed 2 level: not ahead
    assert runner.compare(study, runs, target)["verdict"] == "not met"
    twin = runner.compare(study, runs, share)
    assert twin["baseline"] == "warm_mean_boxes_pixel_consistency" and twin["seeds"] == [0]
    assert twin["ema"] == pytest.approx([-0.005]) and "verdict" not in twin
    assert runner.compare(study, {}, target) is None  # "{best}" has no seed-0 runs to choose by
    table = runner.comparison_table([runner.compare(study, runs, target), twin])
    assert "| best against S1500 | 0,1,2 | +2.33 +- 2.08 (+3.00 +4.00 +0.00) |" in table
    assert "| +2.0 on 3 seeds, each ahead: not met |" in table
    assert "| SCL share | 0 | -0.50 | +0.00 | - |" in table


def test_arm_summary_and_table(runner, study):
    runs = {
        "supervised_s0": fake_run(0.30, 0.28),
        "supervised_s1": fake_run(0.34, 0.30),
        "scl_exact_s0": fake_run(0.40, 0.37),
    }
    arms = runner.summarize_arms(study, runs)
    assert list(arms) == ["supervised", "scl_exact"]  # ARMS order, not run order
    assert arms["supervised"]["seeds"] == [0, 1]
    assert arms["supervised"]["ema_mean"] == pytest.approx(0.32)
    assert arms["supervised"]["ema_std"] == pytest.approx(np.std([0.30, 0.34], ddof=1))
    assert arms["scl_exact"]["student_std"] is None
    table = runner.markdown_table(arms)
    assert "| Supervised only | 0,1 | 32.00 +- 2.83 (30.00) (34.00) | 29.00 +- 1.41" in table
    assert "| + consistency + SCL exact (full method) | 0 | 40.00 | 37.00 |" in table
    assert arms["supervised"]["class_iou_mean"] == pytest.approx({"road": 0.32, "car": 0.29})
    classes = runner.class_table(arms)
    assert "| arm | road | car |" in classes
    assert "| Supervised only | 32.0 | 29.0 |" in classes


def test_plot_colours_arms_dashes_seeds_and_smooths_the_loss(runner, study, tmp_path):
    np.testing.assert_allclose(
        runner.moving_average(np.array([1.0, 2.0, 3.0, 5.0]), 2), [1.5, 2.5, 4.0]
    )
    first = runner.run_style(study, "supervised_s0")
    second = runner.run_style(study, "supervised_s1")
    assert first["color"] == second["color"] and first["linestyle"] != second["linestyle"]
    assert runner.run_style(study, "teacher_student_s0")["color"] != first["color"]
    runs = {
        "supervised_s0": fake_run(0.30, 0.28),
        "supervised_s1": fake_run(0.34, 0.30),
        "scl_exact_s0": fake_run(0.40, 0.37, steps=3),
    }  # too short to smooth: no loss line
    path = tmp_path / "study.png"
    runner.plot(study, runs, runner.summarize_arms(study, runs), str(path))
    assert path.stat().st_size > 10_000


def test_a_warm_starts_curves_go_on_from_its_sources_last_step(runner):
    recipe = runner.STUDIES["recipe"]
    runs = {"supervised_s0": fake_run(0.5, 0.5, steps=750), "warm_mean_s0": fake_run(0.6, 0.6)}
    assert runner.steps_before(recipe, runs, "warm_mean_s0") == 750
    assert runner.steps_before(recipe, runs, "supervised_s0") == 0
    assert runner.steps_before(recipe, runs, "cold_mean_boxes_pixel_s0") == 0
    assert runner.steps_before(recipe, runs, "warm_mean_s1") == 0  # its source not collected


@pytest.mark.slow
def test_tiny_study_runs_resumes_and_writes_results(camvid_mini_dir, tmp_path):
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("train/0001TP_006690.png\ntrain/0001TP_007050.png\n")
    runs_dir, results = tmp_path / "runs", tmp_path / "results" / "study"
    command = [
        sys.executable,
        SCRIPT,
        f"--data_dir={camvid_mini_dir}",
        f"--runs_dir={runs_dir}",
        f"--results={results}",
        "--runs=scl_exact_s0",
        "--",
        f"--labeled_list={labeled}",
        "--steps=2",
        "--crop_size=32x48",
        "--labeled_batch_size=1",
        "--unlabeled_batch_size=1",
        "--eval_every=2",
        "--eval_images=1",
        "--log_every=1",
        "--cutmix_boxes=4",
        "--scl_boxes=2",
    ]
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "scl_tf.train" in first.stdout and "scl_tf.evaluate" in first.stdout
    record = json.loads(results.with_suffix(".json").read_text())
    run = record["runs"]["scl_exact_s0"]
    assert run["steps"] == 2 and 0.0 <= run["miou"]["ema"] <= 1.0
    assert [step for step, _ in run["curves"]["loss_sc"]] == [1, 2]
    assert run["config"]["data"]["labeled_list"] == str(labeled)
    assert "+ consistency + SCL exact" in results.with_suffix(".md").read_text()
    assert results.with_suffix(".png").stat().st_size > 10_000
    # Started again, the finished run is neither retrained nor re-evaluated.
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "scl_tf.train" not in again.stdout and "scl_tf.evaluate" not in again.stdout
    assert "Wrote" in again.stdout


def test_unknown_run_stops_before_any_work(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            f"--data_dir={tmp_path}",
            f"--runs_dir={tmp_path}/runs",
            "--runs=supervised_s0,bogus_s0",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0 and "'bogus_s0'" in result.stderr
    assert not os.path.exists(tmp_path / "runs")
