"""The command-line flags of every command, and the configs built from them.

Nothing is defined at import: each entry point calls its `define_*_flags()` before parsing
(TF Model Garden's habit), so importing the library registers no flag and each command's
`--help` lists its own (a definer makes the flags it defined key flags of the running command,
the ones absl's --help shows). Defaults are the config dataclasses' own (`scl_tf.config`), and
each list of choices is the library's (backbones, SCL modes, strategies, formats, providers).
Calling a definer twice is harmless (tests define several commands' flags in one process).
"""

from __future__ import annotations

import dataclasses
import functools
import sys

from absl import flags

from scl_tf import config as config_lib
from scl_tf.config import (
    CHECKPOINTS,
    DATASETS,
    WEIGHTS,
    CalibrationConfig,
    Config,
    DataConfig,
    ExportConfig,
    InferenceConfig,
    ModelConfig,
    PipelineConfig,
    PredictConfig,
    TFLiteConfig,
    TrainConfig,
)

FLAGS = flags.FLAGS


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _command(define):
    """A command's flag definer: defines once, then lists every flag this module defined under
    the running command's --help (absl's --help shows the key flags of the main module,
    `sys.argv[0]`, and the flags are defined here, not there)."""

    @functools.cache
    @functools.wraps(define)
    def define_once() -> None:
        define()
        for flag in FLAGS.get_key_flags_for_module(__name__):
            FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    return define_once


def _clearable(parser_class: type[flags.ArgumentParser]) -> flags.ArgumentParser:
    """An absl parser whose empty value is None: `--flag=` clears what a flag file set."""

    class Clearable(parser_class):
        def parse(self, argument):
            return None if argument == "" else super().parse(argument)

    return Clearable()


@_command
def define_data_flags() -> None:
    """Which files to read (DataConfig): train, evaluate, predict, check, to_saved_model."""
    from scl_tf.data.labels import CITYSCAPES_LABEL_FORMATS

    flags.DEFINE_enum("dataset", None, DATASETS, "Dataset layout to read.")
    flags.DEFINE_string(
        "data_dir",
        None,
        "Dataset root: the Cityscapes root (leftImg8bit/, gtFine/) or the CamVid "
        "folder in the SegNet layout (train/, trainannot/, val/, valannot/).",
    )
    flags.DEFINE_enum(
        "cityscapes_label_format",
        DataConfig.cityscapes_label_format,
        CITYSCAPES_LABEL_FORMATS,
        "Cityscapes: read *_gtFine_labelIds.png (mapped to train ids in the graph) "
        "or *_gtFine_labelTrainIds.png.",
    )
    flags.DEFINE_bool(
        "use_coarse_unlabeled",
        DataConfig.use_coarse_unlabeled,
        "Cityscapes: add leftImg8bit/train_extra/** (the coarse set's images) to "
        "the unlabeled pool, ignoring their annotations.",
    )
    flags.DEFINE_list(
        "unlabeled_dirs",
        [],
        "Extra folders of unlabeled images (searched recursively for .png/.jpg).",
    )
    flags.DEFINE_string("image_dir", None, "folder dataset: training images.")
    flags.DEFINE_string(
        "mask_dir",
        None,
        "folder dataset: training masks, single-channel 8-bit PNGs paired with "
        "the images by file stem (plus --mask_suffix).",
    )
    flags.DEFINE_string("val_image_dir", None, "folder dataset: validation images.")
    flags.DEFINE_string("val_mask_dir", None, "folder dataset: validation masks.")
    flags.DEFINE_string(
        "mask_suffix",
        DataConfig.mask_suffix,
        "folder dataset: mask stem = image stem + this suffix.",
    )
    flags.DEFINE_integer("num_classes", None, "folder dataset: number of classes C.")
    flags.DEFINE_integer(
        "ignore_value",
        DataConfig.ignore_value,
        "folder dataset: stored value of unlabelled pixels.",
    )
    flags.DEFINE_list(
        "id_mapping",
        [],
        "folder dataset: stored value to train id, as value:train_id pairs "
        "(e.g. 0:255,1:0,2:1). Empty: values 0..C-1 are the train ids.",
    )
    flags.DEFINE_list("class_names", [], "folder dataset: C class names.")
    flags.DEFINE(
        _clearable(flags.FloatParser),
        "labeled_fraction",
        None,
        "Fraction of train used as labeled, in (0, 1]; the rest is unlabeled. Empty "
        "(--labeled_fraction=) clears a flag file's fraction.",
        serializer=flags.ArgumentSerializer(),
    )
    flags.DEFINE(
        _clearable(flags.IntegerParser),
        "labeled_count",
        None,
        "Number of train pairs used as labeled. Empty (--labeled_count=) clears a flag file's "
        "count.",
        serializer=flags.ArgumentSerializer(),
    )
    flags.DEFINE_string(
        "labeled_list",
        None,
        "File naming the labeled train images, one per line (relative path, "
        "file name or stem). Empty (--labeled_list=) clears a flag file's list.",
    )
    flags.DEFINE_integer("split_seed", DataConfig.split_seed, "Seed of the labeled subset choice.")


@functools.cache
def _define_model_dir_flag() -> None:
    flags.DEFINE_string(
        "model_dir", None, "The run's folder: checkpoints, logs, the labeled list, model.keras."
    )


@functools.cache
def _define_architecture_flags() -> None:
    from scl_tf.models import BACKBONES

    flags.DEFINE_enum("backbone", ModelConfig.backbone, sorted(BACKBONES), "DeepLabV3+ backbone.")
    flags.DEFINE_integer(
        "output_stride", ModelConfig.output_stride, "Output stride of the backbone (8 or 16)."
    )


@functools.cache
def _define_eval_weights_flag() -> None:
    flags.DEFINE_enum(
        "eval_weights",
        TrainConfig.eval_weights,
        WEIGHTS,
        "Weights validated, kept as best and exported (train); for a model dir, "
        "the weights loaded (default: the run's own).",
    )


@_command
def define_train_flags() -> None:
    """python -m scl_tf.train: Config (data, pipeline, model, training)."""
    from scl_tf.losses.consistency import CLASS_REDUCTIONS
    from scl_tf.losses.structured import MODES
    from scl_tf.training.distribute import STRATEGIES
    from scl_tf.training.optim import WEIGHT_DECAY_MODES
    from scl_tf.training.scl_model import CONFIDENCE_FORMS

    define_data_flags()
    _define_model_dir_flag()
    _define_architecture_flags()
    _define_eval_weights_flag()
    pipeline = PipelineConfig
    flags.DEFINE_string(
        "crop_size",
        _size_text(pipeline.crop_size),
        "Training crop, HxW (or one number for a square).",
    )
    flags.DEFINE_integer(
        "labeled_batch_size", pipeline.labeled_batch_size, "Labeled images per replica and step."
    )
    flags.DEFINE_integer(
        "unlabeled_batch_size",
        pipeline.unlabeled_batch_size,
        "Unlabeled CutMix pairs per replica and step.",
    )
    flags.DEFINE_float("scale_min", pipeline.scale_min, "Smallest random scale.")
    flags.DEFINE_float("scale_max", pipeline.scale_max, "Largest random scale.")
    flags.DEFINE_bool("random_flip", pipeline.random_flip, "Random horizontal flip.")
    flags.DEFINE_float(
        "color_jitter",
        pipeline.color_jitter,
        "Strength of random brightness, contrast, saturation and hue; 0 = off.",
    )
    flags.DEFINE_float(
        "blur_prob", pipeline.blur_prob, "Probability of a Gaussian blur (sigma 0.15 to 1.3)."
    )
    flags.DEFINE_float(
        "class_uniform_pct",
        pipeline.class_uniform_pct,
        "Share of labeled crops centred on a class chosen uniformly (Zhu et al.).",
    )
    flags.DEFINE_integer(
        "class_uniform_tiles",
        pipeline.class_uniform_tiles,
        "Class-uniform index: about this many tiles per image, one stored pixel "
        "per class and tile.",
    )
    flags.DEFINE_integer(
        "cutmix_boxes", pipeline.cutmix_boxes, "CutMix boxes per unlabeled pair (N)."
    )
    flags.DEFINE_integer(
        "scl_boxes", pipeline.scl_boxes, "Last CutMix boxes scored by the structured loss (Nbox)."
    )
    flags.DEFINE_float(
        "cutmix_area", pipeline.cutmix_area, "Expected share of the image covered by the boxes."
    )
    flags.DEFINE_float(
        "cutmix_min_box_cells",
        pipeline.cutmix_min_box_cells,
        "The box rule: N becomes the largest count, at most --cutmix_boxes, whose typical "
        "box spans at least this many output cells (crop / --output_stride) a side, and "
        "Nbox keeps the ratio --scl_boxes / --cutmix_boxes; 0 = off (N as given). The "
        "paper's 32 boxes on 896x896 crops at stride 8 span 17.5 cells; on 256x320 at 16, 2.8.",
    )
    flags.DEFINE_integer("seed", pipeline.seed, "Seed of all data randomness (and of the run).")

    model = ModelConfig
    flags.DEFINE_integer(
        "low_level_stride",
        0,
        "Stride of the decoder's low-level feature (2 or 4); 0 = the backbone's "
        "default (2 for wrn38, 4 otherwise).",
    )
    flags.DEFINE_string(
        "weights",
        model.weights,
        "imagenet: the backbone's ImageNet weights (efficientnet_lite0 from an "
        "installed package; mobilenetv2, resnet50, resnet101 through Keras' "
        "cache); a model dir of scl_tf.train, to warm-start from its model.keras (the run's "
        "--eval_weights; the teacher starts equal to it, and another backbone, head or class "
        "count is refused); or a file: a full model (.weights.h5, or .keras), or ImageNet "
        "backbone weights (.h5). Empty (--weights=) clears a flag file's weights: random "
        "initialisation.",
    )
    flags.DEFINE_bool(
        "sync_batchnorm", model.sync_batchnorm, "Synchronized BatchNormalization across replicas."
    )
    flags.DEFINE_integer(
        "decoder_convs",
        model.decoder_convs,
        "Convolutions after the decoder's concatenation (DeepLabV3+ and the "
        "paper: 2); --decoder_convs=1 --decoder_kernel_size=1 is keras-hub's "
        "lighter head.",
    )
    flags.DEFINE_integer(
        "decoder_kernel_size",
        model.decoder_kernel_size,
        "Kernel size of the decoder's convolutions, 1 or 3 (DeepLabV3+ and the paper: 3).",
    )

    train = TrainConfig
    flags.DEFINE_float("epochs", train.epochs, "Training length in epochs over the labeled set.")
    flags.DEFINE_integer(
        "steps", train.steps, "Training length in steps; overrides --epochs when > 0."
    )
    flags.DEFINE_float("learning_rate", train.learning_rate, "Initial learning rate.")
    flags.DEFINE_float(
        "lr_power", train.lr_power, "Power of the polynomial learning-rate decay to 0."
    )
    flags.DEFINE_float("momentum", train.momentum, "SGD momentum.")
    flags.DEFINE_float("weight_decay", train.weight_decay, "SGD weight decay.")
    flags.DEFINE_enum(
        "weight_decay_mode",
        train.weight_decay_mode,
        WEIGHT_DECAY_MODES,
        "coupled: L2 added to the gradient before momentum (PyTorch, the paper); "
        "decoupled: Keras' weight_decay.",
    )
    flags.DEFINE_float(
        "ema_decay", train.ema_decay, "Teacher <- ema * teacher + (1 - ema) * student."
    )
    flags.DEFINE_enum(
        "teacher",
        train.teacher,
        WEIGHTS,
        "Weights that make the unlabeled targets: the EMA teacher or the student.",
    )
    flags.DEFINE_float("lambda_c", train.lambda_c, "Weight of the consistency loss (0 = off).")
    flags.DEFINE_float(
        "lambda_sc", train.lambda_sc, "Weight of the structured consistency loss (0 = off)."
    )
    flags.DEFINE_enum(
        "consistency_class_reduction",
        train.consistency_class_reduction,
        CLASS_REDUCTIONS,
        "How eq. 4's squared difference is reduced over the C classes: sum (the paper as "
        "written) or mean (PyTorch's mse_loss). No code of the paper is public; with mean, "
        "lambda_c 20 is 20 / C in the summed form (1.05 on Cityscapes: French et al.'s weight "
        "of 1, on which the paper builds), sum weighs the term C times more.",
    )
    flags.DEFINE_float(
        "confidence_threshold",
        train.confidence_threshold,
        "Gate the unlabeled terms on the teacher's confidence: target pixels whose top "
        "probability is >= this count as confident (French et al.: 0.97); 0 = off (the paper).",
    )
    flags.DEFINE_enum(
        "confidence_form",
        train.confidence_form,
        CONFIDENCE_FORMS,
        "With --confidence_threshold: batch scales both unlabeled terms by the batch's share "
        "of confident target pixels (French et al.); pixel counts only confident pixels in "
        "L_c and only pairs of two in L_sc, each still averaged over all pixels (FixMatch).",
    )
    flags.DEFINE_integer(
        "rampup_steps",
        train.rampup_steps,
        "Ramp the unlabeled loss weights up over this many first steps, "
        "exp(-5 (1 - t)^2) (Mean Teacher); 0 = constant weights (the paper).",
    )
    flags.DEFINE_enum(
        "scl_mode",
        train.scl_mode,
        MODES,
        "Structured consistency loss: all pairs, or Npair sampled pairs/pixels.",
    )
    flags.DEFINE_integer(
        "num_pairs", train.num_pairs, "Npair of the sampled structured consistency modes."
    )
    flags.DEFINE_integer(
        "relax_window", train.relax_window, "Boundary label relaxation window (1 = plain CE)."
    )
    flags.DEFINE_enum(
        "mixed_precision",
        train.mixed_precision,
        tuple(config_lib.MIXED_POLICIES),
        "Run the networks in this precision (losses stay float32).",
    )
    flags.DEFINE_enum(
        "strategy",
        train.strategy,
        STRATEGIES,
        "Distribution: auto picks multi_worker with a multi-worker TF_CONFIG, "
        "mirrored with several GPUs, else default.",
    )
    flags.DEFINE_bool("jit_compile", train.jit_compile, "XLA-compile the whole train step.")
    flags.DEFINE_integer(
        "checkpoint_every", train.checkpoint_every, "Save a checkpoint every this many steps."
    )
    flags.DEFINE_integer(
        "keep_checkpoints", train.keep_checkpoints, "Recent checkpoints kept (plus the best)."
    )
    flags.DEFINE_integer(
        "eval_every", train.eval_every, "Validate every this many steps (and at the end)."
    )
    flags.DEFINE_integer(
        "eval_images", train.eval_images, "Validate on at most this many images (0 = all)."
    )
    flags.DEFINE_integer("log_every", train.log_every, "Write scalars every this many steps.")
    flags.DEFINE_integer(
        "image_every", train.image_every, "Write an image panel every this many steps (0 = off)."
    )


# Flags of the same name in several commands are defined by one function each, so that one
# process may define several commands' flags.
@functools.cache
def _define_model_flag() -> None:
    flags.DEFINE_string(
        "model",
        None,
        "Model to run: a model dir of scl_tf.train, a .keras file, a SavedModel "
        "folder or an .onnx file (export/ commands: the .onnx file).",
    )


@functools.cache
def _define_output_flag() -> None:
    flags.DEFINE_string("output", None, "Output file or folder of the command.")


@functools.cache
def _define_fp16_flag() -> None:
    flags.DEFINE_bool(
        "fp16",
        ExportConfig.fp16,
        "to_onnx: float16 weights and arithmetic (inputs and outputs stay "
        "float32). benchmark: run in float16 (TensorRT fp16 engines; for cuda and "
        "cpu, an fp32 model is converted in memory).",
    )


@functools.cache
def _define_format_flag() -> None:
    from scl_tf.eval.overlay import FORMATS

    flags.DEFINE_enum(
        "format",
        PredictConfig.format,
        FORMATS,
        "Prediction files: the dataset's label values (Cityscapes labelIds, ready "
        "for the benchmark), train ids, a colour map, or the colour map over the "
        "image; evaluate --predictions reads labelIds or trainIds.",
    )


@functools.cache
def _define_model_source_flags() -> None:
    """The trained model a command loads: evaluate, predict, export."""
    _define_model_dir_flag()
    _define_eval_weights_flag()
    _define_model_flag()
    _define_output_flag()
    flags.DEFINE_enum(
        "checkpoint",
        CHECKPOINTS[0],
        CHECKPOINTS,
        "For a model dir: its exported model.keras (final), or its latest or best "
        "checkpoint (weights chosen by --eval_weights).",
    )


@functools.cache
def _define_inference_flags() -> None:
    defaults = InferenceConfig
    flags.DEFINE_list(
        "scales",
        [f"{scale:g}" for scale in defaults.scales],
        "Inference scales; softmax probabilities are averaged at input resolution "
        "(the paper: 0.5,1.0,2.0).",
    )
    flags.DEFINE_bool(
        "flip", defaults.flip, "Also infer on the mirrored image and average (the paper: on)."
    )
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


@_command
def define_evaluate_flags() -> None:
    """python -m scl_tf.evaluate."""
    define_data_flags()
    _define_model_source_flags()
    _define_inference_flags()
    flags.DEFINE_string("eval_split", "val", "The split scored.")
    flags.DEFINE_string(
        "predictions",
        None,
        "Score this folder of prediction PNGs (named like the images, in "
        "--format labelIds or trainIds) instead of running a model.",
    )
    _define_format_flag()


@_command
def define_predict_flags() -> None:
    """python -m scl_tf.predict: PredictConfig (and the dataset's labels, if given)."""
    define_data_flags()
    _define_model_source_flags()
    _define_inference_flags()
    flags.DEFINE_string(
        "input", None, "A folder of images (searched recursively) or a glob pattern."
    )
    _define_format_flag()
    flags.DEFINE_float(
        "overlay_alpha", PredictConfig.overlay_alpha, "--format=overlay: opacity of the colours."
    )


@_command
def define_to_saved_model_flags() -> None:
    """export/to_saved_model.py."""
    define_data_flags()
    _define_architecture_flags()
    _define_model_source_flags()
    flags.DEFINE_bool(
        "untrained",
        False,
        "Export a randomly initialised --backbone/--output_stride model with "
        "--dataset's classes instead of --model_dir (latency benchmarks).",
    )


@functools.cache
def _define_conversion_flags() -> None:
    """The model converted and the parity check of the result: to_onnx and to_tflite."""
    _define_model_source_flags()
    flags.DEFINE_string(
        "source", None, "A model dir of scl_tf.train or a SavedModel of to_saved_model."
    )
    flags.DEFINE_string(
        "input_size",
        None,
        "HxW to fix the input to. to_onnx: a multiple of the output stride, default "
        "dynamic (any size); to_tflite: default "
        f"{_size_text(TFLiteConfig.input_size)}.",
    )
    flags.DEFINE_string(
        "parity_dir",
        ExportConfig.parity_dir,
        "Real frames compared with TensorFlow besides random images; empty = random "
        "images only (not for fp16 and int8, which are judged on real frames).",
    )
    flags.DEFINE_integer(
        "parity_frames",
        ExportConfig.parity_frames,
        "Number of --parity_dir frames compared, spread evenly over the sorted folder.",
    )
    flags.DEFINE_float(
        "min_fp16_agreement",
        ExportConfig.min_fp16_agreement,
        "fp16: the share of the --parity_dir frames' pixels, in (0, 1], whose label must "
        "equal the float32 model's; below it the model is not written.",
    )
    calibration = CalibrationConfig
    flags.DEFINE_string(
        "calibration",
        None,
        "int8: the frames it is calibrated on, a folder (searched recursively) or a glob "
        "pattern; unlabeled frames do.",
    )
    flags.DEFINE_integer(
        "calibration_count",
        calibration.calibration_count,
        "int8: calibrate on at most this many --calibration frames, spread evenly over them.",
    )
    flags.DEFINE_enum(
        "calibration_method",
        calibration.calibration_method,
        config_lib.CALIBRATION_METHODS,
        "int8 ONNX: how ONNX Runtime sets each activation's range from the --calibration "
        "frames (TFLite's converter has its own).",
    )
    flags.DEFINE_float(
        "min_agreement",
        calibration.min_agreement,
        "int8: the share of the --parity_dir frames' pixels, in (0, 1], whose label must "
        "equal the float32 model's; below it the model is not written.",
    )


@_command
def define_to_onnx_flags() -> None:
    """export/to_onnx.py: ExportConfig."""
    _define_conversion_flags()
    export = ExportConfig
    flags.DEFINE_integer(
        "opset",
        export.opset,
        f"ONNX opset ({config_lib.ONNX_OPSETS[0]} to {config_lib.ONNX_OPSETS[1]}).",
    )
    _define_fp16_flag()
    flags.DEFINE_bool(
        "int8",
        export.int8,
        "Quantize to int8 with ONNX Runtime (static, QDQ, per-channel weights), calibrated "
        "on --calibration; inputs and outputs stay float32.",
    )
    flags.DEFINE_bool(
        "onnx_probabilities",
        export.onnx_probabilities,
        "Also output the softmax probabilities (slow in ONNX Runtime on CPU; by "
        "default the model outputs logits and labels).",
    )


@_command
def define_to_tflite_flags() -> None:
    """export/to_tflite.py: TFLiteConfig."""
    _define_conversion_flags()
    flags.DEFINE_enum(
        "precision",
        TFLiteConfig.precision,
        config_lib.TFLITE_PRECISIONS,
        "fp32; fp16 weights; or int8 inside (full-integer, calibrated on --calibration) "
        "with float32 input and outputs.",
    )


@_command
def define_runtime_flags() -> None:
    """ONNX Runtime's execution provider: export/predict_onnx.py and export/benchmark.py."""
    from scl_tf.export.runtime import CUDNN_CONV_ALGO_SEARCHES, PROVIDERS, RuntimeOptions

    flags.DEFINE_integer(
        "device_id", RuntimeOptions.device_id, "GPU of the cuda / tensorrt provider."
    )
    flags.DEFINE_enum(
        "provider", RuntimeOptions.provider, sorted(PROVIDERS), "ONNX Runtime execution provider."
    )
    flags.DEFINE_enum(
        "cudnn_conv_algo_search",
        RuntimeOptions.cudnn_conv_algo_search,
        CUDNN_CONV_ALGO_SEARCHES,
        "cuda provider: convolution algorithm search.",
    )


@_command
def define_predict_onnx_flags() -> None:
    """export/predict_onnx.py."""
    define_runtime_flags()
    _define_model_flag()
    _define_output_flag()
    flags.DEFINE_string("image", None, "The image to segment.")


@_command
def define_benchmark_flags() -> None:
    """export/benchmark.py."""
    define_runtime_flags()
    _define_model_flag()
    _define_output_flag()
    _define_fp16_flag()
    flags.DEFINE_string(
        "saved_model",
        None,
        "A SavedModel of to_saved_model timed side by side with --model (needs "
        "TensorFlow); unset = ONNX Runtime only.",
    )
    flags.DEFINE_list(
        "models",
        [],
        "More models timed side by side with --model, each call in turn: .onnx files (ONNX "
        "Runtime on --provider, e.g. an int8 export) and .tflite files (LiteRT where "
        "installed, else tf.lite; their fixed --size and batch 1). Each gets its latency "
        "ratio to --model.",
    )
    flags.DEFINE_string(
        "trt_engine_cache",
        None,
        "tensorrt provider: folder caching built engines across runs; unset = off.",
    )
    flags.DEFINE_integer("batch", 1, "Images per call.")
    flags.DEFINE_string("size", "512x1024", "Input HxW.")
    flags.DEFINE_integer("iters", 30, "Timed calls of each runtime.")
    flags.DEFINE_integer("warmup", 3, "Untimed calls of each runtime first.")


# --- configs from parsed flags -------------------------------------------------------------------


def parse_id_mapping(pairs: list[str]) -> tuple[tuple[int, int], ...]:
    """['0:255', '1:0'] -> ((0, 255), (1, 0))."""
    mapping = []
    for pair in pairs:
        try:
            value, train_id = (int(part) for part in pair.split(":"))
        except ValueError:
            raise config_lib.ConfigError(
                f"--id_mapping: expected value:train_id, got {pair!r}"
            ) from None
        mapping.append((value, train_id))
    return tuple(mapping)


def data_config(values=FLAGS) -> DataConfig:
    """DataConfig from parsed flags."""
    fields = {field.name: values[field.name].value for field in dataclasses.fields(DataConfig)}
    return DataConfig(
        **fields
        | {
            "unlabeled_dirs": tuple(values.unlabeled_dirs),
            "id_mapping": parse_id_mapping(values.id_mapping),
            "class_names": tuple(values.class_names),
            "labeled_list": values.labeled_list or None,
        }
    )


def config(values=FLAGS) -> Config:
    """The whole Config of a training run from parsed flags; raises ConfigError naming the flag
    at fault."""

    def fields(cls, **overrides):
        return cls(
            **{field.name: values[field.name].value for field in dataclasses.fields(cls)}
            | overrides
        )

    return Config(
        data=data_config(values),
        pipeline=fields(
            PipelineConfig, crop_size=config_lib.parse_size("crop_size", values.crop_size)
        ),
        model=fields(
            ModelConfig,
            low_level_stride=values.low_level_stride or None,
            weights=values.weights or None,
        ),
        train=fields(TrainConfig),
        model_dir=values.model_dir,
    )


def inference_config(values=FLAGS) -> InferenceConfig:
    """InferenceConfig from parsed flags."""
    try:
        scales = tuple(float(scale) for scale in values.scales)
    except ValueError:
        raise config_lib.ConfigError(f"--scales: expected numbers, got {values.scales}") from None
    return InferenceConfig(
        scales=scales,
        flip=values.flip,
        tile=config_lib.parse_size("tile", values.tile) if values.tile else None,
        tile_stride=config_lib.parse_size("tile_stride", values.tile_stride)
        if values.tile_stride
        else None,
    )


def explicit_eval_weights(values=FLAGS) -> str | None:
    """--eval_weights if given on the command line (or in a flag file), else None: a model
    dir's own choice then applies."""
    return values.eval_weights if values["eval_weights"].present else None


def calibration_config(values=FLAGS) -> CalibrationConfig:
    """CalibrationConfig from parsed flags."""
    return CalibrationConfig(
        calibration=values.calibration or CalibrationConfig.calibration,
        calibration_count=values.calibration_count,
        calibration_method=values.calibration_method,
        min_agreement=values.min_agreement,
    )


def export_config(values=FLAGS) -> ExportConfig:
    """ExportConfig from parsed flags."""
    return ExportConfig(
        source=values.source,
        output=values.output,
        checkpoint=values.checkpoint,
        eval_weights=explicit_eval_weights(values),
        opset=values.opset,
        fp16=values.fp16,
        input_size=config_lib.parse_input_size(values.input_size)
        if values.input_size
        else ExportConfig.input_size,
        onnx_probabilities=values.onnx_probabilities,
        parity_dir=values.parity_dir,
        parity_frames=values.parity_frames,
        min_fp16_agreement=values.min_fp16_agreement,
        int8=values.int8,
        quantization=calibration_config(values),
    )


def tflite_config(values=FLAGS) -> TFLiteConfig:
    """TFLiteConfig from parsed flags."""
    return TFLiteConfig(
        source=values.source,
        output=values.output,
        checkpoint=values.checkpoint,
        eval_weights=explicit_eval_weights(values),
        precision=values.precision,
        input_size=config_lib.parse_size("input_size", values.input_size)
        if values.input_size
        else TFLiteConfig.input_size,
        parity_dir=values.parity_dir,
        parity_frames=values.parity_frames,
        min_fp16_agreement=values.min_fp16_agreement,
        quantization=calibration_config(values),
    )


def predict_config(values=FLAGS) -> PredictConfig:
    """PredictConfig from parsed flags."""
    return PredictConfig(
        model=values.model,
        input=values.input,
        output=values.output,
        model_dir=values.model_dir,
        format=values.format,
        overlay_alpha=values.overlay_alpha,
        checkpoint=values.checkpoint,
        eval_weights=explicit_eval_weights(values),
        inference=inference_config(values),
    )
