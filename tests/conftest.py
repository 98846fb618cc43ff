"""Shared test set-up: a private user cache, paths to the bundled sample,
command-line scripts as modules."""

import importlib.util
import os
import pathlib
import sys
import tempfile

# The user cache (converted ImageNet weights, class-uniform indexes) of this test session and its
# subprocesses: never the developer's own ~/.cache/scl_tf.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="scl_tf_test_cache_")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CAMVID_MINI = REPO_ROOT / "data" / "camvid_mini"


@pytest.fixture(scope="session")
def user_env() -> dict:
    """The environment of a user's shell for a command run as a subprocess: without the
    TF_CPP_MIN_LOG_LEVEL that importing TensorFlow in this process set (scl_tf decides)."""
    return {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}


@pytest.fixture(scope="session")
def camvid_mini_dir() -> pathlib.Path:
    """The bundled CamVid sample in the SegNet layout."""
    return CAMVID_MINI


@pytest.fixture(scope="session")
def import_script():
    """import_script(name, folder) loads `folder`/`name`.py as a module (the command-line
    folders export/, tools/, benchmarks/ and research/ are not packages)."""

    def load(name: str, folder: str):
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def write_small_run():
    """write_small_run(model_dir) makes a model dir of scl_tf.train holding a small MobileNetV2
    CamVid teacher (output stride 16, 16-filter head, seed 0), what export tools read, and
    returns that Keras model."""
    import keras

    from scl_tf import runs
    from scl_tf.config import Config, DataConfig, ModelConfig
    from scl_tf.data import labels as labels_lib
    from scl_tf.models import build_model

    def write(model_dir: str) -> keras.Model:
        config = Config(
            data=DataConfig("camvid", data_dir=str(CAMVID_MINI)),
            model=ModelConfig(backbone="mobilenetv2", output_stride=16),
            model_dir=model_dir,
        )
        runs.write_config(config, 11, labels_lib.CAMVID_CLASS_NAMES)
        keras.utils.set_random_seed(0)
        model = build_model(
            "mobilenetv2", 11, output_stride=16, aspp_filters=16, decoder_filters=16
        )
        model.save(os.path.join(model_dir, runs.EXPORT_NAME))
        return model

    return write
