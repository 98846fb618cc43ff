"""export/check_backbones.py: the parity record of a trained run, merged into the JSON."""

import json

import pytest

from scl_tf.export import parity


@pytest.fixture(scope="module")
def check_backbones(import_script):
    return import_script("check_backbones", folder="export")


@pytest.mark.slow
def test_trained_run_is_checked_in_both_precisions(check_backbones, write_small_run, tmp_path):
    write_small_run(str(tmp_path / "runs" / "mobilenetv2"))
    cases = [parity.ParityCase("random", parity.random_images(1, (48, 64), seed=0))]
    record = check_backbones.check_trained(
        "mobilenetv2", str(tmp_path / "runs"), cases, str(tmp_path)
    )
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


@pytest.mark.slow
def test_a_run_of_another_backbone_is_named(check_backbones, write_small_run, tmp_path):
    write_small_run(str(tmp_path / "resnet50"))
    with pytest.raises(SystemExit, match="trained a mobilenetv2, not a resnet50"):
        check_backbones.check_trained("resnet50", str(tmp_path), [], str(tmp_path))


def test_a_missing_run_names_the_flag(check_backbones, tmp_path):
    with pytest.raises(SystemExit, match="--trained_dir: .*wrn38: not a model dir"):
        check_backbones.check_trained("wrn38", str(tmp_path), [], str(tmp_path))


def test_records_merge_weight_sets_per_backbone(check_backbones, tmp_path):
    path = str(tmp_path / "parity.json")
    cases = [parity.ParityCase("random", parity.random_images(1, (8, 8), seed=0))]
    check_backbones.update_records(
        path, {"backbone": "wrn38", "parameters": 1, "fresh": {}}, 0, cases
    )
    check_backbones.update_records(path, {"backbone": "resnet50", "fresh": {}}, 0, cases)
    records = check_backbones.update_records(
        path, {"backbone": "wrn38", "trained": {"x": 1}}, 0, cases
    )
    with open(path) as source:
        assert json.load(source)["models"] == records
    assert records == [
        {"backbone": "resnet50", "fresh": {}},
        {"backbone": "wrn38", "parameters": 1, "fresh": {}, "trained": {"x": 1}},
    ]
