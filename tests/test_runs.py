"""The model dir of a run: config.json round trip and loading the model back."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from scl_tf import runs
from scl_tf.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig

CLASSES = ("road", "car", "sky")


@pytest.fixture(scope="module")
def run(tmp_path_factory, camvid_mini_dir):
    """A model dir with config.json, one checkpoint and model.keras (= the student)."""
    model_dir = str(tmp_path_factory.mktemp("run"))
    config = Config(
        data=DataConfig("camvid", str(camvid_mini_dir)),
        model=ModelConfig(
            backbone="mobilenetv2", output_stride=16, decoder_convs=1, decoder_kernel_size=1
        ),
        train=TrainConfig(eval_weights="ema"),
        model_dir=model_dir,
    )
    runs.write_config(config, len(CLASSES), CLASSES)
    student, teacher = runs.build_networks(config.model, len(CLASSES))
    teacher.set_weights([w * 0.5 for w in student.get_weights()])
    step = tf.Variable(7, dtype=tf.int64)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(student=student, teacher=teacher, step=step),
        os.path.join(model_dir, runs.LATEST_FOLDER),
        max_to_keep=1,
        step_counter=step,
    )
    manager.save(checkpoint_number=step)
    student.save(os.path.join(model_dir, runs.EXPORT_NAME))
    image = np.random.default_rng(0).uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
    return model_dir, image, student(image).numpy(), teacher(image).numpy()


@pytest.mark.slow
def test_info_round_trips(run):
    info = runs.read_info(run[0])
    assert info.model == ModelConfig(
        backbone="mobilenetv2", output_stride=16, decoder_convs=1, decoder_kernel_size=1
    )
    assert (info.num_classes, info.class_names) == (3, CLASSES)
    assert (info.dataset, info.eval_weights) == ("camvid", "ema")


# The fixture's model.keras holds the student (a real run's holds its --eval_weights, here
# "ema") to tell the sources apart: the run's own weights come from model.keras, others from
# the checkpoint.
@pytest.mark.slow
@pytest.mark.parametrize(
    "checkpoint, eval_weights, expected",
    [
        ("final", None, 2),
        ("final", "ema", 2),
        ("latest", None, 3),
        ("latest", "student", 2),
        ("best", None, None),
    ],
)
def test_load_model_picks_the_asked_weights(run, checkpoint, eval_weights, expected):
    model_dir, image = run[0], run[1]
    if expected is None:
        with pytest.raises(runs.ModelError, match="best: no checkpoint"):
            runs.load_keras(model_dir, checkpoint=checkpoint, eval_weights=eval_weights)
        return
    model = runs.load_keras(model_dir, checkpoint=checkpoint, eval_weights=eval_weights)
    np.testing.assert_allclose(model(image).numpy(), run[expected], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_load_model_from_a_keras_file(run):
    model = runs.load_keras(os.path.join(run[0], runs.EXPORT_NAME))
    np.testing.assert_allclose(model(run[1]).numpy(), run[2], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_runs_model_keras_warm_starts_the_student_of_a_new_run(run):
    config = runs.read_info(run[0]).model
    warm = dataclasses.replace(config, weights=os.path.join(run[0], runs.EXPORT_NAME))
    student, _ = runs.build_networks(warm, len(CLASSES))
    np.testing.assert_allclose(student(run[1]).numpy(), run[2], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bad_sources_are_named(run, tmp_path):
    with pytest.raises(runs.ModelError, match="missing_dir"):
        runs.load_keras(str(tmp_path / "missing_dir"))
    with pytest.raises(runs.ModelError, match="no config.json"):
        runs.read_info(str(tmp_path))
    with pytest.raises(runs.ModelError, match="best: no checkpoint"):
        runs.load_keras(run[0], checkpoint="best")
    with pytest.raises(runs.ModelError, match="--eval_weights"):
        runs.load_keras(run[0], checkpoint="latest", eval_weights="teacher")


def test_corrupt_keras_file_is_named_as_unreadable(tmp_path):
    broken = tmp_path / "model.keras"
    broken.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(runs.ModelError, match=f"{broken}: not a readable .keras model"):
        runs.load_keras(str(broken))


@pytest.mark.slow
def test_a_run_dir_warm_starts_from_its_model_keras(run):
    config = runs.read_info(run[0]).model
    warm = dataclasses.replace(config, weights=run[0], output_stride=8)  # dilation only
    runs.check_warm_start(warm, len(CLASSES))
    student, _ = runs.build_networks(dataclasses.replace(warm, output_stride=16), len(CLASSES))
    np.testing.assert_allclose(student(run[1]).numpy(), run[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"backbone": "resnet50"}, "resnet50, 3 classes"),
        ({"decoder_convs": 2}, "decoder 2 convs of 1x1"),
        ({"decoder_kernel_size": 3}, "decoder 1 convs of 3x3"),
        ({"low_level_stride": 2}, "low_level_stride 2"),
        ({"num_classes": 11}, "mobilenetv2, 11 classes"),
    ],
)
def test_warm_start_from_another_architecture_is_refused_naming_both(run, change, named):
    config = runs.read_info(run[0]).model
    change = dict(change)
    num_classes = change.pop("num_classes", len(CLASSES))
    for weights in (run[0], os.path.join(run[0], runs.EXPORT_NAME)):
        other = dataclasses.replace(config, weights=weights, **change)
        with pytest.raises(ConfigError) as refused:
            runs.check_warm_start(other, num_classes)
        message = str(refused.value)
        assert message.startswith(f"--weights: {weights} holds a model of mobilenetv2, 3 classes")
        _, _, built = message.partition("; this run builds ")
        assert named in built and "\n" not in message


def test_warm_start_needs_a_finished_run(tmp_path):
    config = ModelConfig(backbone="mobilenetv2", weights=str(tmp_path))
    with pytest.raises(ConfigError, match="not a model dir of scl_tf.train"):
        runs.check_warm_start(config, 3)
    (tmp_path / runs.CONFIG_NAME).write_text("{}")
    with pytest.raises(ConfigError, match=r"has not finished training \(no model.keras yet\)"):
        runs.check_warm_start(config, 3)


@pytest.mark.slow
def test_a_loose_keras_file_of_another_model_is_one_line(run, tmp_path):
    loose = tmp_path / "other.keras"
    os.link(os.path.join(run[0], runs.EXPORT_NAME), loose)
    config = ModelConfig(backbone="mobilenetv2", output_stride=16, weights=str(loose))
    runs.check_warm_start(config, 3)  # no run dir around it: checked when it loads
    with pytest.raises(ConfigError) as refused:
        runs.build_networks(config, 3)
    message = str(refused.value)
    assert message.startswith(f"--weights: {loose} does not fit a model of mobilenetv2")
    assert "\n" not in message


def test_a_model_trained_in_bfloat16_loads_in_float32_with_its_weights(tmp_path):
    """ONNX Runtime refuses bfloat16 convolutions: the loader rebuilds a mixed-precision model
    in float32 with the same (float32) weights."""
    import keras

    from scl_tf.models import build_model

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        trained = build_model("mobilenetv2", 3, output_stride=16, aspp_filters=8, decoder_filters=8)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    path = str(tmp_path / "model.keras")
    trained.save(path)
    loaded = runs.load_keras(path)
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    for expected, actual in zip(trained.weights, loaded.weights):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
    image = np.random.default_rng(0).uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
    reference = trained(image).numpy().astype(np.float32)
    result = loaded(image).numpy()
    assert result.dtype == np.float32
    assert (result.argmax(-1) == reference.argmax(-1)).mean() > 0.95  # bfloat16 rounding apart
    assert runs.as_float32(loaded) is loaded
