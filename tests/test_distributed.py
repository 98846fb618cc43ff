"""MirroredStrategy over two logical CPUs gives the same step as one device."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent


@pytest.mark.slow
def test_mirrored_step_equals_one_device_step():
    result = subprocess.run(
        [sys.executable, str(HERE / "distributed_check.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=HERE,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout)
    one, two = runs["one_device"], runs["mirrored"]
    for name, value in one["logs"].items():
        np.testing.assert_allclose(two["logs"][name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    assert one["logs"]["loss_c"] > 0 and one["logs"]["loss_sc"] > 0
    for role in ("student", "teacher"):
        for a, b in zip(one["weights"][role], two["weights"][role]):
            np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)
