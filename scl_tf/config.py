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
BACKBONES = ("wrn38", "resnet50", "resnet101", "mobilenetv2", "efficientnet_lite0")

# --- data -------------------------------------------------------------------------------------
flags.DEFINE_enum("dataset", None, DATASETS, "Dataset layout to read.")
flags.DEFINE_string(
    "data_dir",
    None,
    "Dataset root: the Cityscapes root (leftImg8bit/, gtFine/) or the CamVid "
    "folder in the SegNet layout (train/, trainannot/, val/, valannot/).",
)
flags.DEFINE_enum(
    "cityscapes_label_format",
    "labelIds",
    ("labelIds", "trainIds"),
    "Cityscapes: read *_gtFine_labelIds.png (mapped to train ids in the graph) or "
    "*_gtFine_labelTrainIds.png.",
)
flags.DEFINE_bool(
    "use_coarse_unlabeled",
    False,
    "Cityscapes: add leftImg8bit/train_extra/** (the coarse set's images) to the "
    "unlabeled pool, ignoring their annotations.",
)
flags.DEFINE_list(
    "unlabeled_dirs", [], "Extra folders of unlabeled images (searched recursively for .png/.jpg)."
)
flags.DEFINE_string("image_dir", None, "folder dataset: training images.")
flags.DEFINE_string(
    "mask_dir",
    None,
    "folder dataset: training masks, single-channel 8-bit PNGs paired with the "
    "images by file stem (plus --mask_suffix).",
)
flags.DEFINE_string("val_image_dir", None, "folder dataset: validation images.")
flags.DEFINE_string("val_mask_dir", None, "folder dataset: validation masks.")
flags.DEFINE_string("mask_suffix", "", "folder dataset: mask stem = image stem + this suffix.")
flags.DEFINE_integer("num_classes", None, "folder dataset: number of classes C.")
flags.DEFINE_integer("ignore_value", 255, "folder dataset: stored value of unlabelled pixels.")
flags.DEFINE_list(
    "id_mapping",
    [],
    "folder dataset: stored value to train id, as value:train_id pairs "
    "(e.g. 0:255,1:0,2:1). Empty: values 0..C-1 are the train ids.",
)
flags.DEFINE_list("class_names", [], "folder dataset: C class names.")

# --- semi-supervised split --------------------------------------------------------------------
flags.DEFINE_float(
    "labeled_fraction", None, "Fraction of train used as labeled, in (0, 1]; the rest is unlabeled."
)
flags.DEFINE_integer("labeled_count", None, "Number of train pairs used as labeled.")
flags.DEFINE_string(
    "labeled_list",
    None,
    "File naming the labeled train images, one per line (relative path, file "
    "name or stem). Empty (--labeled_list=) clears a flag file's list.",
)
flags.DEFINE_integer("split_seed", 0, "Seed of the labeled subset choice.")

# --- input pipeline ---------------------------------------------------------------------------
flags.DEFINE_string("crop_size", "512x512", "Training crop, HxW (or one number for a square).")
flags.DEFINE_integer("labeled_batch_size", 1, "Labeled images per replica and step.")
flags.DEFINE_integer("unlabeled_batch_size", 1, "Unlabeled CutMix pairs per replica and step.")
flags.DEFINE_float("scale_min", 0.5, "Smallest random scale.")
flags.DEFINE_float("scale_max", 2.0, "Largest random scale.")
flags.DEFINE_bool("random_flip", True, "Random horizontal flip.")
flags.DEFINE_float(
    "color_jitter", 0.25, "Strength of random brightness, contrast, saturation and hue; 0 = off."
)
flags.DEFINE_float("blur_prob", 0.5, "Probability of a Gaussian blur (sigma 0.15 to 1.3).")
flags.DEFINE_float(
    "class_uniform_pct",
    0.5,
    "Share of labeled crops centred on a class chosen uniformly (Zhu et al.).",
)
flags.DEFINE_integer(
    "class_uniform_tiles",
    1024,
    "Class-uniform index: about this many tiles per image, one stored pixel per class and tile.",
)
flags.DEFINE_integer("cutmix_boxes", 32, "CutMix boxes per unlabeled pair (N).")
flags.DEFINE_integer("scl_boxes", 16, "Last CutMix boxes scored by the structured loss (Nbox).")
flags.DEFINE_float("cutmix_area", 0.5, "Expected share of the image covered by the boxes.")
flags.DEFINE_integer("seed", 0, "Seed of all data randomness (and of the run).")
flags.DEFINE_string("model_dir", None, "Output folder: checkpoints, logs, the labeled list.")

# --- model ------------------------------------------------------------------------------------
flags.DEFINE_enum("backbone", "wrn38", BACKBONES, "DeepLabV3+ backbone.")
flags.DEFINE_integer("output_stride", 8, "Output stride of the backbone (8 or 16).")
flags.DEFINE_integer(
    "low_level_stride",
    0,
    "Stride of the decoder's low-level feature (2 or 4); 0 = the backbone's "
    "default (2 for wrn38, 4 otherwise).",
)
flags.DEFINE_string(
    "weights",
    None,
    "imagenet: the backbone's ImageNet weights (efficientnet_lite0 from an "
    "installed package; mobilenetv2, resnet50, resnet101 through Keras' cache); "
    "or a file: a full model (.weights.h5, or .keras such as a run's "
    "model.keras, to warm-start), or ImageNet backbone weights (.h5). Empty "
    "(--weights=) clears a flag file's weights: random initialisation.",
)
flags.DEFINE_bool("sync_batchnorm", True, "Synchronized BatchNormalization across replicas.")
flags.DEFINE_integer(
    "decoder_convs",
    2,
    "Convolutions after the decoder's concatenation (DeepLabV3+ and the paper: "
    "2); --decoder_convs=1 --decoder_kernel_size=1 is keras-hub's lighter head.",
)
flags.DEFINE_integer(
    "decoder_kernel_size",
    3,
    "Kernel size of the decoder's convolutions, 1 or 3 (DeepLabV3+ and the paper: 3).",
)

# --- training ---------------------------------------------------------------------------------
flags.DEFINE_float("epochs", 175.0, "Training length in epochs over the labeled set.")
flags.DEFINE_integer("steps", 0, "Training length in steps; overrides --epochs when > 0.")
flags.DEFINE_float("learning_rate", 0.002, "Initial learning rate.")
flags.DEFINE_float("lr_power", 1.0, "Power of the polynomial learning-rate decay to 0.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 0.001, "SGD weight decay.")
flags.DEFINE_enum(
    "weight_decay_mode",
    "coupled",
    ("coupled", "decoupled"),
    "coupled: L2 added to the gradient before momentum (PyTorch, the paper); "
    "decoupled: Keras' weight_decay.",
)
flags.DEFINE_float("ema_decay", 0.999, "Teacher <- ema * teacher + (1 - ema) * student.")
flags.DEFINE_enum(
    "teacher",
    "ema",
    ("ema", "student"),
    "Weights that make the unlabeled targets: the EMA teacher or the student.",
)
flags.DEFINE_enum(
    "eval_weights", "ema", ("ema", "student"), "Weights validated, kept as best and exported."
)
flags.DEFINE_float("lambda_c", 20.0, "Weight of the consistency loss (0 = off).")
flags.DEFINE_float("lambda_sc", 3.0, "Weight of the structured consistency loss (0 = off).")
flags.DEFINE_integer(
    "rampup_steps",
    0,
    "Ramp the unlabeled loss weights up over this many first steps, "
    "exp(-5 (1 - t)^2) (Mean Teacher); 0 = constant weights (the paper).",
)
flags.DEFINE_enum(
    "scl_mode",
    "pairs",
    ("exact", "pairs", "pixels"),
    "Structured consistency loss: all pairs, or Npair sampled pairs/pixels.",
)
flags.DEFINE_integer("num_pairs", 9000, "Npair of the sampled structured consistency modes.")
flags.DEFINE_integer("relax_window", 3, "Boundary label relaxation window (1 = plain CE).")
flags.DEFINE_enum(
    "mixed_precision",
    "none",
    ("none", "float16", "bfloat16"),
    "Run the networks in this precision (losses stay float32).",
)
flags.DEFINE_enum(
    "strategy",
    "auto",
    ("auto", "default", "mirrored", "multi_worker"),
    "Distribution: auto picks multi_worker with a multi-worker TF_CONFIG, "
    "mirrored with several GPUs, else default.",
)
flags.DEFINE_bool("jit_compile", False, "XLA-compile the whole train step.")
flags.DEFINE_integer("checkpoint_every", 1000, "Save a checkpoint every this many steps.")
flags.DEFINE_integer("keep_checkpoints", 3, "Recent checkpoints kept (plus the best).")
flags.DEFINE_integer("eval_every", 5000, "Validate every this many steps (and at the end).")
flags.DEFINE_integer("eval_images", 0, "Validate on at most this many images (0 = all).")
flags.DEFINE_integer("log_every", 10, "Write scalars every this many steps.")
flags.DEFINE_integer("image_every", 500, "Write an image panel every this many steps (0 = off).")

# --- evaluation, prediction and export: shared --------------------------------------------------
flags.DEFINE_string(
    "model",
    None,
    "Model to run: a model dir of scl_tf.train, a .keras file, a SavedModel "
    "folder or an .onnx file.",
)
flags.DEFINE_enum(
    "checkpoint",
    "final",
    ("final", "latest", "best"),
    "For a model dir: its exported model.keras (final), or its latest or best "
    "checkpoint (weights chosen by --eval_weights).",
)
flags.DEFINE_string("output", None, "Output file or folder of the command.")

# --- export -------------------------------------------------------------------------------------
flags.DEFINE_bool(
    "untrained",
    False,
    "to_saved_model: export a randomly initialised --backbone/--output_stride "
    "model with --dataset's classes instead of --model_dir (latency benchmarks).",
)
flags.DEFINE_string(
    "source", None, "to_onnx: a model dir of scl_tf.train or a SavedModel of to_saved_model."
)
flags.DEFINE_integer("opset", 17, "to_onnx: ONNX opset (13 to 18).")
flags.DEFINE_bool(
    "fp16",
    False,
    "to_onnx: float16 weights and arithmetic (inputs and outputs stay float32). "
    "benchmark: run in float16 (TensorRT fp16 engines; for cuda and cpu, an fp32 "
    "model is converted in memory).",
)
flags.DEFINE_string(
    "input_size",
    "dynamic",
    "to_onnx: HxW to fix the input to (a multiple of the output stride), or dynamic for any size.",
)
flags.DEFINE_bool(
    "onnx_probabilities",
    False,
    "to_onnx: also output the softmax probabilities (slow in ONNX Runtime on CPU; "
    "by default the model outputs logits and labels).",
)
flags.DEFINE_string(
    "parity_dir",
    "data/camvid_mini/val",
    "to_onnx: real frames compared with TensorFlow besides random images; empty "
    "= random images only.",
)
flags.DEFINE_integer("parity_frames", 2, "to_onnx: number of --parity_dir frames compared.")
flags.DEFINE_string(
    "provider",
    "cpu",
    "benchmark, predict_onnx: ONNX Runtime execution provider: cpu, cuda or tensorrt.",
)
flags.DEFINE_integer(
    "device_id", 0, "benchmark, predict_onnx: GPU of the cuda / tensorrt provider."
)
flags.DEFINE_string(
    "cudnn_conv_algo_search",
    "EXHAUSTIVE",
    "cuda provider: EXHAUSTIVE, HEURISTIC or DEFAULT convolution algorithm search.",
)
flags.DEFINE_string(
    "trt_engine_cache",
    None,
    "tensorrt provider: folder caching built engines across runs; unset = off.",
)
flags.DEFINE_integer("batch", 1, "benchmark: images per call.")
flags.DEFINE_string("size", "512x1024", "benchmark: input HxW.")
flags.DEFINE_integer("iters", 30, "benchmark: timed calls of each runtime.")
flags.DEFINE_integer("warmup", 3, "benchmark: untimed calls of each runtime first.")
flags.DEFINE_string(
    "saved_model",
    None,
    "benchmark: a SavedModel of to_saved_model timed side by side with --model "
    "(needs TensorFlow); unset = ONNX Runtime only.",
)
flags.DEFINE_string("image", None, "predict_onnx: the image to segment.")

# --- evaluation and prediction ------------------------------------------------------------------
flags.DEFINE_list(
    "scales",
    ["1.0"],
    "Inference scales; softmax probabilities are averaged at input resolution "
    "(the paper: 0.5,1.0,2.0).",
)
flags.DEFINE_bool("flip", False, "Also infer on the mirrored image and average (the paper: on).")
flags.DEFINE_string(
    "tile",
    "",
    "Cut images (at each scale) larger than this, HxW or N, into overlapping "
    "tiles run one by one and blended; empty = whole images (the paper: "
    "1024x1024).",
)
flags.DEFINE_string(
    "tile_stride", "", "Step between tiles, HxW or N; empty = 2/3 of --tile (1/3 overlap)."
)
flags.DEFINE_string("eval_split", "val", "evaluate: the split scored.")
flags.DEFINE_string(
    "predictions",
    None,
    "evaluate: score this folder of prediction PNGs (named like the images, in "
    "--format labelIds or trainIds) instead of running a model.",
)
flags.DEFINE_string(
    "input", None, "predict: a folder of images (searched recursively) or a glob pattern."
)
flags.DEFINE_enum(
    "format",
    "labelIds",
    ("labelIds", "trainIds", "color", "overlay"),
    "Prediction files: the dataset's label values (Cityscapes labelIds, ready for "
    "the benchmark), train ids, a colour map, or the colour map over the image.",
)
flags.DEFINE_float("overlay_alpha", 0.5, "predict --format=overlay: opacity of the colours.")


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
    seed: int = 0

    def __post_init__(self):
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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The DeepLabV3+ to build (see scl_tf.models.build_model)."""

    backbone: str = "wrn38"
    output_stride: int = 8
    low_level_stride: int | None = None
    weights: str | None = None
    sync_batchnorm: bool = True
    decoder_convs: int = 2
    decoder_kernel_size: int = 3

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ConfigError(f"--backbone: expected one of {BACKBONES}, got {self.backbone!r}")
        if self.output_stride not in (8, 16):
            raise ConfigError(f"--output_stride: must be 8 or 16, got {self.output_stride}")
        if self.low_level_stride not in (None, 2, 4):
            raise ConfigError(
                f"--low_level_stride: must be 2 or 4 (or 0 for the default), "
                f"got {self.low_level_stride}"
            )
        if self.weights not in (None, "imagenet") and not os.path.isfile(self.weights):
            raise ConfigError(f"--weights: no such file: {self.weights}")
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
    def semi_supervised(self) -> bool:
        """False for the supervised baseline (both unlabeled weights 0)."""
        return self.lambda_c > 0 or self.lambda_sc > 0

    def __post_init__(self):
        for name in ("lambda_c", "lambda_sc", "weight_decay", "learning_rate", "momentum"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name}: must be >= 0, got {getattr(self, name)}")
        if self.steps < 0 or (self.steps == 0 and self.epochs <= 0):
            raise ConfigError(
                f"--steps/--epochs: need steps > 0 or epochs > 0, got {self.steps}, {self.epochs}"
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
        labeled_list=values.labeled_list or None,
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


def model_from_flags(values=flags.FLAGS) -> ModelConfig:
    """ModelConfig from parsed flags."""
    return ModelConfig(
        backbone=values.backbone,
        output_stride=values.output_stride,
        low_level_stride=values.low_level_stride or None,
        weights=values.weights or None,
        sync_batchnorm=values.sync_batchnorm,
        decoder_convs=values.decoder_convs,
        decoder_kernel_size=values.decoder_kernel_size,
    )


def train_from_flags(values=flags.FLAGS) -> TrainConfig:
    """TrainConfig from parsed flags."""
    return TrainConfig(
        **{field.name: getattr(values, field.name) for field in dataclasses.fields(TrainConfig)}
    )


def from_flags(values=flags.FLAGS) -> Config:
    """The whole Config from parsed flags; raises ConfigError naming the flag at fault."""
    return Config(
        data=data_from_flags(values),
        pipeline=pipeline_from_flags(values),
        model=model_from_flags(values),
        train=train_from_flags(values),
        model_dir=values.model_dir,
    )


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
        if not self.scales or min(self.scales) <= 0:
            raise ConfigError(f"--scales: need one or more positive scales, got {self.scales}")
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


def inference_from_flags(values=flags.FLAGS) -> InferenceConfig:
    """InferenceConfig from parsed flags."""
    try:
        scales = tuple(float(scale) for scale in values.scales)
    except ValueError:
        raise ConfigError(f"--scales: expected numbers, got {values.scales}") from None
    return InferenceConfig(
        scales=scales,
        flip=values.flip,
        tile=parse_size("tile", values.tile) if values.tile else None,
        tile_stride=parse_size("tile_stride", values.tile_stride) if values.tile_stride else None,
    )
