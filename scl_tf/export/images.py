"""Image files for exported models: reading frames, writing pictures (NumPy and Pillow, no TF).

Overlays are drawn with scl_tf.eval.overlay (also TensorFlow-free).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError


def read_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an image file, bilinearly resized to `size` (H, W) if given.

    Raises:
      FileNotFoundError / ValueError: naming `path`, when it is missing or not an image.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(image, np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from None


def write_image(path: str, array: np.ndarray) -> None:
    """Writes uint8 [H, W, 3] as an image file (format from the suffix), making its folder."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    Image.fromarray(array).save(path)


def class_shares(labels: np.ndarray, class_names, top: int = 3) -> str:
    """The `top` most frequent classes of int train ids [H, W], e.g. "road 31%, sky 20%"."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names))[: len(class_names)]
    order = np.argsort(-counts, kind="stable")[:top]
    return ", ".join(
        f"{class_names[i]} {100 * counts[i] / labels.size:.0f}%" for i in order if counts[i]
    )
