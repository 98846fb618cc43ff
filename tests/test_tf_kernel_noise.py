"""benchmarks/tf_kernel_noise.py: TensorFlow's oneDNN kernels against its plain ones."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from scl_tf.export import parity

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "tf_kernel_noise.py"


@pytest.fixture(scope="module")
def tf_kernel_noise(import_script):
    return import_script("tf_kernel_noise", folder="benchmarks")


def test_compare_gives_the_parity_figures_of_two_logit_sets(tf_kernel_noise):
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (1, 4, 5, 3)).astype(np.float32)
    reference[0, :2, :2] = [6.0, 0.0, 0.0]  # clear labels where `other` differs
    other = reference.copy()
    other[0, 0, 0] = [0.0, 9.0, 0.0]  # one pixel changes label
    other[0, 1, 1, 0] += 1e-3
    case = parity.ParityCase("frame", np.zeros((1, 4, 5, 3), np.float32))
    [record] = tf_kernel_noise.compare([case], [reference], [other])
    expected = np.abs(parity.softmax(reference) - parity.softmax(other)).max()
    assert record["max_probability_delta"] == pytest.approx(float(expected))
    assert (record["name"], record["agreeing"], record["pixels"]) == ("frame", 19, 20)
    assert record["max_abs_logit"] == pytest.approx(float(np.abs(reference).max()))


@pytest.mark.slow
def test_a_model_dir_is_run_with_both_kernels(write_small_run, tmp_path):
    write_small_run(str(tmp_path / "run"))
    output = tmp_path / "noise.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            f"--source={tmp_path / 'run'}",
            "--parity_frames=1",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(output.read_text())
    names = [case["name"] for case in record["cases"]]
    assert names[:2] == ["random 2x192x256", "random 1x97x131"] and len(names) == 3
    for case in record["cases"]:
        assert 0 <= case["max_probability_delta"] < 1e-3 and case["max_abs_logit"] > 0
        assert case["agreeing"] <= case["pixels"]
    assert f"wrote {output}" in result.stdout


@pytest.mark.slow
def test_a_missing_source_is_named(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), f"--source={tmp_path / 'none'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and f"--source={tmp_path / 'none'}" in result.stderr
    assert "neither a model dir" in result.stderr
