"""tf.data pipelines: the semi-supervised training stream and the validation stream.

A training element holds one batch of each kind:

    {"labeled":   {"image": float32 [B_l, h, w, 3], "label": int32 [B_l, h, w],
                   "photometric": float32 [B_l, 5]},
     "unlabeled": {"u_a": float32 [B_u, h, w, 3], "u_b": float32 [B_u, h, w, 3],
                   "boxes": int32 [B_u, N, 4],
                   "photometric_a": float32 [B_u, 5], "photometric_b": float32 [B_u, 5]}}

Images are RGB in [0, 255] (the models normalise), scaled, cropped and flipped; labels are train
ids with 255 = ignore. Two things are left to the train step, on the accelerator: the CutMix
masks, of which the element holds the boxes, and each image's colour jitter and blur, of which
it holds the parameters (`apply_photometric` applies them; see `augment.photometric_params`).

The stream is a pure function of the seed and the global sample number: which image a sample
reads (a stateless per-epoch permutation, or a class-uniform draw) and every augmentation draw
are stateless random functions of (seed, sample number). So a run resumes exactly by starting at
its step (no iterator state to save), and the global batch of a step is the same whether one
pipeline makes it (`strategy.experimental_distribute_dataset`) or several workers make their
parts (`strategy.distribute_datasets_from_function` with an input context).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from scl_tf.config import DataConfig, PipelineConfig
from scl_tf.data import augment, class_uniform, cutmix, datasets, decode, splits
from scl_tf.data.datasets import DatasetError, Sample
from scl_tf.data.labels import LabelSpec

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class TrainFiles:
    """The files of a semi-supervised run."""

    spec: LabelSpec
    root: str
    labeled: list[Sample]
    unlabeled: list[str]


def data_root(config: DataConfig) -> str:
    """The folder that names in lists and caches are relative to."""
    return config.image_dir if config.dataset == "folder" else config.data_dir


def train_files(config: DataConfig) -> TrainFiles:
    """Finds and header-checks the train split, chooses the labeled subset, and gathers the
    unlabeled pool: the rest of train plus extra images (`splits.write_labeled_list` records
    the choice in a run's model dir)."""
    spec = datasets.label_spec(config)
    root = data_root(config)
    train = datasets.find_pairs(config, "train")
    datasets.check_headers(train, f"{config.dataset} train split")
    labeled, rest = splits.choose_labeled(train, config, root)
    extra = datasets.find_extra_unlabeled(config)
    datasets.check_headers([Sample(path) for path in extra], "unlabeled images")
    return TrainFiles(spec, root, labeled, [sample.image for sample in rest] + extra)


def _element_seed(seed: int, sample) -> tf.Tensor:
    """int64 [2] stateless seed of one sample."""
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(sample, tf.int64)])


def _permuted(position, count: int, seed: int) -> tf.Tensor:
    """Item at `position` of an endless sequence of shuffled epochs over `count` items."""
    position = tf.cast(position, tf.int64)
    epoch_seed = tf.stack([tf.constant(seed, tf.int64), position // count])
    return tf.random.experimental.index_shuffle(position % count, epoch_seed, count - 1)


def sample_numbers(
    batch_size: int,
    num_replicas: int,
    start_step: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Endless global sample numbers that one input pipeline reads, in order.

    Step t's global batch is samples [t * G, (t + 1) * G), G = batch_size * num_replicas.
    Without an input context the one pipeline reads them all; with one, pipeline p of P reads
    its contiguous share [t * G + p * G / P, t * G + (p + 1) * G / P) of every step.
    """
    pipelines, pipeline_id = 1, 0
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        num_replicas = input_context.num_replicas_in_sync
    global_batch = batch_size * num_replicas
    if global_batch % pipelines:
        raise DatasetError(
            f"global batch {global_batch} does not split over {pipelines} input pipelines"
        )
    local = global_batch // pipelines
    return tf.data.Dataset.counter(start_step * local).map(
        lambda j: (j // local) * global_batch + pipeline_id * local + j % local
    )


def _augmented_crop(image, seed, config: PipelineConfig, label=None, center=None):
    """Random scale/crop/flip of a uint8 image (and of its label values), and the parameters
    of its photometric change.

    Args:
      image: uint8 [H, W, 3]; seed: int [2].
      label: None or (values uint8 [H, W], value_to_train_id table, path for errors).
      center: None or (centred? bool, yx int32 [2]): centre the crop on yx when centred.
    Returns:
      float32 [h, w, 3], float32 [5] photometric parameters, and int32 [h, w] train ids when
      `label` is given.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image_size = tf.shape(image)[:2]
    scales = (config.scale_min, config.scale_max)
    window = augment.crop_window(seeds[0], image_size, config.crop_size, scales)
    if center is not None:
        centered, yx = center
        window = tf.where(
            centered,
            augment.crop_window(seeds[0], image_size, config.crop_size, scales, yx),
            window,
        )
    flip = tf.logical_and(config.random_flip, tf.random.stateless_uniform([], seeds[1]) < 0.5)
    cropped = augment.crop_image(image, window, config.crop_size, flip)
    params = augment.photometric_params(seeds[2], config.color_jitter, config.blur_prob)
    if label is None:
        return cropped, params
    values, table, path = label
    return cropped, params, augment.crop_label(values, window, config.crop_size, flip, table, path)


def _labeled_choice(
    sample, num_images: int, config: PipelineConfig, sampler: class_uniform.CenterSampler | None
):
    """(image index, centred?, centre yx) of one labeled sample: a class-uniform draw with
    probability class_uniform_pct, else the next image of the shuffled epochs."""
    regular = tf.cast(_permuted(sample, num_images, config.seed), tf.int32)
    if sampler is None:
        return regular, tf.constant(False), tf.zeros([2], tf.int32)
    centered = (
        tf.random.stateless_uniform([], _element_seed(config.seed + 1, sample))
        < config.class_uniform_pct
    )
    image_index, yx = sampler(_element_seed(config.seed + 2, sample))
    return tf.where(centered, image_index, regular), centered, yx


def labeled_dataset(
    files: TrainFiles,
    config: PipelineConfig,
    samples: tf.data.Dataset,
    batch_size: int,
    verbose: bool = True,
) -> tf.data.Dataset:
    """Batches {"image": float32 [B, h, w, 3], "label": int32 [B, h, w], "photometric":
    float32 [B, 5]} of the given global sample numbers."""
    if not files.labeled:
        raise DatasetError("the labeled set is empty")
    sampler = None
    if config.class_uniform_pct > 0:
        index = class_uniform.build_index(
            [sample.label for sample in files.labeled],
            files.spec,
            config.class_uniform_tiles,
            class_uniform.cache_dirs(files.root),
            verbose,
        )
        sampler = class_uniform.CenterSampler(index)
    image_paths = tf.constant([sample.image for sample in files.labeled])
    label_paths = tf.constant([sample.label for sample in files.labeled])
    table = files.spec.value_to_train_id

    def load(sample):
        index, centered, yx = _labeled_choice(sample, len(files.labeled), config, sampler)
        label_path = tf.gather(label_paths, index)
        image, params, label = _augmented_crop(
            decode.read_image(tf.gather(image_paths, index)),
            _element_seed(config.seed + 3, sample),
            config,
            label=(decode.read_label_values(label_path), table, label_path),
            center=(centered, yx),
        )
        return {"image": image, "label": label, "photometric": params}

    return samples.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).batch(
        batch_size, drop_remainder=True
    )


def unlabeled_dataset(
    files: TrainFiles, config: PipelineConfig, samples: tf.data.Dataset, batch_size: int
) -> tf.data.Dataset:
    """Batches {"u_a", "u_b": float32 [B, h, w, 3], "boxes": int32 [B, N, 4], "photometric_a",
    "photometric_b": float32 [B, 5]} of the given global sample numbers: two different
    unlabeled images per pair (one if the pool has one), augmented independently."""
    if not files.unlabeled:
        raise DatasetError(
            "the unlabeled pool is empty: lower --labeled_fraction/--labeled_count, "
            "or add --unlabeled_dirs / --use_coarse_unlabeled"
        )
    paths = tf.constant(files.unlabeled)
    count = len(files.unlabeled)
    height, width = config.crop_size

    def load(sample):
        seeds = tf.random.experimental.stateless_split(_element_seed(config.seed + 4, sample), 3)
        (u_a, params_a), (u_b, params_b) = (
            _augmented_crop(
                decode.read_image(
                    tf.gather(paths, _permuted(2 * sample + i, count, config.seed + 5))
                ),
                seeds[i],
                config,
            )
            for i in range(2)
        )
        boxes = cutmix.sample_boxes(
            seeds[2], height, width, config.cutmix_boxes, config.cutmix_area
        )
        return {
            "u_a": u_a,
            "u_b": u_b,
            "boxes": boxes,
            "photometric_a": params_a,
            "photometric_b": params_b,
        }

    return samples.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).batch(
        batch_size, drop_remainder=True
    )


def train_dataset(
    files: TrainFiles,
    config: PipelineConfig,
    num_replicas: int = 1,
    start_step: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    with_unlabeled: bool = True,
    verbose: bool = True,
) -> tf.data.Dataset:
    """The training stream (see the module docstring), from step `start_step` on.

    Without `input_context`: global batches (per-replica batch sizes * num_replicas), for
    `strategy.experimental_distribute_dataset`. With it (inside
    `strategy.distribute_datasets_from_function`): this pipeline's per-replica batches.
    with_unlabeled=False (supervised baseline) leaves the "unlabeled" part out and reads no
    unlabeled image.
    """

    def batches(per_replica: int):
        samples = sample_numbers(per_replica, num_replicas, start_step, input_context)
        return samples, per_replica if input_context is not None else per_replica * num_replicas

    labeled = labeled_dataset(files, config, *batches(config.labeled_batch_size), verbose)
    if not with_unlabeled:
        dataset = labeled.map(lambda batch: {"labeled": batch})
    else:
        unlabeled = unlabeled_dataset(files, config, *batches(config.unlabeled_batch_size))
        dataset = tf.data.Dataset.zip(labeled, unlabeled).map(
            lambda lab, unl: {"labeled": lab, "unlabeled": unl}
        )
    options = tf.data.Options()
    options.deterministic = True
    # The stream is already split by sample number; auto-sharding would split it again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(AUTOTUNE)


# Which image each photometric parameter key of an element belongs to.
PHOTOMETRIC_KEYS = {
    "labeled": {"image": "photometric"},
    "unlabeled": {"u_a": "photometric_a", "u_b": "photometric_b"},
}


def apply_photometric(element):
    """The element with each image's colour jitter and blur applied and its parameters gone.

    Called by the train step (on the accelerator); images whose parameters the element does not
    hold (a hand-made batch) are left as they are.

    Args:
      element: a training element (see the module docstring), or one replica's part of it.
    Returns:
      the element without the "photometric*" entries.
    """
    result = {}
    for part, batch in element.items():
        batch = dict(batch)
        for image_key, params_key in PHOTOMETRIC_KEYS.get(part, {}).items():
            if params_key in batch:
                batch[image_key] = augment.apply_photometric(
                    batch[image_key], batch.pop(params_key)
                )
        result[part] = batch
    return result


def eval_dataset(samples: list[Sample], spec: LabelSpec) -> tf.data.Dataset:
    """Whole images, no augmentation, one per batch (sizes may differ):
    {"image": float32 [1, H, W, 3], "label": int32 [1, H, W], "path": string [1]}."""
    if not samples:
        raise DatasetError("the evaluation split is empty")
    table = spec.value_to_train_id

    def load(image_path, label_path):
        values = decode.read_label_values(label_path)
        return {
            "image": tf.cast(decode.read_image(image_path), tf.float32),
            "label": decode.to_train_ids(values, table, label_path),
            "path": image_path,
        }

    return (
        tf.data.Dataset.from_tensor_slices(([s.image for s in samples], [s.label for s in samples]))
        .map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        .batch(1)
        .prefetch(AUTOTUNE)
    )
