"""Converts an ImageNet WRN38-A2 checkpoint from PyTorch into scl_tf's WRN38 backbone.

    python tools/convert_wrn38_weights.py wider_resnet38.pth.tar wrn38_imagenet.h5

then `build_model("wrn38", 19, weights="wrn38_imagenet.h5")` (or `--weights=wrn38_imagenet.h5`).

Input: a state dict in the layout of mapillary/inplace_abn's `WiderResNetA2` as loaded by
NVIDIA's DeepWV3Plus (Zhu et al., 2019), either `.npz`
(`np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})`) or a `torch.save` file
(`.pth` / `.pt` / `.tar`, legacy or zip format), read without PyTorch
(`scl_tf.models.torch_file`); a checkpoint dict with a "state_dict" entry is unwrapped.

Names are mapped one by one: a `module.` prefix (DataParallel) is stripped; BN wrappers are
collapsed (`bn1.0.weight` from NVIDIA's `bnrelu` Sequential and `bn1.bn.weight` from
inplace_abn's old `ABN` Sequential both become `bn1.weight`, InPlaceABN's own layout); the
module path with "." -> "_" is the Keras layer name (`mod2.block1.convs.conv1` ->
`mod2_block1_convs_conv1`). Layouts as in `scl_tf.models.from_torch`; BN statistics are copied
as they are (as DeepWV3Plus does when it loads them into `nn.BatchNorm2d`). The ImageNet head
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

import numpy as np

from scl_tf.models.from_torch import assign_state_dict
from scl_tf.models.torch_file import read_state_dict
from scl_tf.models.weights import save_backbone_weights
from scl_tf.models.wider_resnet import build_wider_resnet38

# Parts of the ImageNet classifier that DeepWV3Plus (and so our backbone) does not use.
SKIPPED_PREFIXES = ("bn_out.", "classifier.")
SKIPPED_SUFFIXES = (".num_batches_tracked",)
_BN_WRAPPER = re.compile(r"\.(bn\d+|bn_out)\.(?:0|bn)\.")


def load_state_dict(path):
    """Reads {name: np.ndarray} from an `.npz` or a `torch.save` file."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    if not path.endswith((".pth", ".pt", ".tar")):
        raise ValueError(f"checkpoint {path}: expected .npz, .pth, .pt or .tar")
    return read_state_dict(path)


def normalize_key(key):
    """`module.mod2.block1.bn1.0.weight` -> `mod2.block1.bn1.weight`."""
    key = key.removeprefix("module.")
    return _BN_WRAPPER.sub(r".\1.", "." + key)[1:]


def _locate(key):
    """State-dict key -> (Keras layer name, parameter name)."""
    module_path, _, param = normalize_key(key).rpartition(".")
    return module_path.replace(".", "_"), param


def _skipped(key):
    name = normalize_key(key)
    return name.startswith(SKIPPED_PREFIXES) or name.endswith(SKIPPED_SUFFIXES)


def convert_state_dict(state_dict):
    """Builds the WRN38 backbone with the weights of a PyTorch WiderResNetA2 state dict.

    Returns:
        (backbone `keras.Model`, sorted list of skipped ImageNet-head keys).

    Raises:
        ValueError listing every unmatched key, unset weight and shape mismatch.
    """
    # The weights do not depend on the output stride; the low-level stride only picks an output.
    backbone = build_wider_resnet38(output_stride=8, low_level_stride=2)
    skipped = assign_state_dict(backbone, state_dict, _locate, _skipped, what="WRN38 conversion")
    return backbone, skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="PyTorch WiderResNetA2 state dict (.npz/.pth/.tar)")
    parser.add_argument("output", help="backbone weights to write, *.h5 (not *.weights.h5)")
    args = parser.parse_args(argv)
    try:
        backbone, skipped = convert_state_dict(load_state_dict(args.checkpoint))
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    save_backbone_weights(backbone, args.output)
    print(f"converted {len(backbone.weights)} tensors into {args.output}")
    if skipped:
        print(f"skipped {len(skipped)} ImageNet-head tensors: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
