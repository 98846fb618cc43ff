"""export/check_backbones.py: the parity record of a trained run, merged into the JSON."""

import json
import os

import keras
import pytest

from scl_tf.config import Config, DataConfig, ModelConfig
from scl_tf.data import labels as labels_lib
from scl_tf.export import parity
from scl_tf.models import build_model
from scl_tf.training import run_dir


@pytest.fixture(scope="module")
def check_backbones(import_script):
    return import_script("check_backbones", folder="export")


def write_run(model_dir: str, data_dir: str) -> None:
    """A model dir of scl_tf.train holding a small MobileNetV2 CamVid teacher."""
    config = Config(data=DataConfig("camvid", data_dir=data_dir),
                    model=ModelConfig(backbone="mobilenetv2", output_stride=16),
                    model_dir=model_dir)
    run_dir.write_config(config, 11, labels_lib.CAMVID_CLASS_NAMES)
    keras.utils.set_random_seed(0)
    model = build_model("mobilenetv2", 11, output_stride=16, aspp_filters=16, decoder_filters=16)
    model.save(os.path.join(model_dir, run_dir.EXPORT_NAME))


def test_trained_run_is_checked_in_both_precisions(check_backbones, camvid_mini_dir, tmp_path):
    write_run(str(tmp_path / "runs" / "mobilenetv2"), str(camvid_mini_dir))
    cases = [parity.ParityCase("random", parity.random_images(1, (48, 64), seed=0))]
    record = check_backbones.check_trained("mobilenetv2", str(tmp_path / "runs"), cases,
                                           str(tmp_path))
    trained = record["trained"]
    assert record["backbone"] == "mobilenetv2"
    assert trained["run"] == str(tmp_path / "runs" / "mobilenetv2")
    assert (trained["output_stride"], trained["classes"]) == (16, 11)
    assert trained["fp32"]["passed"] and trained["fp32"]["max_probability_delta"] <= 1e-4
    # A random network's fp16 argmax is decided by rounding (the script's docstring): only the
    # record is checked.
    fp16 = trained["fp16"]
    assert fp16["passed"] == (fp16["argmax_agreement"] >= parity.MIN_ARGMAX_AGREEMENT)
    assert [case["name"] for case in fp16["cases"]] == ["random"]


def test_a_run_of_another_backbone_is_named(check_backbones, camvid_mini_dir, tmp_path):
    write_run(str(tmp_path / "resnet50"), str(camvid_mini_dir))
    with pytest.raises(SystemExit, match="trained a mobilenetv2, not a resnet50"):
        check_backbones.check_trained("resnet50", str(tmp_path), [], str(tmp_path))


def test_a_missing_run_names_the_flag(check_backbones, tmp_path):
    with pytest.raises(SystemExit, match="--trained_dir: .*wrn38: no such model dir"):
        check_backbones.check_trained("wrn38", str(tmp_path), [], str(tmp_path))


def test_records_merge_weight_sets_per_backbone(check_backbones, tmp_path):
    path = str(tmp_path / "parity.json")
    cases = [parity.ParityCase("random", parity.random_images(1, (8, 8), seed=0))]
    check_backbones.update_records(path, {"backbone": "wrn38", "parameters": 1, "fresh": {}}, 0,
                                   cases)
    check_backbones.update_records(path, {"backbone": "resnet50", "fresh": {}}, 0, cases)
    records = check_backbones.update_records(path, {"backbone": "wrn38", "trained": {"x": 1}}, 0,
                                             cases)
    with open(path) as source:
        assert json.load(source)["models"] == records
    assert records == [{"backbone": "resnet50", "fresh": {}},
                       {"backbone": "wrn38", "parameters": 1, "fresh": {}, "trained": {"x": 1}}]
