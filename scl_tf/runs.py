"""The one place a trained model is loaded from disk, and the layout of a run's model dir.

A model dir written by `scl_tf.train` holds:
  config.json        the run's Config (as a dict) plus num_classes, class_names
  labeled_list.txt   the labeled images the run used
  checkpoints/       the last few checkpoints (student, teacher, optimizer, step, ...)
  best/              the checkpoint with the best validation mIoU
  logs/              TensorBoard events
  model.keras        the evaluation weights (EMA teacher by default) at the end of the run
  run.lock           while a training run works in it: that run's process id and host

Loaders, each raising ModelError with a one-line message naming what it was given:
  load_keras        a model dir (model.keras or a checkpoint, EMA or student weights) or a
                    .keras file -> keras.Model (float RGB [0, 255] -> logits)
  load_saved_model  a SavedModel folder -> the loaded object and its scl_tf metadata, if any
  onnx_session      an .onnx file (or its bytes) -> an ONNX Runtime session on the provider
                    asked for (the CPU unless told otherwise); a GPU provider that this
                    onnxruntime lacks or cannot start is an error, never a silent fallback.
  tflite_interpreter  a .tflite file (or its bytes) -> an interpreter with its tensors
                    allocated: LiteRT's (ai-edge-litert, the runtime a device uses) where it is
                    installed, else TensorFlow's tf.lite.Interpreter (`tflite_runtime` says
                    which).
TensorFlow and Keras are imported by the loaders that need them, so that the ONNX path runs
where only onnxruntime is installed (export/predict_onnx.py), and `tflite_interpreter` where
only LiteRT is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket

try:
    import fcntl
except ImportError:  # Windows: model dirs are locked by process id only
    fcntl = None

from scl_tf.config import WEIGHTS, Config, ConfigError, DataConfig, ModelConfig

CONFIG_NAME = "config.json"
EXPORT_NAME = "model.keras"
LATEST_FOLDER = "checkpoints"
BEST_FOLDER = "best"
LOCK_NAME = "run.lock"
SAVED_MODEL_FILE = "saved_model.pb"
# The ExportInfo (scl_tf.export.metadata) of a SavedModel written by export/.
SAVED_MODEL_INFO = os.path.join("assets.extra", "scl_tf.json")


class ModelError(ValueError):
    """A model cannot be loaded or does not behave as a segmentation model; names the model."""


def _error_line(error: Exception) -> str:
    """The first line of an error's message; a TensorFlow error's without TensorFlow's wrapping."""
    message = getattr(error, "message", None)
    if message is not None:  # tf.errors.OpError
        from scl_tf.data.decode import error_text

        return error_text(error)
    return _first_line(error)


def _first_line(error: Exception) -> str:
    """The first line of an error's message (libraries put whole dumps after it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What config.json says about a run's model."""

    model: ModelConfig
    num_classes: int
    class_names: tuple[str, ...]
    dataset: str
    eval_weights: str  # "ema" (teacher) or "student"


def write_config(config: Config, num_classes: int, class_names) -> None:
    """Writes config.json into config.model_dir."""
    os.makedirs(config.model_dir, exist_ok=True)
    record = {
        **dataclasses.asdict(config),
        "num_classes": num_classes,
        "class_names": list(class_names),
    }
    with open(os.path.join(config.model_dir, CONFIG_NAME), "w") as out:
        json.dump(record, out, indent=2)


# What a checkpoint's variables depend on: a resumed run must not change these.
ARCHITECTURE_FLAGS = (
    "backbone",
    "output_stride",
    "low_level_stride",
    "decoder_convs",
    "decoder_kernel_size",
)


def check_resumable(model_dir: str, config: Config, num_classes: int) -> None:
    """Refuses to resume a run whose checkpoints hold another architecture.

    Args:
      model_dir: the run's folder; nothing to check if it holds no config.json yet.
      config, num_classes: the run about to start (num_classes from its dataset).

    Raises:
      ConfigError: naming the first flag that differs from the run's config.json.
    """
    if not is_run_dir(model_dir):
        return
    try:
        info = read_info(model_dir)
    except ModelError as error:
        raise ConfigError(f"--model_dir: {error}") from None
    for name in ARCHITECTURE_FLAGS:
        old, new = getattr(info.model, name), getattr(config.model, name)
        if old != new:
            raise ConfigError(
                f"--{name}={new}: {model_dir} holds a run with --{name}={old}; resume it "
                "with its own architecture, or train in a new --model_dir"
            )
    if info.num_classes != num_classes:
        raise ConfigError(
            f"--dataset: {model_dir} holds a run of {info.num_classes} classes, this dataset "
            f"has {num_classes}; train in a new --model_dir"
        )


def _first_missing(path: str) -> str | None:
    """The outermost folder of `path` that does not exist yet (makedirs would create it)."""
    missing = None
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _process_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (on Windows, where os.kill would end it, assumed)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read_lock(fd: int) -> str:
    """What the holder of a lock file wrote: 'PID on HOST', or '' before it wrote."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 200).decode("utf-8", "replace").strip()


def _holder_is_gone(text: str) -> bool:
    """Without flock: whether the recorded holder is this process or a dead one of this host
    (another host's process cannot be checked, and counts as alive)."""
    pid, _, host = text.partition(" on ")
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return True
    return host == socket.gethostname() and not _process_alive(int(pid))


def _flock(fd: int) -> bool:
    """Takes an exclusive flock on `fd` without waiting: True, or False if another process
    holds it. Raises OSError where the file system has no flock (ENOLCK, EOPNOTSUPP, ...)."""
    if fcntl is None:  # Windows
        raise OSError(errno.ENOSYS, "no flock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(path: str) -> int:
    """An open descriptor of the lock file at `path`, locked for this process, holding
    'PID on HOST'.

    Raises:
      ConfigError: another live process holds it (named).
      OSError: it cannot be created or written.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _flock(fd)
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            locked = _holder_is_gone(_read_lock(fd))  # the recorded process id decides
        if not locked:
            holder = _read_lock(fd)
            os.close(fd)
            raise ConfigError(
                f"--model_dir: {os.path.dirname(path)} is in use by another training run "
                f"({'process ' + holder if holder else 'starting'}); wait for it to end, or "
                f"train in another --model_dir (if it has ended, remove {path})"
            )
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as this process locked it: lock the new one
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
    return fd


@contextlib.contextmanager
def lock_model_dir(model_dir: str):
    """Holds `model_dir` for one training run: a second run on it is refused at once, naming
    the first's process id, until this one ends. The lock is `run.lock`, an flock the kernel
    releases when the process dies, so a killed run leaves no lock that blocks; where the file
    system lacks flock, the process id it records is checked instead. On exit the lock file
    goes, and so do the folders this created if the run left them empty.

    Raises:
      ConfigError: `model_dir` is a file, cannot be created or written, or is in use.
    """
    if os.path.lexists(model_dir) and not os.path.isdir(model_dir):
        raise ConfigError(f"--model_dir: {model_dir} exists and is not a folder")
    created = _first_missing(model_dir)
    path = os.path.join(model_dir, LOCK_NAME)
    try:
        os.makedirs(model_dir, exist_ok=True)
        fd = _acquire(path)
    except OSError as error:
        _remove_empty(model_dir, created)
        raise ConfigError(
            f"--model_dir: cannot write in {model_dir} ({error.strerror or error})"
        ) from None
    except ConfigError:
        _remove_empty(model_dir, created)
        raise
    try:
        yield
    finally:
        if fcntl is None:  # Windows removes no open file
            os.close(fd)
        # Removed while still locked: a run that opens the file now finds it gone and retries.
        with contextlib.suppress(OSError):
            os.remove(path)
        if fcntl is not None:
            os.close(fd)
        _remove_empty(model_dir, created)


def _remove_empty(model_dir: str, created: str | None) -> None:
    """Removes the folders from `model_dir` up to `created` (those this process made) that are
    empty."""
    if created is None:
        return
    folder = os.path.abspath(model_dir)
    while True:
        try:
            os.rmdir(folder)
        except OSError:
            return
        if folder == created:
            return
        folder = os.path.dirname(folder)


# The DataConfig fields that choose the labeled subset: a resumed run is compared on the list
# they make, not on the flags (--labeled_list=RUN/labeled_list.txt resumes a --labeled_count run).
LABELED_CHOICE_FLAGS = ("labeled_fraction", "labeled_count", "labeled_list", "split_seed")
# Folders: the same folder under another path is the same data.
PATH_FLAGS = (
    "data_dir",
    "image_dir",
    "mask_dir",
    "val_image_dir",
    "val_mask_dir",
    "unlabeled_dirs",
)


def _as_tuples(value):
    """JSON lists (config.json) as the tuples of DataConfig."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list | tuple) else value


def _same_folder(old, new) -> bool:
    try:
        return os.path.samefile(old, new)
    except (OSError, TypeError):
        return False


def _same_data_value(name: str, old, new) -> bool:
    old, new = _as_tuples(old), _as_tuples(new)
    if old == new:
        return True
    if name not in PATH_FLAGS:
        return False
    if isinstance(new, tuple):
        return len(old or ()) == len(new) and all(map(_same_folder, old, new))
    return _same_folder(old, new)


def _flag_text(value) -> str:
    value = _as_tuples(value)
    if isinstance(value, tuple):
        return ",".join(":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in value)
    return "" if value is None else str(value)


def check_same_data(model_dir: str, data: DataConfig, labeled: list[str]) -> None:
    """Refuses to resume a run on other data: another dataset or folder, or another labeled set
    than the run's labeled_list.txt (config.json and the list would be overwritten, and the
    checkpoints continued on data they were not trained on).

    Args:
      model_dir: the run's folder; nothing to check if it holds no config.json yet.
      data: the run about to start; labeled: its labeled images as labeled_list.txt names them.

    Raises:
      ConfigError: naming the first data flag that differs, or the labeled-set flags.
    """
    if not is_run_dir(model_dir):
        return
    try:
        record = read_record(model_dir)["data"]
    except (ModelError, KeyError, TypeError) as error:
        raise ConfigError(f"--model_dir: {error}") from None
    for field in dataclasses.fields(DataConfig):
        name = field.name
        if name in LABELED_CHOICE_FLAGS:
            continue
        old, new = record.get(name, field.default), getattr(data, name)
        if not _same_data_value(name, old, new):
            raise ConfigError(
                f"--{name}={_flag_text(new)}: {model_dir} holds a run with "
                f"--{name}={_flag_text(old)}; resume it with its own data flags (see its "
                f"{CONFIG_NAME}), or train in a new --model_dir"
            )
    from scl_tf.data.splits import LABELED_LIST_NAME

    listed = os.path.join(model_dir, LABELED_LIST_NAME)
    if not os.path.isfile(listed):
        return
    with open(listed, encoding="utf-8", errors="surrogateescape") as source:
        old_names = {line.strip() for line in source if line.strip()}
    new_names = set(labeled)
    if old_names != new_names:
        choice = LABELED_CHOICE_FLAGS[:3]
        given = [name for name in choice if getattr(data, name) is not None] or choice
        raise ConfigError(
            f"{'/'.join(f'--{name}' for name in given)}: {len(new_names)} labeled image(s), "
            f"{len(new_names - old_names)} of them not among the {len(old_names)} of {listed}; "
            f"resume with --labeled_list={listed}, or "
            "train in a new --model_dir"
        )


# What a warm start shares with the run it starts from: every flag that shapes a weight (the
# output stride only sets dilation rates).
WEIGHT_SHAPE_FLAGS = tuple(name for name in ARCHITECTURE_FLAGS if name != "output_stride")


def describe_model(model: ModelConfig, num_classes: int) -> str:
    """'efficientnet_lite0, 11 classes, low_level_stride default, decoder 2 convs of 3x3'."""
    low_level = model.low_level_stride or "default"
    kernel = model.decoder_kernel_size
    return (
        f"{model.backbone}, {num_classes} classes, low_level_stride {low_level}, decoder "
        f"{model.decoder_convs} convs of {kernel}x{kernel}"
    )


def warm_start_file(weights: str | None) -> str | None:
    """The file --weights loads: a model dir's model.keras (the run's --eval_weights, the EMA
    teacher by default), else `weights` itself (a file, "imagenet" or None)."""
    if weights and os.path.isdir(weights):
        return os.path.join(weights, EXPORT_NAME)
    return weights


def check_warm_start(model: ModelConfig, num_classes: int) -> None:
    """Refuses --weights that name a run (a model dir, or a .keras file in one) whose model
    differs from this run's in a weight's shape; a loose file is checked when it loads.

    Raises:
      ConfigError: naming --weights, the source's model and this run's.
    """
    weights = model.weights
    if weights in (None, "imagenet"):
        return
    if os.path.isdir(weights):
        if not is_run_dir(weights):
            raise ConfigError(
                f"--weights: {weights} is a folder but not a model dir of scl_tf.train "
                f"(no {CONFIG_NAME})"
            )
        if not os.path.isfile(warm_start_file(weights)):
            raise ConfigError(
                f"--weights: {weights} has not finished training (no {EXPORT_NAME} yet)"
            )
        source = weights
    elif weights.endswith(".keras"):
        source = find_run_dir(weights, None)
    else:
        source = None
    if source is None:
        return
    try:
        info = read_info(source)
    except ModelError as error:
        raise ConfigError(f"--weights: {error}") from None
    differs = info.num_classes != num_classes or any(
        getattr(info.model, name) != getattr(model, name) for name in WEIGHT_SHAPE_FLAGS
    )
    if differs:
        raise ConfigError(
            f"--weights: {weights} holds a model of {describe_model(info.model, info.num_classes)}"
            f"; this run builds {describe_model(model, num_classes)}"
        )


def is_run_dir(source: str) -> bool:
    """Whether `source` is a model dir written by scl_tf.train."""
    return os.path.isfile(os.path.join(source, CONFIG_NAME))


def find_run_dir(source: str | None, model_dir: str | None) -> str | None:
    """The model dir of scl_tf.train that `source` is or lies in, else `model_dir` if it is
    one, else None."""
    candidates = (source, os.path.dirname(os.path.abspath(source)) if source else None, model_dir)
    return next((path for path in candidates if path and is_run_dir(path)), None)


def read_record(model_dir: str) -> dict:
    """`model_dir`/config.json as written by `write_config`.

    Raises:
      ModelError: `model_dir` is not a model dir of scl_tf.train, or its config.json is
        unreadable.
    """
    path = os.path.join(model_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise ModelError(f"{model_dir}: not a model dir of scl_tf.train (no {CONFIG_NAME})")
    try:
        with open(path) as source:
            return json.load(source)
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: unreadable ({error})") from None


def read_info(model_dir: str) -> RunInfo:
    """What `model_dir`/config.json says about the run's model (see `read_record`)."""
    record = read_record(model_dir)
    try:
        # The weights the run started from only mattered for initialisation; they may be gone.
        model = ModelConfig(**{**record["model"], "weights": None})
        return RunInfo(
            model=model,
            num_classes=int(record["num_classes"]),
            class_names=tuple(record["class_names"]),
            dataset=record["data"]["dataset"],
            eval_weights=record["train"]["eval_weights"],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"{model_dir}/{CONFIG_NAME}: not a config of scl_tf.train ({error})"
        ) from None


def build_networks(model: ModelConfig, num_classes: int):
    """A (student, teacher) pair of DeepLabV3+ `keras.Model`s; only the student loads the
    config's weights (a model dir's: its model.keras).

    Raises:
      ConfigError: a weights file that does not fit this model, in one line.
    """
    from scl_tf.models import build_model

    arguments = dict(
        backbone=model.backbone,
        num_classes=num_classes,
        output_stride=model.output_stride,
        low_level_stride=model.low_level_stride,
        sync_batchnorm=model.sync_batchnorm,
        decoder_convs=model.decoder_convs,
        decoder_kernel_size=model.decoder_kernel_size,
    )
    weights = warm_start_file(model.weights)
    try:
        student = build_model(weights=weights, **arguments)
    except ValueError as error:
        if weights in (None, "imagenet"):
            raise
        raise ConfigError(
            f"--weights: {weights} does not fit a model of {describe_model(model, num_classes)}"
            f" ({_first_line(error)})"
        ) from None
    return student, build_model(**arguments)


def checkpoint_path(model_dir: str, which: str) -> str:
    """Path prefix of the latest or best checkpoint of a run.

    Raises:
      ModelError: the run has no such checkpoint.
    """
    import tensorflow as tf

    folder = os.path.join(model_dir, BEST_FOLDER if which == "best" else LATEST_FOLDER)
    path = tf.train.latest_checkpoint(folder)
    if path is None:
        raise ModelError(f"{folder}: no checkpoint")
    return path


def save_keras(model, path: str) -> None:
    """Saves `model` as a `.keras` file that loads anywhere, atomically.

    Synchronized BatchNormalization is a training setting of a tf.distribute run; the file
    holds plain BatchNormalization (same weights and inference), which the JAX backend loads.
    """
    import keras

    synchronized = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized
    ]
    temporary = f"{path}.{os.getpid()}.tmp.keras"
    for layer in synchronized:
        layer.synchronized = False
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        for layer in synchronized:
            layer.synchronized = True
        if os.path.exists(temporary):
            os.remove(temporary)


def _float32_policies(serialized):
    """A serialized Keras object with every mixed dtype policy replaced by float32."""
    if isinstance(serialized, list):
        return [_float32_policies(item) for item in serialized]
    if not isinstance(serialized, dict):
        return serialized
    if serialized.get("class_name") == "DTypePolicy":
        return {**serialized, "config": {**serialized["config"], "name": "float32"}}
    return {key: _float32_policies(value) for key, value in serialized.items()}


def as_float32(model):
    """`model` computing in float32: itself, or for a model trained under a mixed precision
    policy (bfloat16, float16) the same architecture rebuilt in float32 with its weights
    (kept in float32 by mixed precision, so nothing is rounded). ONNX Runtime refuses
    bfloat16 convolutions, and evaluation and export are float32 on every device."""
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model
    rebuilt = keras.saving.deserialize_keras_object(
        _float32_policies(keras.saving.serialize_keras_object(model))
    )
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _load_keras_file(path: str):
    """The model in a .keras file, computing in float32 (`as_float32`)."""
    import keras

    import scl_tf.models  # noqa: F401  (registers the custom layers)

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a broken or foreign archive
        raise ModelError(f"{path}: not a readable .keras model ({_first_line(error)})") from None
    return as_float32(model)


def _check_run_model(model, path: str, model_dir: str) -> None:
    """Refuses a .keras file of a model dir that is not the model its config.json describes
    (a file copied in from another run would be scored and exported under this run's name).

    Raises:
      ModelError: naming both files and what each holds.
    """
    info = read_info(model_dir)
    prefix = "deeplabv3plus_"
    backbone = model.name.removeprefix(prefix) if model.name.startswith(prefix) else None
    classes = model.output_shape[-1]
    if backbone in (None, info.model.backbone) and classes == info.num_classes:
        return
    raise ModelError(
        f"{path} holds a model of {backbone or 'another architecture'}, {classes} classes, but "
        f"{os.path.join(model_dir, CONFIG_NAME)} describes {info.model.backbone}, "
        f"{info.num_classes} classes: the two are not of one run"
    )


def load_keras(source: str, checkpoint: str = "final", eval_weights: str | None = None):
    """The segmentation model of a run or file: float RGB [B, H, W, 3] in [0, 255] -> logits.

    Args:
      source: a `.keras` file, or a model dir of scl_tf.train.
      checkpoint: for a model dir: "final" (its model.keras, falling back to the latest
        checkpoint while the run has not finished), "latest" or "best".
      eval_weights: for a model dir: "ema" (the teacher) or "student"; None or the run's own
        --eval_weights: the run's. The other one is read from a checkpoint (model.keras holds
        only the run's own).

    Returns:
      `keras.Model`, computing in float32 whatever precision it trained in (`as_float32`).

    Raises:
      ModelError: `source` is neither, lacks what was asked for, or is unreadable.
    """
    if os.path.isfile(source) and source.endswith(".keras"):
        model = _load_keras_file(source)
        folder = os.path.dirname(os.path.abspath(source))
        if is_run_dir(folder):
            _check_run_model(model, source, folder)
        return model
    if not os.path.isdir(source):
        raise ModelError(f"{source}: neither a .keras file nor a model dir")
    info = read_info(source)
    if eval_weights not in (None, *WEIGHTS):
        raise ModelError(f"--eval_weights: expected one of {WEIGHTS}, got {eval_weights!r}")
    eval_weights = eval_weights or info.eval_weights
    final = os.path.join(source, EXPORT_NAME)
    if checkpoint == "final" and os.path.isfile(final) and eval_weights == info.eval_weights:
        model = _load_keras_file(final)
        _check_run_model(model, final, source)
        return model
    import tensorflow as tf

    student, teacher = build_networks(info.model, info.num_classes)
    path = checkpoint_path(source, "best" if checkpoint == "best" else "latest")
    try:
        tf.train.Checkpoint(student=student, teacher=teacher).restore(path).expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:
        # IndexError: a truncated data file ("Read less bytes than requested").
        raise ModelError(
            f"{path}: unreadable checkpoint, truncated? ({_error_line(error)})"
        ) from None
    return as_float32(teacher if eval_weights == "ema" else student)


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def saved_model_info(path: str):
    """The ExportInfo that export/ stored with a SavedModel, or None for another SavedModel.

    Raises:
      ModelError: `path` is not a SavedModel, or its metadata is unreadable.
    """
    from scl_tf.export.metadata import ExportInfo

    if not is_saved_model(path):
        raise ModelError(f"{path}: not a SavedModel (no {SAVED_MODEL_FILE})")
    info_path = os.path.join(path, SAVED_MODEL_INFO)
    if not os.path.isfile(info_path):
        return None
    try:
        with open(info_path) as source:
            return ExportInfo.from_dict(json.load(source))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelError(f"{info_path}: unreadable scl_tf metadata ({error})") from None


def load_saved_model(path: str):
    """A SavedModel folder: (the object `tf.saved_model.load` returns, its ExportInfo or None).

    Raises:
      ModelError: not a SavedModel, or TensorFlow cannot load it.
    """
    import tensorflow as tf

    info = saved_model_info(path)
    try:
        return tf.saved_model.load(path), info
    except (tf.errors.OpError, ValueError, OSError) as error:
        raise ModelError(f"{path}: TensorFlow cannot load this SavedModel ({error})") from None


def onnx_session(model: str | bytes, options=None, flag: str = "--model"):
    """An ONNX Runtime InferenceSession of an .onnx file (or its bytes) on `options`' provider.

    Args:
      options: `scl_tf.export.runtime.RuntimeOptions`; default: the CPU.
      flag: the flag that named `model`, for error messages.

    Raises:
      ModelError: no such file, or ONNX Runtime cannot read the model.
      scl_tf.export.runtime.ProviderError: the provider is unavailable or failed to start
        (ONNX Runtime itself would fall back to the CPU silently).
    """
    import onnxruntime as ort

    from scl_tf.export.runtime import ProviderError, RuntimeOptions, execution_providers

    options = options or RuntimeOptions()
    what = model if isinstance(model, str) else "the ONNX model"
    if isinstance(model, str) and not os.path.isfile(model):
        raise ModelError(f"{flag}: no such ONNX file: {model}")
    providers = execution_providers(options, ort.get_available_providers())
    session_options = ort.SessionOptions()
    if not options.spinning:
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            model,
            session_options,
            providers=[name for name, _ in providers],
            provider_options=[opts for _, opts in providers],
        )
    except Exception as error:  # ORT raises its own types (InvalidProtobuf, Fail, ...)
        raise ModelError(f"{what}: ONNX Runtime cannot load it ({_first_line(error)})") from None
    if session.get_providers()[0] != providers[0][0]:
        raise ProviderError(
            f"--provider={options.provider}: {providers[0][0]} failed to start "
            f"(session runs on {session.get_providers()}); see the "
            "onnxruntime log above"
        )
    return session


def _tflite_interpreter_class():
    """(Interpreter class, runtime name and version): LiteRT's if installed, else TF's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"TensorFlow Lite (tensorflow {tf.__version__})"
    from importlib.metadata import version

    return Interpreter, f"LiteRT (ai-edge-litert {version('ai-edge-litert')})"


def tflite_runtime() -> str:
    """The runtime `tflite_interpreter` uses, e.g. "LiteRT (ai-edge-litert 2.3.0)"."""
    return _tflite_interpreter_class()[1]


def tflite_interpreter(model: str | bytes, num_threads: int | None = None, flag: str = "--model"):
    """An interpreter of a .tflite file (or its bytes), tensors allocated.

    Args:
      num_threads: CPU threads; None: one per CPU (os.cpu_count()), like ONNX Runtime's
        default on a machine without hyper-threading.
      flag: the flag that named `model`, for error messages.

    Raises:
      ModelError: no such file, or the runtime cannot read the model.
    """
    interpreter_class, runtime = _tflite_interpreter_class()
    what = model if isinstance(model, str) else "the TFLite model"
    if isinstance(model, str) and not os.path.isfile(model):
        raise ModelError(f"{flag}: no such TFLite file: {model}")
    source = {"model_path": model} if isinstance(model, str) else {"model_content": model}
    from scl_tf import quiet_stderr

    try:
        with quiet_stderr():  # the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate"
            interpreter = interpreter_class(**source, num_threads=num_threads or os.cpu_count())
            interpreter.allocate_tensors()
    except Exception as error:  # the runtimes raise ValueError, RuntimeError, ...
        raise ModelError(f"{what}: {runtime} cannot load it ({_first_line(error)})") from None
    return interpreter
