"""Finding the files of a dataset: labeled pairs per split, and unlabeled images.

Three layouts: Cityscapes (`leftImg8bit/` + `gtFine/`), CamVid in the SegNet layout
(`train/` + `trainannot/`, ...), and a generic folder of images with a folder of masks.
Everything here is plain Python on file names and image headers; decoding happens in the
tf.data pipeline. Problems are collected and raised together in one `DatasetError` that names
every file at fault.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import stat

from PIL import Image

from scl_tf.config import DataConfig
from scl_tf.data import labels as labels_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LABEL_MODES = ("L",)  # 8-bit single-channel class maps
MAX_LISTED_PROBLEMS = 20
CITYSCAPES_LABEL_SUFFIX = {
    "labelIds": "_gtFine_labelIds.png",
    "trainIds": "_gtFine_labelTrainIds.png",
}


class DatasetError(ValueError):
    """The files on disk do not form a usable dataset; the message names them."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image and its label file (None for unlabeled images)."""

    image: str
    label: str | None = None


def raise_problems(problems: list[str], what: str) -> None:
    """Raises one DatasetError listing `problems` (at most MAX_LISTED_PROBLEMS), if any: one line
    for one problem, one line per problem for several."""
    if not problems:
        return
    if len(problems) == 1:
        raise DatasetError(f"{what}: {problems[0]}")
    shown = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise DatasetError(f"{what}: {len(problems)} problem(s):\n  {shown}{tail}")


def label_spec(config: DataConfig) -> labels_lib.LabelSpec:
    """The label mapping, names and palette of the configured dataset."""
    if config.dataset == "cityscapes":
        return labels_lib.cityscapes(config.cityscapes_label_format)
    if config.dataset == "camvid":
        return labels_lib.camvid()
    return labels_lib.folder(
        config.num_classes,
        config.ignore_value,
        dict(config.id_mapping) or None,
        config.class_names or None,
    )


def find_pairs(config: DataConfig, split: str) -> list[Sample]:
    """Sorted labeled pairs of one split ("train", "val", "test"); raises DatasetError if the
    split's folders are missing or empty, or if images and labels do not pair up."""
    if config.dataset == "cityscapes":
        samples = _cityscapes_pairs(config.data_dir, split, config.cityscapes_label_format)
    elif config.dataset == "camvid":
        samples = _camvid_pairs(config.data_dir, split)
    else:
        samples = _folder_pairs(config, split)
    if not samples:
        raise DatasetError(f"split {split!r} of {config.dataset} is empty")
    return samples


def existing_splits(config: DataConfig) -> list[str]:
    """The splits among train, val and test whose image folder exists."""
    if config.dataset == "folder":
        return ["train"] + (["val"] if config.val_image_dir is not None else [])
    base = (
        os.path.join(config.data_dir, "leftImg8bit")
        if config.dataset == "cityscapes"
        else config.data_dir
    )
    return [split for split in ("train", "val", "test") if os.path.isdir(os.path.join(base, split))]


def find_extra_unlabeled(config: DataConfig) -> list[str]:
    """Sorted unlabeled images beyond the train split: Cityscapes' train_extra (with
    --use_coarse_unlabeled) and every --unlabeled_dirs folder."""
    folders = list(config.unlabeled_dirs)
    if config.dataset == "cityscapes" and config.use_coarse_unlabeled:
        coarse = os.path.join(config.data_dir, "leftImg8bit", "train_extra")
        if not os.path.isdir(coarse):
            raise DatasetError(f"--use_coarse_unlabeled: no such folder: {coarse}")
        folders.append(coarse)
    images = []
    for folder in folders:
        found = list_images(folder)
        if not found:
            raise DatasetError(f"unlabeled folder has no .png/.jpg images: {folder}")
        images.extend(found)
    return sorted(images)


def list_images(folder: str) -> list[str]:
    """Sorted image files (.png, .jpg, .jpeg) under `folder`, recursively."""
    return sorted(
        str(path)
        for path in pathlib.Path(folder).rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )


def _cityscapes_pairs(root: str, split: str, label_format: str) -> list[Sample]:
    image_root = os.path.join(root, "leftImg8bit", split)
    label_root = os.path.join(root, "gtFine", split)
    for folder in (image_root, label_root):
        if not os.path.isdir(folder):
            raise DatasetError(f"Cityscapes split {split!r}: no such folder: {folder}")
    image_suffix = "_leftImg8bit.png"
    label_suffix = CITYSCAPES_LABEL_SUFFIX[label_format]
    images = sorted(pathlib.Path(image_root).glob(f"*/*{image_suffix}"))
    labels = sorted(pathlib.Path(label_root).glob(f"*/*{label_suffix}"))
    image_keys = {str(p.relative_to(image_root))[: -len(image_suffix)]: str(p) for p in images}
    label_keys = {str(p.relative_to(label_root))[: -len(label_suffix)]: str(p) for p in labels}
    return _pair_up(image_keys, label_keys, f"Cityscapes {split}")


def _camvid_pairs(root: str, split: str) -> list[Sample]:
    image_root = os.path.join(root, split)
    label_root = os.path.join(root, split + "annot")
    for folder in (image_root, label_root):
        if not os.path.isdir(folder):
            raise DatasetError(f"CamVid split {split!r}: no such folder: {folder}")
    image_keys = {
        name: os.path.join(image_root, name)
        for name in os.listdir(image_root)
        if name.lower().endswith(IMAGE_EXTENSIONS)
    }
    label_keys = {
        name: os.path.join(label_root, name)
        for name in os.listdir(label_root)
        if name.lower().endswith(".png")
    }
    return _pair_up(image_keys, label_keys, f"CamVid {split}")


def _folder_pairs(config: DataConfig, split: str) -> list[Sample]:
    if split == "train":
        image_dir, mask_dir = config.image_dir, config.mask_dir
    elif split == "val":
        if config.val_image_dir is None:
            raise DatasetError(
                "folder dataset has no val split: give --val_image_dir and --val_mask_dir"
            )
        image_dir, mask_dir = config.val_image_dir, config.val_mask_dir
    else:
        raise DatasetError(f"folder dataset has train and val splits only, not {split!r}")
    image_keys: dict[str, str] = {}
    problems = []
    for path in list_images(image_dir):
        key = os.path.splitext(os.path.relpath(path, image_dir))[0]
        if key in image_keys:
            problems.append(f"two images of one name: {image_keys[key]} and {path}")
        image_keys.setdefault(key, path)
    raise_problems(problems, f"folder {split} ({image_dir})")
    suffix = config.mask_suffix + ".png"
    label_keys = {
        os.path.relpath(path, mask_dir)[: -len(suffix)]: path
        for path in list_images(mask_dir)
        if path.endswith(suffix)
    }
    return _pair_up(image_keys, label_keys, f"folder {split} ({image_dir}, {mask_dir})")


def _pair_up(image_keys: dict[str, str], label_keys: dict[str, str], what: str) -> list[Sample]:
    """Samples for keys present on both sides; DatasetError listing every unpaired file."""
    problems = [
        f"image without label: {image_keys[key]}"
        for key in sorted(image_keys.keys() - label_keys.keys())
    ]
    problems += [
        f"label without image: {label_keys[key]}"
        for key in sorted(label_keys.keys() - image_keys.keys())
    ]
    raise_problems(problems, what)
    return [Sample(image_keys[key], label_keys[key]) for key in sorted(image_keys)]


def printable(path: str) -> str:
    """`path` as it can be printed: bytes of a name that is not UTF-8 as \\x escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_problem(path: str) -> str | None:
    """Why `path` cannot be read as a data file, seen without opening it, or None: a name that
    is not UTF-8 (TensorFlow takes file names as UTF-8 strings), a missing file, or something
    that is not a regular file (opening a FIFO would wait for a writer forever)."""
    if printable(path) != path:
        return f"file name is not UTF-8 (rename it): {printable(path)}"
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"unreadable file {path}: {error.strerror}"
    if not stat.S_ISREG(mode):
        return f"not a regular file (a FIFO, socket or device?): {path}"
    return None


def _header(path: str, what: str) -> tuple[tuple[int, int], str] | str:
    """(size WxH, mode) from the file's header, or the problem naming it."""
    problem = file_problem(path)
    if problem:
        return problem
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except Image.DecompressionBombError as error:
        return f"{what} {path} is too large to decode: {error}"
    except (OSError, SyntaxError, ValueError) as error:
        return f"unreadable {what} {path}: {error}"


def header_problems(sample: Sample) -> list[str]:
    """Problems visible without decoding pixels: unreadable or special files, images too large
    to decode, a label that is not 8-bit single-channel, an image/label size mismatch."""
    image = _header(sample.image, "image")
    if isinstance(image, str):
        return [image]
    if sample.label is None:
        return []
    label = _header(sample.label, "label")
    if isinstance(label, str):
        return [label]
    (image_size, _), (label_size, label_mode) = image, label
    if label_mode not in LABEL_MODES:
        return [
            f"label {sample.label} has mode {label_mode!r}; expected an 8-bit "
            "single-channel PNG of class values (mode 'L')"
        ]
    if label_size != image_size:
        return [
            f"size mismatch: image {sample.image} is {image_size[0]}x{image_size[1]} but "
            f"label {sample.label} is {label_size[0]}x{label_size[1]} (WxH)"
        ]
    return []


def check_headers(samples: list[Sample], what: str) -> None:
    """Reads every file header (cheap: no pixel decode); raises one DatasetError listing
    unreadable files, labels that are not 8-bit single-channel, and image/label size
    mismatches."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        problems = [problem for found in pool.map(header_problems, samples) for problem in found]
    raise_problems(problems, what)


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def smallest_size(paths: list[str]) -> tuple[int, int]:
    """(smallest height, smallest width) among the images (headers only)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(_image_size, paths))
    return min(size[0] for size in sizes), min(size[1] for size in sizes)
