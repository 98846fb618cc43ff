"""Loading every model kind into one predictor, and writing predictions as files."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from scl_tf import config as config_lib
from scl_tf import runs
from scl_tf.data import labels as labels_lib
from scl_tf.eval import inference, overlay, predictors
from scl_tf.predict import list_inputs, output_paths, predict_files

NUM_CLASSES = 19
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_model(num_classes=NUM_CLASSES, seed=0):
    """1x1 convolutions: float RGB [B, H, W, 3] in [0, 255] -> logits, varied per pixel."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Rescaling(1 / 64.0),
            keras.layers.Conv2D(8, 1, activation="tanh"),
            keras.layers.Conv2D(num_classes, 1),
        ]
    )


def random_images(batch=2, height=9, width=14, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype(np.float32)


def reference(model, images):
    return tf.nn.softmax(model(images)).numpy()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_keras_file(model, tmp_path):
    path = str(tmp_path / "m.keras")
    model.save(path)
    predictor = predictors.load_predictor(path)
    images = random_images()
    assert predictor.kind == "keras" and predictor.input_size is None
    np.testing.assert_allclose(predictor(images), reference(model, images), atol=1e-6)


def cityscapes_export_info():
    from scl_tf.export import metadata

    return metadata.make_info(
        "cityscapes", "mobilenetv2", 16, labels_lib.cityscapes().class_names, "ema"
    )


def test_saved_model_of_keras_export(model, tmp_path):
    path = tmp_path / "saved"
    model.export(str(path), verbose=False)  # one output, "output_0": taken as logits
    predictor = predictors.load_predictor(str(path))
    images = random_images()
    assert predictor.kind == "saved_model" and predictor.labels is None
    np.testing.assert_allclose(predictor(images), reference(model, images), atol=1e-6)
    # With the metadata of export/to_saved_model.py, the classes come with the model.
    (path / "assets.extra").mkdir()
    (path / runs.SAVED_MODEL_INFO).write_text(json.dumps(cityscapes_export_info().to_dict()))
    labels = predictors.load_predictor(str(path)).labels
    assert labels.name == "cityscapes" and labels.train_id_to_value[0] == 7


def test_saved_model_with_uint8_input_and_named_outputs(model, tmp_path):
    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def serve(images):
        probabilities = tf.nn.softmax(model(tf.cast(images, tf.float32)))
        return {"labels": tf.argmax(probabilities, -1), "probabilities": probabilities}

    path = str(tmp_path / "uint8")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    images = np.round(random_images())
    np.testing.assert_allclose(
        predictors.load_predictor(path)(images + 0.3), reference(model, images), atol=1e-6
    )


def test_onnx_dynamic_and_fixed_size(model, tmp_path):
    import onnx
    import tf2onnx

    dynamic, fixed = str(tmp_path / "dynamic.onnx"), str(tmp_path / "fixed.onnx")
    for path, shape in ((dynamic, [None, None, None, 3]), (fixed, [1, 8, 12, 3])):
        signature = [tf.TensorSpec(shape, tf.float32, name="images")]
        graph = tf.function(lambda images: {"logits": model(images)}, input_signature=signature)
        tf2onnx.convert.from_function(graph, signature, opset=17, output_path=path)
    with_metadata = onnx.load(dynamic)
    from scl_tf.export import metadata

    for key, value in metadata.to_onnx_props(cityscapes_export_info()).items():
        with_metadata.metadata_props.add(key=key, value=value)
    onnx.save(with_metadata, dynamic)
    predictor = predictors.load_predictor(dynamic)
    images = random_images()
    assert predictor.kind == "onnx" and predictor.input_size is None
    assert predictor.labels.class_names == labels_lib.cityscapes().class_names
    np.testing.assert_allclose(predictor(images), reference(model, images), atol=1e-5)

    fixed_predictor = predictors.load_predictor(fixed)
    assert fixed_predictor.input_size == (8, 12)
    small = random_images(batch=1, height=5, width=7)  # padded to 8x12, output cropped
    np.testing.assert_allclose(fixed_predictor(small), reference(model, small), atol=1e-5)
    with pytest.raises(runs.ModelError, match="--tile=8x12"):
        fixed_predictor(random_images(batch=1, height=9, width=7))
    config = predictors.with_model_tiles(
        config_lib.InferenceConfig(scales=(1.0, 1.5)), fixed_predictor
    )
    assert config.tile == (8, 12)
    image = random_images(batch=1, height=20, width=30)[0]
    np.testing.assert_allclose(
        inference.predict_probabilities(fixed_predictor, image, config),
        inference.predict_probabilities(predictor, image, config.__class__(scales=(1.0, 1.5))),
        atol=1e-5,
    )


def test_choose_output_by_name():
    assert predictors.choose_output(["labels", "logits", "probabilities"], "m") == ("logits", True)
    assert predictors.choose_output(["label_ids", "probabilities"], "m") == ("probabilities", False)
    assert predictors.choose_output(["output_0"], "m") == ("output_0", True)
    with pytest.raises(runs.ModelError, match="m: no output named like"):
        predictors.choose_output(["labels", "label_ids"], "m")


def test_unknown_sources_are_named(tmp_path):
    with pytest.raises(runs.ModelError, match="not a model dir"):
        predictors.load_predictor(str(tmp_path))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(runs.ModelError, match="broken.onnx: ONNX Runtime cannot load"):
        predictors.load_predictor(str(broken))


def write_images(folder, sizes=((10, 16), (7, 9))):
    """city/a_leftImg8bit.png, b.jpg and corrupt.png (truncated) under `folder`."""
    rng = np.random.default_rng(3)
    (folder / "city").mkdir(parents=True)
    first = folder / "city" / "a_leftImg8bit.png"
    Image.fromarray(rng.integers(0, 256, sizes[0] + (3,), np.uint8)).save(first)
    Image.fromarray(rng.integers(0, 256, sizes[1] + (3,), np.uint8)).save(folder / "b.jpg")
    (folder / "corrupt.png").write_bytes(first.read_bytes()[:60])


def test_input_listing_and_output_names(tmp_path):
    write_images(tmp_path / "in")
    paths, base = list_inputs(str(tmp_path / "in"))
    assert [os.path.relpath(p, base) for p in paths] == [
        "b.jpg",
        "city/a_leftImg8bit.png",
        "corrupt.png",
    ]
    assert output_paths(paths, base, "out") == [
        "out/b.png",
        "out/city/a_leftImg8bit.png",
        "out/corrupt.png",
    ]
    globbed, glob_base = list_inputs(str(tmp_path / "in" / "**" / "*_leftImg8bit.png"))
    assert output_paths(globbed, glob_base, "out") == ["out/a_leftImg8bit.png"]
    (tmp_path / "in" / "b.png").write_bytes(b"")
    with pytest.raises(config_lib.ConfigError, match="b.jpg and .*b.png -> out/b.png"):
        output_paths(*list_inputs(str(tmp_path / "in")), "out")
    with pytest.raises(config_lib.ConfigError, match="--input: no images"):
        list_inputs(str(tmp_path / "nothing*.png"))


@pytest.mark.parametrize("fmt", overlay.FORMATS)
def test_predict_files_writes_each_format_and_skips_unreadable(model, tmp_path, fmt):
    write_images(tmp_path / "in")
    paths, base = list_inputs(str(tmp_path / "in"))
    outputs = output_paths(paths, base, str(tmp_path / "out"))
    spec = labels_lib.cityscapes()
    result = predict_files(
        keras_predictor(model),
        paths,
        outputs,
        config_lib.InferenceConfig(),
        fmt,
        spec,
        verbose=False,
    )
    assert [path for path, _ in result.skipped] == [str(tmp_path / "in" / "corrupt.png")]
    assert result.written == outputs[:2]
    written = np.asarray(Image.open(outputs[1]))  # city/a_leftImg8bit.png, 10x16
    train_ids = reference(model, np.asarray(Image.open(paths[1]), np.float32)[None])[0].argmax(-1)
    if fmt == "labelIds":
        np.testing.assert_array_equal(written, spec.train_id_to_value[train_ids])
    elif fmt == "trainIds":
        np.testing.assert_array_equal(written, train_ids)
    elif fmt == "color":
        np.testing.assert_array_equal(written, spec.palette[train_ids])
    else:
        assert written.shape[0] > 10 and written.shape[1:] == (16, 3)


def keras_predictor(model):
    return predictors.keras_predictor(model, "test model")


def test_label_values_of_each_dataset():
    np.testing.assert_array_equal(overlay.label_values(labels_lib.camvid()), np.arange(11))
    folder = labels_lib.folder(2, ignore_value=0, id_mapping={1: 0, 2: 1, 3: 1})
    np.testing.assert_array_equal(overlay.label_values(folder), [1, 2])
    assert overlay.label_values(labels_lib.cityscapes("trainIds"))[0] == 7  # road


def fake_run(root, data_dir, model):
    """A model dir as scl_tf.train leaves it: config.json and model.keras."""
    data = config_lib.DataConfig(dataset="camvid", data_dir=str(data_dir))
    runs.write_config(
        config_lib.Config(data=data, model_dir=str(root)), 11, labels_lib.CAMVID_CLASS_NAMES
    )
    model.save(str(root / runs.EXPORT_NAME))
    return root


@pytest.mark.slow
def test_command_line_overlays_from_a_model_dir(tmp_path, camvid_mini_dir):
    run = fake_run(tmp_path / "run", camvid_mini_dir, tiny_model(11))
    write_images(tmp_path / "in")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scl_tf.predict",
            f"--model={run}",
            f"--input={tmp_path / 'in'}",
            f"--output={tmp_path / 'out'}",
            "--format=overlay",
            "--scales=0.5,1",
            "--flip",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Wrote 2 overlay PNG(s)" in result.stdout
    assert "skipped unreadable image" in result.stderr and "corrupt.png" in result.stderr
    assert "skipped 1 of 3 image(s)" in result.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["b.png", "city"]
