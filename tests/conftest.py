"""Shared test set-up: quiet TensorFlow, paths to the bundled sample."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CAMVID_MINI = REPO_ROOT / "data" / "camvid_mini"


@pytest.fixture(scope="session")
def camvid_mini_dir() -> pathlib.Path:
    """The bundled CamVid sample in the SegNet layout."""
    return CAMVID_MINI
