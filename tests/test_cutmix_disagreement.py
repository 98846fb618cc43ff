"""research/camvid/cutmix_disagreement.py: the consistency loss that CutMix alone causes."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from train_helpers import tiny_segmenter

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "research" / "camvid" / "cutmix_disagreement.py"


@pytest.fixture(scope="module")
def script(import_script):
    return import_script("cutmix_disagreement", folder="research/camvid")


@pytest.fixture(scope="module")
def crops(script, camvid_mini_dir):
    images, labels = script.load_frames("camvid", str(camvid_mini_dir), "val", 4)
    return script.random_crops(images, labels, (48, 64), seed=0)


def predictor_of(model):
    return lambda images: tf.nn.softmax(model(images)).numpy()


def test_a_pixelwise_network_is_unmoved_by_cutmix(script, crops):
    pixelwise = predictor_of(tiny_segmenter(num_classes=11, kernel_size=1, batchnorm=False))
    row = script.disagreement(pixelwise, *crops, num_boxes=8, area=0.5, seed=3)
    assert row["l_c"] < 1e-10
    assert row["accuracy_mixed_image"] == row["accuracy_mixed_predictions"]


def test_context_makes_cutmix_cost_consistency(script, crops):
    spatial = predictor_of(tiny_segmenter(num_classes=11, kernel_size=9, batchnorm=False))
    row = script.disagreement(spatial, *crops, num_boxes=8, area=0.5, seed=3)
    assert row["l_c"] > 1e-6
    assert 0.0 <= row["accuracy_mixed_image"] <= 1.0
    assert 4 <= row["mean_box_side"] <= 48
    images, labels = crops
    assert images.shape == (4, 48, 64, 3) and labels.shape == (4, 48, 64)


@pytest.mark.slow
def test_frames_spread_over_the_split_and_bad_crops_are_named(script, camvid_mini_dir, tmp_path):
    images, labels = script.load_frames("camvid", str(camvid_mini_dir), "val", 3)
    assert len(images) == len(labels) == 3 and images[0].shape[:2] == labels[0].shape
    assert labels[0].dtype == np.int32
    model = tmp_path / "model.keras"
    tiny_segmenter(num_classes=11).save(model)
    command = [
        sys.executable,
        str(SCRIPT),
        f"--model={model}",
        f"--data_dir={camvid_mini_dir}",
        "--images=3",
        "--crops=32x48",
        "--boxes=4,1",
        f"--output={tmp_path / 'out.json'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out.json").read_text())
    assert [row["boxes"] for row in record["rows"]] == [4, 1] and record["pairs"] == 3
    too_big = subprocess.run(
        command[:-3] + ["--crops=400x480"], capture_output=True, text=True, timeout=300
    )
    assert too_big.returncode != 0 and "--crops: 400x480 is larger" in too_big.stderr
