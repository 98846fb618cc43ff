"""Weight files accepted by `build_model(weights=...)`, and the writer for backbone files.

Two kinds, told apart by the file name:

- `*.weights.h5` or `*.keras`: the full segmentation model, as written by `model.save_weights`
  or `model.save` (Keras 3 formats; variables are matched by layer order, so the architecture
  must be the same). A run's `MODEL_DIR/model.keras` is of this kind: it warm-starts a new run.
- any other `*.h5`: ImageNet backbone weights in the layout of keras.applications' ImageNet
  files (legacy Keras HDF5, one group per layer name), loaded into the backbone by layer name;
  the head stays randomly initialised. keras.applications' own `*_notop.h5` files for ResNet50,
  ResNet101 and MobileNetV2 are of this kind, and so is the output of
  `tools/convert_wrn38_weights.py`.
"""

import os

import h5py

# Keras 3 reads the keras.applications layout (`load_weights(..., by_name=True)`) but has no
# public writer for it; this is the function that wrote those files.
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

FULL_MODEL_SUFFIXES = (".weights.h5", ".keras")
BACKBONE_SUFFIX = ".h5"


def save_backbone_weights(backbone, path):
    """Writes `backbone`'s weights in keras.applications' layout (see module docstring)."""
    path = os.fspath(path)
    if not path.endswith(BACKBONE_SUFFIX) or path.endswith(FULL_MODEL_SUFFIXES):
        raise ValueError(
            f"backbone weights path {path!r} must end in '{BACKBONE_SUFFIX}' but not in "
            f"'{FULL_MODEL_SUFFIXES[0]}', which build_model reads as a full model"
        )
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, backbone)


def load_backbone_weights(backbone, path):
    """Loads keras.applications-layout weights into `backbone` by layer name.

    Layers of the file that the backbone lacks are ignored (e.g. MobileNetV2's `Conv_1`); a
    backbone layer with weights that the file lacks, or a shape mismatch, is an error.
    """
    with h5py.File(path, "r") as f:
        # A legacy full-model save nests the weights under "model_weights".
        group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        saved = set(group.keys())
    missing = [layer.name for layer in backbone.layers if layer.weights and layer.name not in saved]
    if missing:
        raise ValueError(
            f"weights file {path} has no weights for {len(missing)} backbone layers: "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    backbone.load_weights(path, by_name=True)


def check_weights_path(path):
    """Returns `path` as a string if it is an existing weights file of a known kind."""
    path = os.fspath(path)
    if not path.endswith((BACKBONE_SUFFIX, *FULL_MODEL_SUFFIXES)):
        raise ValueError(
            f"build_model: weights={path!r} must be a full model "
            f"('{FULL_MODEL_SUFFIXES[0]}' or '{FULL_MODEL_SUFFIXES[1]}') or ImageNet backbone "
            f"weights '{BACKBONE_SUFFIX}' in keras.applications' layout"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"build_model: weights file not found: {path}")
    return path


def load_weights(model, path):
    """Loads `path` into a model from `build_model`: full model or backbone, by file name."""
    path = check_weights_path(path)
    if not path.endswith(FULL_MODEL_SUFFIXES):
        load_backbone_weights(model.get_layer("backbone"), path)
        return
    try:
        model.load_weights(path)
    except ValueError as err:
        raise ValueError(
            f"weights file {path} does not fit this model (a full-model file must come from "
            f"model.save_weights or model.save of the same architecture): {err}"
        ) from err
