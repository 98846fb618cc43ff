"""The frames an int8 model is calibrated on: found in a folder or glob, read one at a time
(NumPy and Pillow, no TF).

Unlabeled frames do: calibration only records the range of every activation. The frames are
read with the same reader as the parity frames (`images.read_image`), resized to the model's
fixed input size or kept at their own size for a model that takes any. `CalibrationFrames` is
the reader both quantizers take: ONNX Runtime's calibrator and the TFLite converter's
representative dataset iterate it (again for every pass), one frame in memory at a time.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterator

import numpy as np

from scl_tf.config import ConfigError
from scl_tf.data.datasets import IMAGE_EXTENSIONS, list_images
from scl_tf.export.images import read_image


def _find(pattern: str) -> list[str]:
    """Sorted image files of a folder (recursively) or a glob pattern (`**` recurses).

    Raises:
      ConfigError: naming --calibration, when the folder is missing or nothing is found.
    """
    if os.path.isdir(pattern):
        files = list_images(pattern)
        if not files:
            raise ConfigError(f"--calibration: no PNG or JPEG images in {pattern}")
        return files
    if not any(char in pattern for char in "*?["):  # not a glob pattern
        raise ConfigError(f"--calibration: no such folder: {pattern}")
    files = sorted(
        path
        for path in glob.glob(pattern, recursive=True)
        if os.path.isfile(path) and os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ConfigError(f"--calibration: no PNG or JPEG images match {pattern!r}")
    return files


def spread(files: list[str], count: int) -> list[str]:
    """`count` of `files` (all if fewer) at evenly spaced positions, the first included, so
    that frames of every sequence of a sorted set are used."""
    if count >= len(files):
        return list(files)
    return [files[index * len(files) // count] for index in range(count)]


def calibration_files(pattern: str, count: int) -> list[str]:
    """The calibration frames: `count` images of a folder or glob, spread over the sorted set.

    Raises:
      ConfigError: naming --calibration, when the folder is missing or holds no images.
    """
    return spread(_find(pattern), count)


def frames(files: list[str], size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    """float32 [1, H, W, 3] RGB in [0, 255] of each file, read when asked for.

    Args:
      size: (H, W) to resize every frame to; None keeps each frame's own size.

    Raises:
      ConfigError: naming --calibration and the file, when an image cannot be read.
    """
    for path in files:
        try:
            image = read_image(path, size)
        except (FileNotFoundError, ValueError) as error:  # the message names the file
            raise ConfigError(f"--calibration: {error}") from None
        yield image.astype(np.float32)[None]


@dataclasses.dataclass(frozen=True)
class CalibrationFrames:
    """The calibration set: `files` read at `size` each time it is iterated.

    Iterating yields float32 [1, H, W, 3] RGB in [0, 255] (see `frames`); `len` is the number
    of files. Reading again instead of keeping the frames bounds memory by one frame, and lets
    a quantizer make several passes (a calibration, then a sensitivity sweep).

    Attributes:
      files: image paths (see `calibration_files`).
      size: (H, W) to resize every frame to; None keeps each frame's own size.
    """

    files: tuple[str, ...]
    size: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return frames(list(self.files), self.size)

    def __len__(self) -> int:
        return len(self.files)


def calibration_frames(pattern: str, count: int, size: tuple[int, int] | None) -> CalibrationFrames:
    """The calibration set of --calibration, --calibration_count at `size`.

    Raises:
      ConfigError: naming --calibration, when the folder is missing or holds no images.
    """
    return CalibrationFrames(tuple(calibration_files(pattern, count)), size)
