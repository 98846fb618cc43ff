"""Shared test set-up: quiet TensorFlow, paths to the bundled sample, scripts as modules."""

import importlib.util
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


@pytest.fixture(scope="session")
def import_script():
    """import_script(name, folder="scripts") loads `folder`/`name`.py as a module (scripts/ and
    export/ are not packages)."""

    def load(name: str, folder: str = "scripts"):
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
