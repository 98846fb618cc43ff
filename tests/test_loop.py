"""The training loop's guards: which loss term went bad, event files of a killed run, the progress
bar of a resumed run, and (slow tier) a file that goes bad mid-run and float16 that never
updates."""

import os
import re
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from commands import TINY_TRAIN_FLAGS

from scl_tf.training import loop, summaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"loss": 1.0, "loss_x": 0.5, "loss_c": 0.2, "loss_sc": 0.3}, None),
        ({"loss": np.nan, "loss_x": 0.5, "loss_c": np.nan, "loss_sc": 0.3}, "loss_c"),
        ({"loss": np.inf, "loss_x": 0.5, "loss_c": 0.2, "loss_sc": np.inf}, "loss_sc"),
        ({"loss": np.nan, "loss_x": 0.5, "loss_c": 0.2, "loss_sc": 0.3}, "loss"),
    ],
)
def test_the_bad_term_is_named_not_the_total(values, expected):
    assert loop.first_non_finite(values) == expected


def test_update_count_and_loss_scale_are_read_from_a_built_optimizer():
    """What the skip guard's message reads (it once read an attribute Keras does not have)."""
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
    weights = keras.Variable(np.ones(2, "float32"))
    optimizer.build([weights])
    assert loop.updates_made(optimizer) == 0 and loop.loss_scale(optimizer) == 2.0**15
    optimizer.apply([tf.constant([np.inf, 0.0])], [weights])  # non-finite: skipped, scale halved
    assert loop.updates_made(optimizer) == 0 and loop.loss_scale(optimizer) == 2.0**14


def test_events_after_the_resumed_step_are_dropped(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    for step in range(1, 21):
        summaries.write_scalars(writer, step, {"loss": float(step)})
    writer.close()
    summaries.drop_events_after(str(tmp_path), 12)
    assert [step for step, _ in summaries.read_scalars(str(tmp_path))["loss"]] == list(range(1, 13))
    before = {path: os.path.getmtime(path) for path in tmp_path.iterdir()}
    summaries.drop_events_after(str(tmp_path), 12)  # nothing left to drop: files untouched
    assert {path: os.path.getmtime(path) for path in tmp_path.iterdir()} == before


def test_a_resumed_run_counts_its_steps_from_where_it_stopped(capsys):
    progress = loop._Progress(10, 30, verbose=1)
    progress.update(11, [("loss", 1.0)])
    assert "11/30" in capsys.readouterr().out
    # The time per step counts this process's steps only (10 earlier ones took no time here).
    assert progress._estimate_step_duration(11, progress._start + 5.0) == pytest.approx(5.0)


TINY = [*TINY_TRAIN_FLAGS, "--labeled_count=4", "--eval_images=1"]


@pytest.mark.slow
def test_a_file_that_goes_bad_mid_run_stops_it_after_a_checkpoint(
    camvid_mini_dir, user_env, tmp_path
):
    import shutil

    data = tmp_path / "camvid"
    shutil.copytree(camvid_mini_dir, data)
    model_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scl_tf.train",
            *TINY,
            f"--data_dir={data}",
            "--steps=400",
            "--checkpoint_every=1000",
            "--eval_every=1000",
            f"--model_dir={model_dir}",
        ],
        cwd=REPO,
        env=user_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not (model_dir / "logs").exists():  # written once every check has passed
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(3)
    for path in (data / "train").glob("*.png"):
        path.write_bytes(path.read_bytes()[:1000])
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert err.count("\n") == 1, err
    found = re.match(r"error: step (\d+): .*train/\S+\.png.*saved a checkpoint at step (\d+)", err)
    assert found, err
    assert int(found.group(2)) == int(found.group(1)) - 1
    assert (model_dir / "checkpoints" / f"ckpt-{found.group(2)}.index").exists()
    assert not (model_dir / "model.keras").exists()


@pytest.mark.slow
def test_float16_that_makes_no_update_stops_and_says_so(camvid_mini_dir, tmp_path):
    """On this CPU float16 loss scaling skipped every update of this network (issue 22): such a
    run must stop naming it and never print Done; a run that does update counts its updates."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scl_tf.train",
            *TINY,
            f"--data_dir={camvid_mini_dir}",
            "--steps=1",
            "--checkpoint_every=1000",
            "--eval_every=1000",
            "--mixed_precision=float16",
            f"--model_dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode == 0:  # float16 trains on this machine: Done counts real updates
        assert int(re.search(r"\((\d+) updates", result.stdout).group(1)) > 0
        return
    assert "Done" not in result.stdout
    assert "float16 loss scaling skipped" in result.stderr, result.stderr
    assert "--mixed_precision=bfloat16 or none" in result.stderr
