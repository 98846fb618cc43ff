"""tools/convert_wrn38_weights.py on a state dict named like the PyTorch WiderResNetA2."""

import numpy as np
import pytest
from torch_writer import save_zip

from scl_tf.models import build_model
from scl_tf.models.wider_resnet import build_wider_resnet38

# WiderResNetA2 (mapillary/inplace_abn, NVIDIA semantic-segmentation), structure [3, 3, 6, 3, 1,
# 1]: (module, blocks, channels, first block strided). Written out here independently of
# scl_tf.models.wider_resnet, as the reference the converter and the model are checked against.
REFERENCE_MODULES = (
    ("mod2", 3, (128, 128), False),
    ("mod3", 3, (256, 256), False),
    ("mod4", 6, (512, 512), True),
    ("mod5", 3, (512, 1024), True),
    ("mod6", 1, (512, 1024, 2048), True),
    ("mod7", 1, (1024, 2048, 4096), False),
)


@pytest.fixture(scope="module")
def converter(import_script):
    return import_script("convert_wrn38_weights", folder="tools")


def reference_shapes(bn_style="inplace_abn"):
    """{state-dict key: shape} of WiderResNetA2(classes=1000), PyTorch layout (OIHW kernels).

    bn_style: "inplace_abn" (`bn1.weight`, InPlaceABN) or "nvidia" (`bn1.0.weight`, the
    `bnrelu` Sequential of NVIDIA's copy, with `num_batches_tracked`).
    """
    shapes = {"mod1.conv1.weight": (64, 3, 3, 3)}

    def bn(path, channels):
        path = f"{path}.0" if bn_style == "nvidia" else path
        for param in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{path}.{param}"] = (channels,)
        if bn_style == "nvidia":
            shapes[f"{path}.num_batches_tracked"] = ()

    in_channels = 64
    for module, num_blocks, channels, strided in REFERENCE_MODULES:
        for block in range(1, num_blocks + 1):
            prefix = f"{module}.block{block}"
            bn(f"{prefix}.bn1", in_channels)
            kernels = (3, 3) if len(channels) == 2 else (1, 3, 1)
            previous = in_channels
            for i, (out_channels, kernel) in enumerate(zip(channels, kernels, strict=True), 1):
                if i > 1:
                    bn(f"{prefix}.convs.bn{i}", previous)
                shapes[f"{prefix}.convs.conv{i}.weight"] = (out_channels, previous, kernel, kernel)
                previous = out_channels
            if (strided and block == 1) or in_channels != channels[-1]:
                shapes[f"{prefix}.proj_conv.weight"] = (channels[-1], in_channels, 1, 1)
            in_channels = channels[-1]
    bn("bn_out", in_channels)
    shapes["classifier.fc.weight"] = (1000, in_channels)
    shapes["classifier.fc.bias"] = (1000,)
    return shapes


def random_state_dict(shapes, prefix=""):
    """{prefix + key: random float32 array} (int64 step counters for num_batches_tracked)."""
    rng = np.random.default_rng(0)
    return {
        prefix + key: rng.standard_normal(shape, dtype=np.float32)
        if not key.endswith("num_batches_tracked")
        else np.array(7, dtype=np.int64)
        for key, shape in shapes.items()
    }


def test_wrn38_parameter_count_matches_reference():
    """Our backbone's trainable parameters equal DeepWV3Plus's backbone (mod1..mod7)."""
    reference = sum(
        int(np.prod(shape))
        for key, shape in reference_shapes().items()
        if not key.startswith(("bn_out.", "classifier."))
        and not key.endswith(("running_mean", "running_var"))
    )
    backbone = build_wider_resnet38(output_stride=8, low_level_stride=2)
    ours = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    print(f"\nWRN38 backbone parameters: ours {ours:,} | DeepWV3Plus reference {reference:,}")
    assert ours == reference == 105_062_720


@pytest.fixture(scope="module")
def nvidia_state_dict():
    return random_state_dict(reference_shapes("nvidia"), prefix="module.")


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["npz", "pth.tar"])
def test_converts_nvidia_checkpoint_into_build_model(
    converter, nvidia_state_dict, file_format, tmp_path, capsys
):
    checkpoint = tmp_path / f"wider_resnet38.{file_format}"
    if file_format == "npz":
        np.savez(checkpoint, **nvidia_state_dict)
    else:  # torch.save's zip format, read without PyTorch
        save_zip(checkpoint, nvidia_state_dict)
    output = tmp_path / "wrn38_imagenet.h5"

    assert converter.main([str(checkpoint), str(output)]) == 0
    head_keys = [
        k
        for k in nvidia_state_dict
        if k.startswith(("module.bn_out", "module.class")) or k.endswith("num_batches_tracked")
    ]
    assert f"skipped {len(head_keys)} ImageNet-head tensors" in capsys.readouterr().out
    model = build_model("wrn38", 19, output_stride=16, weights=output)

    backbone = model.get_layer("backbone")
    checked = 0
    for key, value in nvidia_state_dict.items():
        if key in head_keys:
            continue
        module_path, _, param = converter.normalize_key(key).rpartition(".")
        layer = backbone.get_layer(module_path.replace(".", "_"))
        if value.ndim == 4:
            np.testing.assert_array_equal(layer.kernel.numpy(), value.transpose(2, 3, 1, 0))
        else:
            index = ("weight", "bias", "running_mean", "running_var").index(param)
            np.testing.assert_array_equal(layer.get_weights()[index], value)
        checked += 1
    assert checked == len(backbone.weights)


@pytest.mark.slow
def test_reports_every_unmatched_unset_and_misshaped_tensor(converter, nvidia_state_dict):
    state_dict = dict(nvidia_state_dict)
    del state_dict["module.mod3.block2.convs.conv1.weight"]
    state_dict["module.mod4.block1.convs.conv1.weight"] = np.zeros((512, 256, 3, 1), np.float32)
    state_dict["module.mod8.block1.bn1.0.weight"] = np.zeros(4, np.float32)
    state_dict["module.mod2.block1.bn1.0.scale"] = np.zeros(64, np.float32)

    with pytest.raises(ValueError) as info:
        converter.convert_state_dict(state_dict)
    message = str(info.value)
    assert "mod3_block2_convs_conv1/kernel" in message  # unset
    assert "mod4.block1.convs.conv1.weight: (512, 256, 3, 1)" in message  # misshaped
    assert "mod8.block1.bn1.0.weight" in message and "mod2.block1.bn1.0.scale" in message


def test_normalize_key_handles_all_layouts(converter):
    expected = "mod2.block1.convs.bn2.weight"
    nvidia, old_abn = "module.mod2.block1.convs.bn2.0.weight", "mod2.block1.convs.bn2.bn.weight"
    for key in (expected, nvidia, old_abn):
        assert converter.normalize_key(key) == expected
    assert converter.normalize_key("module.mod1.conv1.weight") == "mod1.conv1.weight"


@pytest.mark.parametrize("name", ["missing.pth", "missing.npz"])
def test_missing_checkpoint_is_named(converter, name, tmp_path):
    with pytest.raises(FileNotFoundError, match=name):
        converter.load_state_dict(tmp_path / name)


def test_unreadable_checkpoint_is_one_line_naming_it(converter, tmp_path, capsys):
    checkpoint = tmp_path / "wider_resnet38.pth.tar"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as info:
        converter.main([str(checkpoint), str(tmp_path / "out.h5")])
    message = str(info.value)
    assert message.startswith(f"error: {checkpoint}: not a readable") and "\n" not in message
    assert not (tmp_path / "out.h5").exists()
