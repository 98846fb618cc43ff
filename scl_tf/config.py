"""Frozen configurations of every command, their validation, and the constants they share.

Library code takes these dataclasses and never reads flags, so it can be driven from Python
without absl; `scl_tf.flags` defines each command's flags and builds these configs from them.
Every check here names the flag at fault.
"""

from __future__ import annotations

import dataclasses
import math
import os

from scl_tf.eval.overlay import FORMATS

DATASETS = ("cityscapes", "camvid", "folder")
# Which weights of a run: the EMA teacher or the student (teacher targets, evaluation, export).
WEIGHTS = ("ema", "student")
# Which model of a run's dir: its final model.keras, its latest or its best checkpoint.
CHECKPOINTS = ("final", "latest", "best")
# --mixed_precision -> the Keras dtype policy of the networks (losses stay float32).
MIXED_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
ONNX_OPSETS = (13, 18)  # 13: omitted optional Resize inputs; 18: the newest tf2onnx 1.17 emits


class ConfigError(ValueError):
    """A flag value is invalid or contradicts another; the message names the flag."""


def _require_finite(config) -> None:
    """Every float field of a config dataclass is a finite number (NaN passes comparisons such
    as `x < 0`, and infinity most bounds); raises ConfigError naming the flag."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{field.name}: must be a finite number, got {value}")


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

    def _check_folder_classes(self) -> None:
        """--num_classes, --class_names, --id_mapping and --ignore_value agree."""
        if self.num_classes < 1:
            raise ConfigError(f"--num_classes: must be >= 1, got {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"--class_names: {len(self.class_names)} names for --num_classes={self.num_classes}"
            )
        if not 0 <= self.ignore_value <= 255:
            raise ConfigError(f"--ignore_value: must be in 0..255, got {self.ignore_value}")
        for value, train_id in self.id_mapping:
            if not 0 <= value <= 255:
                raise ConfigError(
                    f"--id_mapping: stored value {value} is not in 0..255 (masks are 8-bit)"
                )
            if not (0 <= train_id < self.num_classes or train_id == 255):
                raise ConfigError(
                    f"--id_mapping: {value}:{train_id} maps to class {train_id}, but "
                    f"--num_classes={self.num_classes} has classes 0..{self.num_classes - 1} "
                    "(and 255 = ignore)"
                )

    def __post_init__(self):
        _require_finite(self)
        if self.dataset not in DATASETS:
            raise ConfigError(f"--dataset: expected one of {DATASETS}, got {self.dataset!r}")
        if self.dataset == "folder":
            for name in ("image_dir", "mask_dir", "num_classes"):
                if getattr(self, name) is None:
                    raise ConfigError(f"--{name}: required with --dataset=folder")
            self._check_folder_classes()
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
        chosen = [
            name
            for name in ("labeled_fraction", "labeled_count", "labeled_list")
            if getattr(self, name) is not None
        ]
        if len(chosen) > 1:
            raise ConfigError(f"--{chosen[0]} and --{chosen[1]}: give at most one")
        if self.labeled_fraction is not None and not 0.0 < self.labeled_fraction <= 1.0:
            raise ConfigError(f"--labeled_fraction: must be in (0, 1], got {self.labeled_fraction}")
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
    # The box rule (0 = off, the paper's N as given): N becomes the largest count, at most
    # cutmix_boxes, whose typical box spans at least this many output cells a side, and Nbox
    # keeps the ratio scl_boxes / cutmix_boxes (see with_box_rule).
    cutmix_min_box_cells: float = 0.0
    seed: int = 0

    def __post_init__(self):
        _require_finite(self)
        if min(self.crop_size) < 1:
            raise ConfigError(f"--crop_size: must be positive, got {self.crop_size}")
        for name in (
            "labeled_batch_size",
            "unlabeled_batch_size",
            "cutmix_boxes",
            "class_uniform_tiles",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.scale_min <= self.scale_max:
            raise ConfigError(
                f"--scale_min/--scale_max: need 0 < scale_min <= scale_max, got "
                f"{self.scale_min}, {self.scale_max}"
            )
        for name in ("class_uniform_pct", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name}: must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ConfigError(f"--color_jitter: must be in [0, 1), got {self.color_jitter}")
        if not 0 <= self.scl_boxes <= self.cutmix_boxes:
            raise ConfigError(
                f"--scl_boxes: must be in 0..--cutmix_boxes ({self.cutmix_boxes}), "
                f"got {self.scl_boxes}"
            )
        if not 0.0 < self.cutmix_area < 1.0:
            raise ConfigError(f"--cutmix_area: must be in (0, 1), got {self.cutmix_area}")
        if self.cutmix_min_box_cells < 0:
            raise ConfigError(
                f"--cutmix_min_box_cells: must be >= 0, got {self.cutmix_min_box_cells}"
            )

    def with_box_rule(self, output_stride: int) -> PipelineConfig:
        """This config with N and Nbox set by the box rule (itself when the rule is off).

        Raises:
          ConfigError: even one box covering --cutmix_area is smaller than the minimum.
        """
        if not self.cutmix_min_box_cells:
            return self
        from scl_tf.data.cutmix import box_count_for_min_cells, typical_box_cells

        height, width = self.crop_size
        num_boxes = box_count_for_min_cells(
            height,
            width,
            output_stride,
            self.cutmix_min_box_cells,
            self.cutmix_boxes,
            self.cutmix_area,
        )
        if num_boxes == 0:
            largest = typical_box_cells(height, width, 1, self.cutmix_area, output_stride)
            raise ConfigError(
                f"--cutmix_min_box_cells: {self.cutmix_min_box_cells:g} cells a side is more "
                f"than one box covering --cutmix_area={self.cutmix_area:g} of a {height}x{width} "
                f"crop spans at output stride {output_stride} ({largest:.1f})"
            )
        scl_boxes = round(num_boxes * self.scl_boxes / self.cutmix_boxes)
        return dataclasses.replace(
            self,
            cutmix_boxes=num_boxes,
            scl_boxes=max(scl_boxes, 1) if self.scl_boxes else 0,
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The DeepLabV3+ to build (see scl_tf.models.build_model, which checks the backbone)."""

    backbone: str = "wrn38"
    output_stride: int = 8
    low_level_stride: int | None = None
    weights: str | None = None
    sync_batchnorm: bool = True
    decoder_convs: int = 2
    decoder_kernel_size: int = 3

    def __post_init__(self):
        if self.output_stride not in (8, 16):
            raise ConfigError(f"--output_stride: must be 8 or 16, got {self.output_stride}")
        if self.low_level_stride not in (None, 2, 4):
            raise ConfigError(
                f"--low_level_stride: must be 2 or 4 (or 0 for the default), "
                f"got {self.low_level_stride}"
            )
        if self.weights not in (None, "imagenet") and not os.path.exists(self.weights):
            raise ConfigError(f"--weights: no such file or model dir: {self.weights}")
        if self.decoder_convs < 1:
            raise ConfigError(f"--decoder_convs: must be >= 1, got {self.decoder_convs}")
        if self.decoder_kernel_size not in (1, 3):
            raise ConfigError(
                f"--decoder_kernel_size: must be 1 or 3, got {self.decoder_kernel_size}"
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, losses, teacher and the run's bookkeeping."""

    epochs: float = 175.0
    steps: int = 0
    learning_rate: float = 0.002
    lr_power: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.001
    weight_decay_mode: str = "coupled"
    ema_decay: float = 0.999
    teacher: str = "ema"
    eval_weights: str = "ema"
    lambda_c: float = 20.0
    lambda_sc: float = 3.0
    consistency_class_reduction: str = "sum"
    confidence_threshold: float = 0.0
    confidence_form: str = "batch"
    rampup_steps: int = 0
    scl_mode: str = "pairs"
    num_pairs: int = 9000
    relax_window: int = 3
    mixed_precision: str = "none"
    strategy: str = "auto"
    jit_compile: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 5000
    eval_images: int = 0
    log_every: int = 10
    image_every: int = 500

    @property
    def dtype_policy(self) -> str:
        """The Keras dtype policy of the networks (MIXED_POLICIES)."""
        return MIXED_POLICIES[self.mixed_precision]

    def __post_init__(self):
        _require_finite(self)
        for name in (
            "lambda_c",
            "lambda_sc",
            "weight_decay",
            "learning_rate",
            "momentum",
            "lr_power",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name}: must be >= 0, got {getattr(self, name)}")
        if self.steps < 0 or (self.steps == 0 and self.epochs <= 0):
            raise ConfigError(
                f"--steps/--epochs: need steps > 0 or epochs > 0, got {self.steps}, {self.epochs}"
            )
        if self.mixed_precision not in MIXED_POLICIES:
            raise ConfigError(
                f"--mixed_precision: expected one of {tuple(MIXED_POLICIES)}, got "
                f"{self.mixed_precision!r}"
            )
        for name in ("teacher", "eval_weights"):
            if getattr(self, name) not in WEIGHTS:
                raise ConfigError(
                    f"--{name}: expected one of {WEIGHTS}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema_decay: must be in [0, 1), got {self.ema_decay}")
        if (
            self.scl_mode != "exact"
            and self.lambda_sc > 0
            and self.num_pairs < (1 if self.scl_mode == "pairs" else 2)
        ):
            raise ConfigError(
                f"--num_pairs: too small for --scl_mode={self.scl_mode}: {self.num_pairs}"
            )
        if self.relax_window < 1 or self.relax_window % 2 == 0:
            raise ConfigError(f"--relax_window: must be odd and >= 1, got {self.relax_window}")
        for name in ("checkpoint_every", "keep_checkpoints", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("eval_images", "image_every", "rampup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.confidence_threshold < 1.0:
            raise ConfigError(
                f"--confidence_threshold: must be in [0, 1), got {self.confidence_threshold}"
            )


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs, built once from the flags."""

    data: DataConfig
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model_dir: str | None = None

    def __post_init__(self):
        if self.model_dir is None:
            raise ConfigError("--model_dir: required")
        # The box rule needs the crop and the output stride: resolved here, once, so that every
        # reader of pipeline.cutmix_boxes / scl_boxes sees the counts the run uses.
        object.__setattr__(self, "pipeline", self.pipeline.with_box_rule(self.model.output_stride))


def _require_dir(flag: str, path: str) -> None:
    if not os.path.isdir(path):
        raise ConfigError(f"--{flag}: no such folder: {path}")


def check_opset(opset: int) -> None:
    """Raises ConfigError naming --opset outside ONNX_OPSETS."""
    if not ONNX_OPSETS[0] <= opset <= ONNX_OPSETS[1]:
        raise ConfigError(f"--opset: must be in {ONNX_OPSETS[0]}..{ONNX_OPSETS[1]}, got {opset}")


def parse_input_size(text: str) -> tuple[int, int] | None:
    """--input_size: "dynamic" -> None (any size), "HxW" or "N" -> (H, W)."""
    if text.strip().lower() == "dynamic":
        return None
    return parse_size("input_size", text)


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


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """Test-time inference: scales, flip and tiles (see scl_tf.eval.inference).

    Attributes:
      scales: image scales whose probabilities are averaged.
      flip: also run the mirrored image.
      tile: (height, width) of the largest piece run through the network at once; None runs
        whole images.
      tile_stride: (height, width) step between tiles; None: 2/3 of `tile` (1/3 overlap).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    tile: tuple[int, int] | None = None
    tile_stride: tuple[int, int] | None = None

    def __post_init__(self):
        if not self.scales or not all(0 < scale < math.inf for scale in self.scales):
            raise ConfigError(
                f"--scales: need one or more positive, finite scales, got {self.scales}"
            )
        if self.tile is not None and min(self.tile) < 1:
            raise ConfigError(f"--tile: must be positive, got {self.tile}")
        if self.tile_stride is not None:
            if self.tile is None:
                raise ConfigError("--tile_stride: needs --tile")
            if not all(1 <= step <= size for step, size in zip(self.tile_stride, self.tile)):
                raise ConfigError(
                    f"--tile_stride: must be in 1..--tile ({self.tile}), got {self.tile_stride}"
                )

    @property
    def stride(self) -> tuple[int, int] | None:
        """The step between tiles, (height, width); None without tiles."""
        if self.tile is None or self.tile_stride is not None:
            return self.tile_stride
        return tuple(max(1, -(-2 * size // 3)) for size in self.tile)


def _check_model_source(flag: str, path: str, checkpoint: str, eval_weights: str | None) -> None:
    """A model to load exists, and the run-dir choices are known; names the flag."""
    if not path:
        raise ConfigError(f"--{flag}: required")
    if not os.path.exists(path):
        raise ConfigError(f"--{flag}: no such file or folder: {path}")
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"--checkpoint: expected one of {CHECKPOINTS}, got {checkpoint!r}")
    if eval_weights not in (None, *WEIGHTS):
        raise ConfigError(f"--eval_weights: expected one of {WEIGHTS}, got {eval_weights!r}")


# How ONNX Runtime's int8 calibration sets activation ranges (scl_tf/export/quantize.py).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """The frames an int8 model is calibrated on, and how closely it must follow float32.

    Attributes:
      calibration: a folder of images (searched recursively) or a glob pattern; unlabeled
        frames do; "" = none (required for int8).
      calibration_count: frames used at most, spread evenly over the sorted set. MinMax on 8
        to 300 CamVid frames kept the same labels within 0.2 point; 100 (40 s) leaves a
        margin for rarer extremes (BENCHMARKS.md, "Quantized deployment").
      calibration_method: one of CALIBRATION_METHODS (ONNX int8; the TFLite converter has
        its own). MinMax: percentile gained under 0.1 point, entropy lost 3.
      min_agreement: the share of the parity frames' pixels, in (0, 1], whose label must
        equal the float32 model's, or the int8 model is not written. 0.96: every int8 model
        measured (4 demo trainings, 3 CamVid models; ONNX and TFLite) keeps 97.6-99.5% of its
        12 frames' labels and its val mIoU within 0.5 point, where a demo model that lost 1.8
        points kept 94.4%; 12 frames stray from the whole split by up to 0.4 point.
    """

    calibration: str = ""
    calibration_count: int = 100
    calibration_method: str = CALIBRATION_METHODS[0]
    min_agreement: float = 0.96

    def __post_init__(self):
        _require_finite(self)
        if self.calibration_count < 1:
            raise ConfigError(f"--calibration_count: must be >= 1, got {self.calibration_count}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"--calibration_method: expected one of {CALIBRATION_METHODS}, "
                f"got {self.calibration_method!r}"
            )
        if not 0.0 < self.min_agreement <= 1.0:
            raise ConfigError(f"--min_agreement: must be in (0, 1], got {self.min_agreement}")

    def check_use(self, int8: bool, precision_flag: str, parity_dir: str, parity_frames: int):
        """Calibration frames are given exactly when the model is int8, and an int8 model has
        real frames to be judged on.

        Args:
          precision_flag: the flag that asks for int8, named in errors (--int8,
            --precision=int8).
          parity_dir, parity_frames: the command's frames of the parity check.
        """
        if not int8:
            if self.calibration:
                raise ConfigError(f"--calibration: only used with {precision_flag}")
            return
        if not self.calibration:
            raise ConfigError(
                f"--calibration: required with {precision_flag} (a folder or glob of frames; "
                "unlabeled ones do)"
            )
        if not parity_dir or parity_frames < 1:
            raise ConfigError(
                f"--parity_dir, --parity_frames: {precision_flag} is judged on real frames; "
                "give a folder and at least 1 frame"
            )


def check_fp16_bar(min_fp16_agreement: float, fp16: bool, precision_flag: str, config) -> None:
    """--min_fp16_agreement is a share in (0, 1], and an fp16 model has real frames to be
    judged on (`config`'s parity_dir and parity_frames).

    Raises:
      ConfigError: naming the flag at fault.
    """
    if not 0.0 < min_fp16_agreement <= 1.0:
        raise ConfigError(f"--min_fp16_agreement: must be in (0, 1], got {min_fp16_agreement}")
    if fp16 and (not config.parity_dir or config.parity_frames < 1):
        raise ConfigError(
            f"--parity_dir, --parity_frames: {precision_flag} is judged on real frames; "
            "give a folder and at least 1 frame"
        )


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What export/to_onnx.py converts, and how the result is checked against TensorFlow.

    Attributes:
      source: a model dir of scl_tf.train or a SavedModel of export/to_saved_model.py.
      output: the .onnx file to write.
      checkpoint, eval_weights: for a model dir (None: the run's own --eval_weights).
      input_size: (height, width) to fix the input to, None for any size.
      parity_dir: frames compared besides random images; "" = random images only (fp32).
      parity_frames: how many of them, spread over the sorted folder. 12, all the bundled
        val frames: over the 101 CamVid val frames, int8's agreement on 12 consecutive frames
        is within 0.4 point of the whole split's (95% of the windows, three models, ONNX and
        TFLite; 12 spread over the split: 0.13; 2 frames: up to 0.7), BENCHMARKS.md "How many
        frames judge a quantized model".
      min_fp16_agreement: fp16 is written only if this share of the frames' pixels, in
        (0, 1], keep the float32 model's labels (scl_tf.export.agreement). 0.995: fp16 keeps
        99.8-99.97% on the same models.
      int8: quantize to int8 (static, calibrated on `quantization.calibration`).
    """

    source: str
    output: str
    checkpoint: str = "final"
    eval_weights: str | None = None
    opset: int = 17
    fp16: bool = False
    input_size: tuple[int, int] | None = None
    onnx_probabilities: bool = False
    parity_dir: str = "data/camvid_mini/val"
    parity_frames: int = 12
    min_fp16_agreement: float = 0.995
    int8: bool = False
    quantization: CalibrationConfig = dataclasses.field(default_factory=CalibrationConfig)

    def __post_init__(self):
        _check_model_source("source", self.source, self.checkpoint, self.eval_weights)
        if not self.output:
            raise ConfigError("--output: required")
        check_opset(self.opset)
        if self.input_size is not None and min(self.input_size) < 1:
            raise ConfigError(f"--input_size: must be positive, got {self.input_size}")
        if self.parity_frames < 0:
            raise ConfigError(f"--parity_frames: must be >= 0, got {self.parity_frames}")
        if self.int8 and self.fp16:
            raise ConfigError("--int8 and --fp16: give at most one")
        check_fp16_bar(self.min_fp16_agreement, self.fp16, "--fp16", self)
        self.quantization.check_use(self.int8, "--int8", self.parity_dir, self.parity_frames)


TFLITE_PRECISIONS = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class TFLiteConfig:
    """What export/to_tflite.py converts, and how the result is checked against TensorFlow.

    Attributes:
      source, output, checkpoint, eval_weights, parity_dir, parity_frames,
        min_fp16_agreement: as ExportConfig's, `output` a .tflite file.
      precision: one of TFLITE_PRECISIONS: fp16 stores float16 weights; int8 is full-integer
        inside, with float32 input and outputs like the other precisions.
      input_size: (height, width) the model is fixed to (a phone model is static); CamVid's
        frame size by default.
      quantization: calibration frames of int8, and its agreement bar.
    """

    source: str
    output: str
    checkpoint: str = "final"
    eval_weights: str | None = None
    precision: str = TFLITE_PRECISIONS[0]
    input_size: tuple[int, int] = (360, 480)
    parity_dir: str = ExportConfig.parity_dir
    parity_frames: int = ExportConfig.parity_frames
    min_fp16_agreement: float = ExportConfig.min_fp16_agreement
    quantization: CalibrationConfig = dataclasses.field(default_factory=CalibrationConfig)

    def __post_init__(self):
        _check_model_source("source", self.source, self.checkpoint, self.eval_weights)
        if not self.output:
            raise ConfigError("--output: required")
        if self.precision not in TFLITE_PRECISIONS:
            raise ConfigError(
                f"--precision: expected one of {TFLITE_PRECISIONS}, got {self.precision!r}"
            )
        if self.input_size is None or min(self.input_size) < 1:
            raise ConfigError(f"--input_size: must be a positive HxW, got {self.input_size}")
        if self.parity_frames < 0:
            raise ConfigError(f"--parity_frames: must be >= 0, got {self.parity_frames}")
        check_fp16_bar(self.min_fp16_agreement, self.precision == "fp16", "--precision=fp16", self)
        self.quantization.check_use(
            self.precision == "int8", "--precision=int8", self.parity_dir, self.parity_frames
        )


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """What scl_tf.predict segments and writes.

    Attributes:
      model: a model dir, .keras file, SavedModel folder or .onnx file; `model_dir` is used
        when it is empty (the flag named in errors is the one given).
      input: a folder of images (searched recursively) or a glob pattern.
      output: the folder the PNGs are written into.
      format: one of FORMATS.
      checkpoint, eval_weights: for a model dir (None: the run's own --eval_weights).
    """

    model: str | None
    input: str
    output: str
    model_dir: str | None = None
    format: str = "labelIds"
    overlay_alpha: float = 0.5
    checkpoint: str = "final"
    eval_weights: str | None = None
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)

    @property
    def source(self) -> str:
        """The model to load: --model, else --model_dir."""
        return self.model or self.model_dir

    def __post_init__(self):
        _require_finite(self)
        _check_model_source(
            "model" if self.model else "model_dir", self.source, self.checkpoint, self.eval_weights
        )
        if not self.input:
            raise ConfigError("--input: required")
        if not self.output:
            raise ConfigError("--output: required (the folder to write into)")
        if self.format not in FORMATS:
            raise ConfigError(f"--format: expected one of {FORMATS}, got {self.format!r}")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ConfigError(f"--overlay_alpha: must be in [0, 1], got {self.overlay_alpha}")
