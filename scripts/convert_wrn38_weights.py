"""Converts an ImageNet WRN38-A2 checkpoint from PyTorch into scl_tf's WRN38 backbone.

    python scripts/convert_wrn38_weights.py wider_resnet38.pth.tar wrn38_imagenet.h5

then `build_model("wrn38", 19, weights="wrn38_imagenet.h5")`.

Input: a state dict in the layout of mapillary/inplace_abn's `WiderResNetA2` as loaded by
NVIDIA's DeepWV3Plus (Zhu et al., 2019), either
- `.npz` (`np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})`), or
- `.pth` / `.pt` / `.tar` via `torch.load` when PyTorch is installed (not a dependency); a
  checkpoint dict with a "state_dict" entry is unwrapped.

Names are mapped one by one: a `module.` prefix (DataParallel) is stripped; BN wrappers are
collapsed (`bn1.0.weight` from NVIDIA's `bnrelu` Sequential and `bn1.bn.weight` from
inplace_abn's old `ABN` Sequential both become `bn1.weight`, InPlaceABN's own layout); the
module path with "." -> "_" is the Keras layer name (`mod2.block1.convs.conv1` ->
`mod2_block1_convs_conv1`). Convolution kernels go from OIHW to HWIO; BN `weight`, `bias`,
`running_mean`, `running_var` become gamma, beta, moving mean and moving variance, copied as
they are (as DeepWV3Plus does when it loads them into `nn.BatchNorm2d`). The ImageNet head
(`bn_out.*`, `classifier.*`) and `num_batches_tracked` counters are skipped and listed; any
other key that matches no weight, any weight left unset and any shape mismatch stop the
conversion with the full list.

Output: the backbone's weights in keras.applications' HDF5 layout (`*.h5`, not
`*.weights.h5`), which `build_model("wrn38", ..., weights=path)` loads into the nested
"backbone" model by layer name, leaving the DeepLabV3+ head random.
"""

import argparse
import os
import re
import sys

import keras
import numpy as np

from scl_tf.models.weights import save_backbone_weights
from scl_tf.models.wider_resnet import build_wider_resnet38

# Parts of the ImageNet classifier that DeepWV3Plus (and so our backbone) does not use.
SKIPPED_PREFIXES = ("bn_out.", "classifier.")
SKIPPED_SUFFIXES = (".num_batches_tracked",)
_BN_WRAPPER = re.compile(r"\.(bn\d+|bn_out)\.(?:0|bn)\.")
_BN_PARAMS = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}


def load_state_dict(path):
    """Reads {name: np.ndarray} from an `.npz` or (with torch installed) a PyTorch file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    if not path.endswith((".pth", ".pt", ".tar")):
        raise ValueError(f"checkpoint {path}: expected .npz, .pth, .pt or .tar")
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"reading {path} needs PyTorch; install it, or save the state dict as .npz "
            "(see this script's docstring)"
        ) from err
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state_dict = checkpoint.get("state_dict", checkpoint)
    return {name: tensor.detach().cpu().numpy() for name, tensor in state_dict.items()}


def normalize_key(key):
    """`module.mod2.block1.bn1.0.weight` -> `mod2.block1.bn1.weight`."""
    key = key.removeprefix("module.")
    return _BN_WRAPPER.sub(r".\1.", "." + key)[1:]


def _target(backbone, key, value):
    """The (variable, value in Keras layout) that `key` maps to, or None if none."""
    module_path, _, param = key.rpartition(".")
    try:
        layer = backbone.get_layer(module_path.replace(".", "_"))
    except ValueError:
        return None
    if isinstance(layer, keras.layers.Conv2D) and param == "weight" and value.ndim == 4:
        return layer.kernel, np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
    if isinstance(layer, keras.layers.BatchNormalization) and param in _BN_PARAMS:
        bn_variables = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
        return bn_variables[_BN_PARAMS[param]], value
    return None


def convert_state_dict(state_dict):
    """Builds the WRN38 backbone with the weights of a PyTorch WiderResNetA2 state dict.

    Returns:
        (backbone `keras.Model`, sorted list of skipped ImageNet-head keys).

    Raises:
        ValueError listing every unmatched key, unset weight and shape mismatch.
    """
    # The weights do not depend on the output stride; the low-level stride only picks an output.
    backbone = build_wider_resnet38(output_stride=8, low_level_stride=2)
    skipped, unmatched, mismatched, assigned = [], [], [], {}
    for key, value in state_dict.items():
        name = normalize_key(key)
        if name.startswith(SKIPPED_PREFIXES) or name.endswith(SKIPPED_SUFFIXES):
            skipped.append(key)
            continue
        value = np.asarray(value, dtype="float32")
        target = _target(backbone, name, value)
        if target is None:
            unmatched.append(key)
            continue
        variable, converted = target
        if tuple(variable.shape) != converted.shape:
            mismatched.append(
                f"{key}: {value.shape} (as Keras {converted.shape}) for {variable.path} "
                f"{tuple(variable.shape)}"
            )
        elif variable.path in assigned:
            unmatched.append(f"{key} (duplicate of {assigned[variable.path]})")
        else:
            variable.assign(converted)
            assigned[variable.path] = key
    unset = [v.path for v in backbone.weights if v.path not in assigned]
    problems = [
        (f"{len(unmatched)} checkpoint tensors match no backbone weight", unmatched),
        (f"{len(unset)} backbone weights have no checkpoint tensor", unset),
        (f"{len(mismatched)} shape mismatches", mismatched),
    ]
    if unmatched or unset or mismatched:
        report = "\n".join(
            f"{title}:\n  " + "\n  ".join(items) for title, items in problems if items
        )
        raise ValueError(f"WRN38 conversion failed.\n{report}")
    return backbone, sorted(skipped)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="PyTorch WiderResNetA2 state dict (.npz/.pth/.tar)")
    parser.add_argument("output", help="backbone weights to write, *.h5 (not *.weights.h5)")
    args = parser.parse_args(argv)
    backbone, skipped = convert_state_dict(load_state_dict(args.checkpoint))
    save_backbone_weights(backbone, args.output)
    print(f"converted {len(backbone.weights)} tensors into {args.output}")
    if skipped:
        print(f"skipped {len(skipped)} ImageNet-head tensors: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
