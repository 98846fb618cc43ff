"""Command-line flags and the frozen configuration built from them.

This module is the only place flags are defined. Entry points parse flags with absl and call
`from_flags()`; library code takes the dataclasses below and never reads flags itself, so it can
be driven from Python without absl. Every check here names the flag at fault.
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

DATASETS = ("cityscapes", "camvid", "folder")

# --- data -------------------------------------------------------------------------------------
flags.DEFINE_enum("dataset", None, DATASETS, "Dataset layout to read.")
flags.DEFINE_string("data_dir", None,
                    "Dataset root: the Cityscapes root (leftImg8bit/, gtFine/) or the CamVid "
                    "folder in the SegNet layout (train/, trainannot/, val/, valannot/).")
flags.DEFINE_enum("cityscapes_label_format", "labelIds", ("labelIds", "trainIds"),
                  "Cityscapes: read *_gtFine_labelIds.png (mapped to train ids in the graph) or "
                  "*_gtFine_labelTrainIds.png.")
flags.DEFINE_bool("use_coarse_unlabeled", False,
                  "Cityscapes: add leftImg8bit/train_extra/** (the coarse set's images) to the "
                  "unlabeled pool, ignoring their annotations.")
flags.DEFINE_list("unlabeled_dirs", [],
                  "Extra folders of unlabeled images (searched recursively for .png/.jpg).")
flags.DEFINE_string("image_dir", None, "folder dataset: training images.")
flags.DEFINE_string("mask_dir", None,
                    "folder dataset: training masks, single-channel 8-bit PNGs paired with the "
                    "images by file stem (plus --mask_suffix).")
flags.DEFINE_string("val_image_dir", None, "folder dataset: validation images.")
flags.DEFINE_string("val_mask_dir", None, "folder dataset: validation masks.")
flags.DEFINE_string("mask_suffix", "", "folder dataset: mask stem = image stem + this suffix.")
flags.DEFINE_integer("num_classes", None, "folder dataset: number of classes C.")
flags.DEFINE_integer("ignore_value", 255, "folder dataset: stored value of unlabelled pixels.")
flags.DEFINE_list("id_mapping", [],
                  "folder dataset: stored value to train id, as value:train_id pairs "
                  "(e.g. 0:255,1:0,2:1). Empty: values 0..C-1 are the train ids.")
flags.DEFINE_list("class_names", [], "folder dataset: C class names.")

# --- semi-supervised split --------------------------------------------------------------------
flags.DEFINE_float("labeled_fraction", None,
                   "Fraction of train used as labeled, in (0, 1]; the rest is unlabeled.")
flags.DEFINE_integer("labeled_count", None, "Number of train pairs used as labeled.")
flags.DEFINE_string("labeled_list", None,
                    "File naming the labeled train images, one per line (relative path, file "
                    "name or stem).")
flags.DEFINE_integer("split_seed", 0, "Seed of the labeled subset choice.")

# --- input pipeline ---------------------------------------------------------------------------
flags.DEFINE_string("crop_size", "512x512", "Training crop, HxW (or one number for a square).")
flags.DEFINE_integer("labeled_batch_size", 1, "Labeled images per replica and step.")
flags.DEFINE_integer("unlabeled_batch_size", 1, "Unlabeled CutMix pairs per replica and step.")
flags.DEFINE_float("scale_min", 0.5, "Smallest random scale.")
flags.DEFINE_float("scale_max", 2.0, "Largest random scale.")
flags.DEFINE_bool("random_flip", True, "Random horizontal flip.")
flags.DEFINE_float("color_jitter", 0.25,
                   "Strength of random brightness, contrast, saturation and hue; 0 = off.")
flags.DEFINE_float("blur_prob", 0.5, "Probability of a Gaussian blur (sigma 0.15 to 1.3).")
flags.DEFINE_float("class_uniform_pct", 0.5,
                   "Share of labeled crops centred on a class chosen uniformly (Zhu et al.).")
flags.DEFINE_integer("class_uniform_tiles", 1024,
                     "Class-uniform index: about this many tiles per image, one stored pixel per "
                     "class and tile.")
flags.DEFINE_integer("cutmix_boxes", 32, "CutMix boxes per unlabeled pair (N).")
flags.DEFINE_integer("scl_boxes", 16, "Last CutMix boxes scored by the structured loss (Nbox).")
flags.DEFINE_float("cutmix_area", 0.5, "Expected share of the image covered by the boxes.")
flags.DEFINE_integer("seed", 0, "Seed of all data randomness (and of the run).")
flags.DEFINE_string("model_dir", None, "Output folder: checkpoints, logs, the labeled list.")


class ConfigError(ValueError):
    """A flag value is invalid or contradicts another; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which files to read and how to split them into labeled and unlabeled."""

    dataset: str
    data_dir: str | None = None
    cityscapes_label_format: str = "labelIds"
    use_coarse_unlabeled: bool = False
    unlabeled_dirs: tuple[str, ...] = ()
    image_dir: str | None = None
    mask_dir: str | None = None
    val_image_dir: str | None = None
    val_mask_dir: str | None = None
    mask_suffix: str = ""
    num_classes: int | None = None
    ignore_value: int = 255
    id_mapping: tuple[tuple[int, int], ...] = ()
    class_names: tuple[str, ...] = ()
    labeled_fraction: float | None = None
    labeled_count: int | None = None
    labeled_list: str | None = None
    split_seed: int = 0

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ConfigError(f"--dataset: expected one of {DATASETS}, got {self.dataset!r}")
        if self.dataset == "folder":
            for name in ("image_dir", "mask_dir", "num_classes"):
                if getattr(self, name) is None:
                    raise ConfigError(f"--{name}: required with --dataset=folder")
            _require_dir("image_dir", self.image_dir)
            _require_dir("mask_dir", self.mask_dir)
            if (self.val_image_dir is None) != (self.val_mask_dir is None):
                raise ConfigError("--val_image_dir and --val_mask_dir: give both or neither")
        else:
            if not self.data_dir:
                raise ConfigError(f"--data_dir: required with --dataset={self.dataset}")
            _require_dir("data_dir", self.data_dir)
        for folder in self.unlabeled_dirs:
            _require_dir("unlabeled_dirs", folder)
        chosen = [name for name in ("labeled_fraction", "labeled_count", "labeled_list")
                  if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ConfigError(f"--{chosen[0]} and --{chosen[1]}: give at most one")
        if self.labeled_fraction is not None and not 0.0 < self.labeled_fraction <= 1.0:
            raise ConfigError(f"--labeled_fraction: must be in (0, 1], got "
                              f"{self.labeled_fraction}")
        if self.labeled_count is not None and self.labeled_count < 1:
            raise ConfigError(f"--labeled_count: must be >= 1, got {self.labeled_count}")
        if self.labeled_list is not None and not os.path.isfile(self.labeled_list):
            raise ConfigError(f"--labeled_list: no such file: {self.labeled_list}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Crops, augmentation, class-uniform sampling and CutMix of the training input."""

    crop_size: tuple[int, int] = (512, 512)
    labeled_batch_size: int = 1
    unlabeled_batch_size: int = 1
    scale_min: float = 0.5
    scale_max: float = 2.0
    random_flip: bool = True
    color_jitter: float = 0.25
    blur_prob: float = 0.5
    class_uniform_pct: float = 0.5
    class_uniform_tiles: int = 1024
    cutmix_boxes: int = 32
    scl_boxes: int = 16
    cutmix_area: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if min(self.crop_size) < 1:
            raise ConfigError(f"--crop_size: must be positive, got {self.crop_size}")
        for name in ("labeled_batch_size", "unlabeled_batch_size", "cutmix_boxes",
                     "class_uniform_tiles"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ConfigError(f"--scale_min/--scale_max: need 0 < scale_min <= scale_max, got "
                              f"{self.scale_min}, {self.scale_max}")
        for name in ("class_uniform_pct", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name}: must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ConfigError(f"--color_jitter: must be in [0, 1), got {self.color_jitter}")
        if not 0 <= self.scl_boxes <= self.cutmix_boxes:
            raise ConfigError(f"--scl_boxes: must be in 0..--cutmix_boxes ({self.cutmix_boxes}), "
                              f"got {self.scl_boxes}")
        if not 0.0 < self.cutmix_area < 1.0:
            raise ConfigError(f"--cutmix_area: must be in (0, 1), got {self.cutmix_area}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs, built once from the flags."""

    data: DataConfig
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    model_dir: str | None = None


def _require_dir(flag: str, path: str) -> None:
    if not os.path.isdir(path):
        raise ConfigError(f"--{flag}: no such folder: {path}")


def parse_size(flag: str, text: str) -> tuple[int, int]:
    """'HxW' or 'N' -> (H, W)."""
    parts = text.lower().split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise ConfigError(f"--{flag}: expected HxW or N, got {text!r}") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2:
        raise ConfigError(f"--{flag}: expected HxW or N, got {text!r}")
    return sizes[0], sizes[1]


def parse_id_mapping(pairs: list[str]) -> tuple[tuple[int, int], ...]:
    """['0:255', '1:0'] -> ((0, 255), (1, 0))."""
    mapping = []
    for pair in pairs:
        try:
            value, train_id = (int(part) for part in pair.split(":"))
        except ValueError:
            raise ConfigError(f"--id_mapping: expected value:train_id, got {pair!r}") from None
        mapping.append((value, train_id))
    return tuple(mapping)


def data_from_flags(values=flags.FLAGS) -> DataConfig:
    """DataConfig from parsed flags."""
    return DataConfig(
        dataset=values.dataset,
        data_dir=values.data_dir,
        cityscapes_label_format=values.cityscapes_label_format,
        use_coarse_unlabeled=values.use_coarse_unlabeled,
        unlabeled_dirs=tuple(values.unlabeled_dirs),
        image_dir=values.image_dir,
        mask_dir=values.mask_dir,
        val_image_dir=values.val_image_dir,
        val_mask_dir=values.val_mask_dir,
        mask_suffix=values.mask_suffix,
        num_classes=values.num_classes,
        ignore_value=values.ignore_value,
        id_mapping=parse_id_mapping(values.id_mapping),
        class_names=tuple(values.class_names),
        labeled_fraction=values.labeled_fraction,
        labeled_count=values.labeled_count,
        labeled_list=values.labeled_list,
        split_seed=values.split_seed,
    )


def pipeline_from_flags(values=flags.FLAGS) -> PipelineConfig:
    """PipelineConfig from parsed flags."""
    return PipelineConfig(
        crop_size=parse_size("crop_size", values.crop_size),
        labeled_batch_size=values.labeled_batch_size,
        unlabeled_batch_size=values.unlabeled_batch_size,
        scale_min=values.scale_min,
        scale_max=values.scale_max,
        random_flip=values.random_flip,
        color_jitter=values.color_jitter,
        blur_prob=values.blur_prob,
        class_uniform_pct=values.class_uniform_pct,
        class_uniform_tiles=values.class_uniform_tiles,
        cutmix_boxes=values.cutmix_boxes,
        scl_boxes=values.scl_boxes,
        cutmix_area=values.cutmix_area,
        seed=values.seed,
    )


def from_flags(values=flags.FLAGS) -> Config:
    """The whole Config from parsed flags; raises ConfigError naming the flag at fault."""
    return Config(data=data_from_flags(values), pipeline=pipeline_from_flags(values),
                  model_dir=values.model_dir)
