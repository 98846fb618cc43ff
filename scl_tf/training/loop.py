"""The training run: build, resume, step, log, validate, checkpoint, export.

`train(config)` is what `python -m scl_tf.train` runs. It drives `SCLModel.train_step` under a
tf.distribute strategy with its own loop (rather than `Model.fit`) so that a run resumes at the
exact step, learning rate, teacher and input position, saves on SIGINT/SIGTERM, and stops on a
non-finite loss naming the step and the term.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal

import keras
import numpy as np
import tensorflow as tf

from scl_tf import runs
from scl_tf.config import Config, ConfigError
from scl_tf.data import check, class_uniform, datasets, pipeline, preflight, splits
from scl_tf.eval import metrics
from scl_tf.training import summaries
from scl_tf.training.checkpoints import CheckpointError, RunCheckpoints
from scl_tf.training.distribute import is_chief, select_strategy
from scl_tf.training.optim import build_optimizer
from scl_tf.training.scl_model import CONFIDENT_SHARE, LOSS_TERMS, SCLModel, StepConfig
from scl_tf.training.validation import validate


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss, skipped updates, a file gone bad); the one-line
    message names the step and the term or file."""


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run reports, and its model."""

    model: SCLModel
    step: int
    total_steps: int
    stopped_early: bool
    last_logs: dict
    val_miou: float | None
    export_path: str | None
    updates: int  # optimizer updates made by this process (float16 loss scaling may skip)


def total_steps(config: Config, num_labeled: int, num_replicas: int) -> int:
    """--steps, or --epochs over the labeled set at the global labeled batch."""
    if config.train.steps > 0:
        return config.train.steps
    global_batch = config.pipeline.labeled_batch_size * num_replicas
    return max(1, math.ceil(config.train.epochs * num_labeled / global_batch))


def check_crop_fits(files: pipeline.TrainFiles, config: Config) -> None:
    """Stops when --crop_size exceeds the smallest labeled image at --scale_max: such crops
    would be mostly padding (ignore) and the run would learn little."""
    smallest = datasets.smallest_size([sample.image for sample in files.labeled])
    reach = [int(side * config.pipeline.scale_max) for side in smallest]
    crop = config.pipeline.crop_size
    if crop[0] > reach[0] or crop[1] > reach[1]:
        raise ConfigError(
            f"--crop_size={crop[0]}x{crop[1]} is larger than the smallest labeled image "
            f"({smallest[0]}x{smallest[1]}) at --scale_max={config.pipeline.scale_max} "
            f"({reach[0]}x{reach[1]}): crops would be mostly padding"
        )


def _optimizer(config: Config, steps: int) -> keras.optimizers.Optimizer:
    train = config.train
    optimizer = build_optimizer(
        train.learning_rate,
        steps,
        train.lr_power,
        train.momentum,
        train.weight_decay,
        train.weight_decay_mode,
    )
    if train.mixed_precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class _StopRequest:
    """Turns SIGINT/SIGTERM into a request to save and stop after the current step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame):
        if self.signal_name is not None:  # a second signal: stop now
            signal.signal(number, self._previous[number])
            signal.raise_signal(number)
        self.signal_name = signal.Signals(number).name

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)


# Loss scaling halves its scale at every skipped step: 20 in a row take it from 2**15 to 2**-5,
# where overflow is no longer what stops the updates (float16 does not work for this model here).
MAX_SKIPPED_STEPS = 20
# Checked first: a bad term makes the total bad too, and the message should name the culprit.
_TERMS_FIRST = (*(term for term in LOSS_TERMS if term != "loss"), "loss")


def updates_made(optimizer: keras.optimizers.Optimizer) -> int:
    """The optimizer's update count; `int()` of a Keras variable fails on a MirroredVariable."""
    return int(optimizer.iterations.numpy())


def loss_scale(optimizer: keras.optimizers.LossScaleOptimizer) -> float:
    """The dynamic loss scale of a built float16 optimizer (2**15 until a step is skipped)."""
    return float(optimizer.dynamic_scale.numpy())


def first_non_finite(logs: dict) -> str | None:
    """The loss term that is NaN or infinite (a part of the loss before the total), or None."""
    return next((term for term in _TERMS_FIRST if not np.isfinite(logs[term])), None)


def _kept_checkpoint(checkpoints: RunCheckpoints) -> str:
    saved = checkpoints.saved_step()
    if saved is None:
        return "no checkpoint was saved yet"
    return f"the checkpoint of step {saved} is kept in the model dir"


class _Progress(keras.utils.Progbar):
    """A progress bar over the run's steps (a resumed run at 11/30, not 1/20) whose time
    estimate counts only the steps of this process."""

    def __init__(self, start: int, steps: int, **kwargs):
        super().__init__(steps, **kwargs)
        self._first = start

    def _estimate_step_duration(self, current, now):
        return super()._estimate_step_duration(current - self._first, now)


def _files_of(files: pipeline.TrainFiles, val_samples) -> list[str]:
    return [
        path for sample in (*files.labeled, *val_samples) for path in (sample.image, sample.label)
    ] + list(files.unlabeled)


@contextlib.contextmanager
def _saves_stop(stop):
    """A failed checkpoint save inside the block stops the run with `stop`'s TrainingError."""
    try:
        yield
    except CheckpointError as error:
        raise stop(str(error)) from None


def train(
    config: Config, strategy: tf.distribute.Strategy | None = None, verbose: bool = True
) -> RunResult:
    """Trains (or resumes) the run described by `config`; see the module docstring.

    The model dir is locked first (`scl_tf.runs.lock_model_dir`: a second run on it is refused
    at once). Everything else that can be refused is checked before the model dir is written:
    flags, the data (every file decoded, `scl_tf.data.preflight`), an existing run's
    architecture and data, the weights to start from, the checkpoint to resume from. A run that
    fails there writes nothing.

    Raises:
      ConfigError, DatasetError, TrainingError, CheckpointError, ImageNetWeightsError: one line
        each (several lines only for several bad files).
    """
    strategy = strategy or select_strategy(config.train.strategy)
    chief = is_chief(strategy)
    # Under MultiWorkerMirroredStrategy only the chief writes into the model dir.
    with runs.lock_model_dir(config.model_dir) if chief else contextlib.nullcontext():
        return _train(config, strategy, chief, verbose)


def _train(
    config: Config, strategy: tf.distribute.Strategy, chief: bool, verbose: bool
) -> RunResult:
    """`train` in its locked model dir."""
    train_config, model_dir = config.train, config.model_dir
    keras.mixed_precision.set_dtype_policy(train_config.dtype_policy)
    keras.utils.set_random_seed(config.pipeline.seed)

    step_config = StepConfig.from_config(config)
    files = pipeline.train_files(config.data)
    if step_config.semi_supervised and not files.unlabeled:
        raise ConfigError(
            "--lambda_c/--lambda_sc: semi-supervised training needs unlabeled "
            "images, and the unlabeled pool is empty"
        )
    check_crop_fits(files, config)
    val_samples = datasets.find_pairs(config.data, "val")
    if train_config.eval_images:
        val_samples = val_samples[: train_config.eval_images]
    spec = files.spec
    runs.check_resumable(model_dir, config, spec.num_classes)
    runs.check_same_data(model_dir, config.data, splits.labeled_names(files.labeled, files.root))
    runs.check_warm_start(config.model, spec.num_classes)
    preflight.preflight(
        files.labeled,
        files.unlabeled,
        val_samples,
        spec,
        class_uniform.cache_dirs(files.root),
        verbose=verbose and chief,
    )
    replicas = strategy.num_replicas_in_sync
    steps = total_steps(config, len(files.labeled), replicas)

    with strategy.scope():
        student, teacher = runs.build_networks(config.model, spec.num_classes)
        model = SCLModel(student, teacher, step_config)
        optimizer = _optimizer(config, steps)
        optimizer.build(student.trainable_variables)
        model.compile(optimizer=optimizer)
        checkpoints = RunCheckpoints(
            model_dir,
            strategy,
            train_config.keep_checkpoints,
            student=student,
            teacher=teacher,
            optimizer=optimizer,
            scl_seed=model.scl_seed.state,
        )
    if not checkpoints.restore():
        model.copy_student_to_teacher()
    start = int(checkpoints.step.numpy())
    updates_at_start = updates_made(optimizer)
    eval_model = teacher if train_config.eval_weights == "ema" else student
    # Everything checked: from here on the run writes into its model dir.
    log_dir = os.path.join(model_dir, "logs")
    if chief:
        runs.write_config(config, spec.num_classes, spec.class_names)
        splits.write_labeled_list(model_dir, files.labeled, files.root)
        summaries.drop_events_after(log_dir, start)  # steps a killed run logged past its save

    stream = strategy.distribute_datasets_from_function(
        lambda context: pipeline.train_dataset(
            files,
            config.pipeline,
            start_step=start,
            input_context=context,
            with_unlabeled=step_config.semi_supervised,
            verbose=verbose and chief,
        )
    )

    def replica_step(batch):
        return model.train_step(batch)

    @tf.function(jit_compile=train_config.jit_compile or None)
    def distributed_step(batch):
        shares = strategy.run(replica_step, args=(batch,))
        return {
            name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in shares.items()
        }

    writer = tf.summary.create_file_writer(log_dir) if chief else None
    progress = _Progress(
        start,
        max(steps, 1),
        verbose=1 if verbose else 0,
        stateful_metrics=["lr", *LOSS_TERMS, "accuracy", CONFIDENT_SHARE],
    )
    if verbose and chief:
        print(
            f"Training {steps} steps from step {start}: {len(files.labeled)} labeled, "
            f"{len(files.unlabeled)} unlabeled images, {replicas} replica(s), "
            f"model dir {model_dir}"
        )

    def stop(message: str) -> TrainingError:
        if verbose:
            print()  # end the progress bar's line
        return TrainingError(message)

    logs, val_miou, stopped, skipped = {}, None, False, 0
    iterator = iter(stream)
    with _StopRequest() as stop_request, _saves_stop(stop):
        step = start
        while step < steps:
            try:
                batch = next(iterator)
            except tf.errors.OpError as error:  # a file that went bad since the preflight
                checkpoints.save()
                bad_file = check.bad_file_message(error, _files_of(files, val_samples))
                raise stop(
                    f"step {step + 1}: {bad_file}; saved a checkpoint at step {step}: fix the "
                    "file and run the same command again to resume"
                ) from None
            learning_rate = float(optimizer.learning_rate)  # the rate this step uses
            updates_before = updates_made(optimizer)
            raw = distributed_step(batch)
            step += 1
            logs = {name: float(value) for name, value in raw.items()}
            logs["accuracy"] = logs.pop("correct") / max(logs.pop("scored"), 1.0)
            logs["lr"] = learning_rate
            bad_term = first_non_finite(logs)
            if bad_term is not None:
                raise stop(
                    f"step {step}: {bad_term} is {logs[bad_term]}; stopping, "
                    f"{_kept_checkpoint(checkpoints)}"
                )
            skipped = skipped + 1 if updates_made(optimizer) == updates_before else 0
            if skipped >= MAX_SKIPPED_STEPS:
                raise stop(
                    f"step {step}: float16 loss scaling skipped the last {skipped} updates "
                    f"(non-finite gradients down to loss scale {loss_scale(optimizer):g}); "
                    f"use --mixed_precision=bfloat16 or none; {_kept_checkpoint(checkpoints)}"
                )
            checkpoints.step.assign(step)
            progress.update(step, list(logs.items()))
            if writer is not None and step % train_config.log_every == 0:
                summaries.write_scalars(writer, step, logs)
            if (
                writer is not None
                and train_config.image_every
                and step % train_config.image_every == 0
            ):
                local = strategy.experimental_local_results(batch)[0]
                summaries.write_panel(
                    writer, step, summaries.panel_images(model, local, spec.palette)
                )
            if step % train_config.checkpoint_every == 0 or step == steps:
                checkpoints.save()
            if step % train_config.eval_every == 0 or step == steps:
                val_miou = _validate_and_keep_best(
                    eval_model, val_samples, spec, checkpoints, writer, step, verbose and chief
                )
            if stop_request.signal_name is not None:
                checkpoints.save()
                stopped = True
                if verbose:
                    print(
                        f"\n{stop_request.signal_name}: saved a checkpoint at step {step}; "
                        "stopping."
                    )
                break
    updates = updates_made(optimizer) - updates_at_start
    if step > start and updates == 0:
        raise stop(
            f"no update was made in steps {start + 1}..{step}: float16 loss scaling skipped "
            "every one; use --mixed_precision=bfloat16 or none"
        )
    export_path = None
    if not stopped and chief:
        export_path = os.path.join(model_dir, runs.EXPORT_NAME)
        runs.save_keras(eval_model, export_path)
        if verbose:
            print(f"Exported the {train_config.eval_weights} weights to {export_path}")
    checkpoints.close()
    return RunResult(model, step, steps, stopped, logs, val_miou, export_path, updates)


def _validate_and_keep_best(
    model, samples, spec, checkpoints: RunCheckpoints, writer, step: int, verbose: bool
) -> float:
    confusion = validate(model, samples, spec)
    miou = metrics.mean_iou(confusion)
    improved = checkpoints.offer_best(miou)
    if writer is not None:
        summaries.write_scalars(
            writer,
            step,
            {"val/miou": miou, "val/pixel_accuracy": metrics.pixel_accuracy(confusion)},
        )
    if verbose:
        print(
            f"\nstep {step}: val mIoU {100 * miou:.2f} on {len(samples)} images"
            + (" (best so far, saved)" if improved else "")
        )
    return miou
