"""Reading images and label maps, with errors that name the file.

Inside tf.data (`read_image`, `read_label_values`, `to_train_ids`): TensorFlow's own decoders
reject a corrupt file without saying which one; the checks here run first and put the path in
the message: a PNG must end with its IEND chunk (a truncated copy does not), and every label
value must be one the dataset defines. `load_image` and `load_label_values` run the same
functions on one file outside tf.data, so that the checks (`scl_tf.data.check`, the preflight)
decode exactly as training does, and `error_text` turns a TensorFlow error into its one line.
Outside training (`decode_label_file`, `train_ids_of`): label PNGs for scoring and indexing,
decoded with Pillow.
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf
from PIL import Image

from scl_tf.data.datasets import DatasetError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _read_checked(path: tf.Tensor) -> tf.Tensor:
    """The file's bytes; fails naming `path` if it is a PNG without its end chunk."""
    data = tf.io.read_file(path)
    size = tf.strings.length(data)
    is_png = tf.strings.substr(data, 0, len(PNG_SIGNATURE)) == PNG_SIGNATURE
    tail = tf.strings.substr(data, tf.maximum(size - len(PNG_END), 0), len(PNG_END))
    complete = tf.logical_or(tf.logical_not(is_png), tail == PNG_END)
    check = tf.debugging.Assert(
        complete,
        [
            "Truncated or corrupt PNG file:",
            path,
            "(it does not end with its IEND chunk: cut short, or bytes after its end)",
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(data)


def read_image(path: tf.Tensor) -> tf.Tensor:
    """PNG or JPEG file -> uint8 [H, W, 3] RGB."""
    image = tf.io.decode_image(_read_checked(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def read_label_values(path: tf.Tensor) -> tf.Tensor:
    """8-bit label PNG -> uint8 [H, W] stored values (not yet train ids)."""
    return tf.io.decode_png(_read_checked(path), channels=1)[..., 0]


def to_train_ids(values: tf.Tensor, value_to_train_id: np.ndarray, path: tf.Tensor) -> tf.Tensor:
    """Stored label values -> int32 train ids (255 = ignore).

    Args:
      values: uint8 [...] stored values.
      value_to_train_id: int32 [256] table, negative for values the dataset does not define.
      path: the label file, named in the error if `values` holds an undefined value.
    """
    train_ids = tf.gather(tf.constant(value_to_train_id, tf.int32), tf.cast(values, tf.int32))
    undefined = train_ids < 0
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(undefined)),
        [
            "Label file",
            path,
            "holds values the dataset does not define:",
            tf.unique(tf.boolean_mask(values, undefined))[0],
        ],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        return tf.identity(train_ids)


# Lines of a TensorFlow error message that are not its reason: the graph's and tf.data's
# wrappers, and the Python frames where the failing op was defined.
_NOISE_LINE = re.compile(r"^(\s|Graph execution error|Detected at node)")
_NOISE = re.compile(r"\{\{[^}]*\}\}\s*|.*Iterator::[\w:]+: |\s*\[Op:[^\]]*\].*$|\s*\[\[.*$")


def error_text(error: tf.errors.OpError) -> str:
    """The reason of a TensorFlow error in one line, without TensorFlow's wrapping: a decoder's
    ("Invalid PNG data, size 254947") or an scl_tf.data check's, whose parts (the file among
    them) `tf.debugging.Assert` prints in brackets."""
    lines = [line for line in error.message.splitlines() if line and not _NOISE_LINE.match(line)]
    text = _NOISE.sub("", lines[0] if lines else error.message).strip()
    _, asserted, parts = text.partition("assertion failed:")
    if asserted:
        text = " ".join(re.findall(r"\[(.*?)\]", parts))
    return text or type(error).__name__


_PATH = tf.TensorSpec([], tf.string)
# Traced once each, so that checking a file runs the very graph a training input runs.
_read_image = tf.function(read_image, input_signature=[_PATH])
_read_label_values = tf.function(read_label_values, input_signature=[_PATH])


def _load(function, path: str, what: str) -> np.ndarray:
    try:
        return function(tf.constant(os.fsencode(path))).numpy()
    except tf.errors.OpError as error:
        reason = error_text(error)
        raise DatasetError(
            reason if path in reason else f"unreadable {what} {path}: {reason}"
        ) from None


def load_image(path: str, what: str = "image") -> np.ndarray:
    """One image file decoded as the training input decodes it (`read_image`): uint8 [H, W, 3].

    Raises:
      DatasetError: TensorFlow cannot decode it (or it fails the PNG end check); names the file.
    """
    return _load(_read_image, path, what)


def load_label_values(path: str) -> np.ndarray:
    """One label file decoded as the training input decodes it (`read_label_values`): its
    stored values, uint8 [H, W].

    Raises:
      DatasetError: TensorFlow cannot decode it (or it fails the PNG end check); names the file.
    """
    return _load(_read_label_values, path, "label")


def decode_label_file(path: str, what: str = "label") -> np.ndarray:
    """An 8-bit single-channel PNG (label map or prediction), decoded in full: uint8 [H, W].

    Raises:
      DatasetError: unreadable, truncated, or not 8-bit single-channel; names `what` and file.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise DatasetError(
                    f"{what} {path} has mode {image.mode!r}; expected an 8-bit single-channel PNG"
                )
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"unreadable {what} {path}: {error}") from None


def train_ids_of(
    values: np.ndarray, table: np.ndarray, path: str, what: str = "label"
) -> np.ndarray:
    """int32 [H, W]: stored values uint8 [H, W] mapped through `table` (int32 [256], negative
    for values that are not labels).

    Raises:
      DatasetError: `values` holds values the table marks invalid; names `what` and `path`.
    """
    mapped = np.asarray(table, np.int32)[values]
    if (mapped < 0).any():
        raise DatasetError(
            f"{what} {path} holds values the dataset does not define: "
            f"{np.unique(values[mapped < 0]).tolist()}"
        )
    return mapped
