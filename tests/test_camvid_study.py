"""scripts/run_camvid_study.py: arm bookkeeping, the results table, and a real (tiny) study run
on data/camvid_mini that is resumed without redoing finished work."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_camvid_study.py")


@pytest.fixture(scope="module")
def study(import_script):
    return import_script("run_camvid_study")


def fake_run(ema, student, steps=10):
    curve = [(step, 1.0 / step) for step in range(1, steps + 1)]
    return {"miou": {"ema": ema, "student": student}, "curves": {
        "loss_x": curve, "loss_c": curve, "loss_sc": curve, "val/miou": [(steps, ema)]}}


def test_run_names_parse_and_bad_ones_are_named(study):
    assert study.parse_run("scl_exact_s1") == ("scl_exact", 1)
    assert study.parse_run("teacher_student_s0") == ("teacher_student", 0)
    for name in ("scl_exact", "magic_s0", "supervised_sX"):
        with pytest.raises(SystemExit, match=name):
            study.parse_run(name)
    assert all(study.parse_run(name) for name in study.RUNS)


def test_results_gather_every_finished_run_whatever_was_trained(study, tmp_path):
    for name, files in (("supervised_s0", ("ema", "student")), ("scl_exact_s0", ("ema",)),
                        ("scl_exact_light_s2", ("ema", "student")),
                        ("notes", ("ema", "student")), ("consistency_s0", ())):
        (tmp_path / name).mkdir()
        for weights in files:
            (tmp_path / name / f"eval_val_{weights}.json").write_text("{}")
    assert study.finished_runs(str(tmp_path)) == ["supervised_s0", "scl_exact_light_s2"]
    assert study.finished_runs(str(tmp_path / "missing")) == []


def test_arms_are_the_issues_ablation(study):
    flags = {arm: flags for arm, (_, flags) in study.ARMS.items()}
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
        assert set(study.LIGHT_WEIGHTS) <= set(flags[arm])
    seeds = {}
    for name in study.RUNS:
        arm, seed = study.parse_run(name)
        seeds.setdefault(arm, set()).add(seed)
    assert seeds["supervised"] == seeds["scl_exact_light"] == seeds["teacher_student"] == {0, 1, 2}
    assert set(seeds) == set(study.ARMS)
    # The warm-started arms run after the run they start from.
    order = list(study.RUNS)
    for arm, source in study.WARM_START.items():
        assert order.index(f"{source}_s0") < order.index(f"{arm}_s0")


def test_warm_started_runs_load_their_sources_model_and_wait_for_it(study, tmp_path):
    assert study.warm_start_flags(str(tmp_path), "scl_exact_s0") == []
    with pytest.raises(SystemExit, match="run supervised_s1 first"):
        study.warm_start_flags(str(tmp_path), "finetune_scl_s1")
    (tmp_path / "supervised_s1").mkdir()
    (tmp_path / "supervised_s1" / "model.keras").write_text("")
    expected = f"--weights={tmp_path / 'supervised_s1' / 'model.keras'}"
    assert study.warm_start_flags(str(tmp_path), "finetune_scl_s1") == [expected]
    args = argparse.Namespace(config="study.flags", data_dir="camvid", runs_dir=str(tmp_path))
    command = study.train_command(args, "finetune_supervised_s1", ["--steps=3"])
    assert command[-2:] == [expected, "--steps=3"]  # flags given to the study come last
    assert "--lambda_c=0" in command and "--steps=500" in command


def test_arm_summary_and_table(study):
    runs = {"supervised_s0": fake_run(0.30, 0.28), "supervised_s1": fake_run(0.34, 0.30),
            "scl_exact_s0": fake_run(0.40, 0.37)}
    arms = study.summarize_arms(runs)
    assert list(arms) == ["supervised", "scl_exact"]  # ARMS order, not run order
    assert arms["supervised"]["seeds"] == [0, 1]
    assert arms["supervised"]["ema_mean"] == pytest.approx(0.32)
    assert arms["supervised"]["ema_std"] == pytest.approx(np.std([0.30, 0.34], ddof=1))
    assert arms["scl_exact"]["student_std"] is None
    table = study.markdown_table(arms)
    assert "| Supervised only | 0,1 | 32.00 +- 2.83 (30.00) (34.00) | 29.00 +- 1.41" in table
    assert "| + consistency + SCL exact (full method) | 0 | 40.00 | 37.00 |" in table


def test_plot_colours_arms_dashes_seeds_and_smooths_the_loss(study, tmp_path):
    np.testing.assert_allclose(study.moving_average(np.array([1.0, 2.0, 3.0, 5.0]), 2),
                               [1.5, 2.5, 4.0])
    first, second = study.run_style("supervised_s0"), study.run_style("supervised_s1")
    assert first["color"] == second["color"] and first["linestyle"] != second["linestyle"]
    assert study.run_style("teacher_student_s0")["color"] != first["color"]
    runs = {"supervised_s0": fake_run(0.30, 0.28), "supervised_s1": fake_run(0.34, 0.30),
            "scl_exact_s0": fake_run(0.40, 0.37, steps=3)}  # too short to smooth: no loss line
    path = tmp_path / "study.png"
    study.plot(runs, study.summarize_arms(runs), str(path))
    assert path.stat().st_size > 10_000


def test_tiny_study_runs_resumes_and_writes_results(study, camvid_mini_dir, tmp_path):
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("train/0001TP_006690.png\ntrain/0001TP_007050.png\n")
    runs_dir, results = tmp_path / "runs", tmp_path / "results" / "study"
    command = [sys.executable, SCRIPT, f"--data_dir={camvid_mini_dir}", f"--runs_dir={runs_dir}",
               f"--results={results}", "--runs=scl_exact_s0", "--", f"--labeled_list={labeled}",
               "--steps=2", "--crop_size=32x48", "--labeled_batch_size=1",
               "--unlabeled_batch_size=1", "--eval_every=2", "--eval_images=1", "--log_every=1",
               "--cutmix_boxes=4", "--scl_boxes=2"]
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
    result = subprocess.run([sys.executable, SCRIPT, f"--data_dir={tmp_path}",
                             f"--runs_dir={tmp_path}/runs", "--runs=supervised_s0,bogus_s0"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode != 0 and "'bogus_s0'" in result.stderr
    assert not os.path.exists(tmp_path / "runs")
