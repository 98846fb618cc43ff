"""Reading images and label maps, with errors that name the file.

Inside tf.data (`read_image`, `read_label_values`, `to_train_ids`): TensorFlow's own decoders
reject a corrupt file without saying which one; the checks here run first and put the path in
the message: a PNG must end with its IEND chunk (a truncated copy does not), and every label
value must be one the dataset defines. Outside it (`decode_label_file`, `train_ids_of`): label
PNGs for scoring, indexing and checking, decoded in full with Pillow.
"""

from __future__ import annotations

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
    check = tf.debugging.Assert(complete, ["Truncated or corrupt PNG file:", path])
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
