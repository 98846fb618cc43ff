"""The fault-injection suite: broken copies of the bundled data, wrong flags, a model dir in
use, unwritable or of another run, damaged checkpoints; each refused before step 1 with one line
naming the file or flag, no traceback, and nothing written to the model dir (or changed in an
existing one).

Runs `scl_tf.train`'s own `main` in this process (one TensorFlow start for all cases); the
slow tier runs a few cases as real subprocesses to check what a user sees on the terminal.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from broken_files import append_bytes, break_crc, make_fifo, make_huge, save_as_tiff
from commands import TINY_TRAIN_FLAGS
from PIL import Image

from scl_tf import cache, runs
from scl_tf import evaluate as evaluate_command
from scl_tf import flags as flags_lib
from scl_tf import train as train_command
from scl_tf.config import Config, DataConfig, ModelConfig
from scl_tf.data import splits
from scl_tf.training import checkpoints as checkpoints_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELED = ("0001TP_006690", "0001TP_007050", "0001TP_007410", "0001TP_007740")
UNLABELED = "0001TP_008100"  # a train frame outside the labeled list: read as unlabeled
VAL = "0016E5_07959"
TINY = [*TINY_TRAIN_FLAGS, "--steps=2"]


@pytest.fixture
def data(camvid_mini_dir, tmp_path):
    """A private copy of the bundled sample, its labeled list, and an extra unlabeled folder."""
    root = tmp_path / "camvid"
    shutil.copytree(camvid_mini_dir, root)
    (tmp_path / "labeled.txt").write_text("".join(f"train/{name}.png\n" for name in LABELED))
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(root / "val" / f"{VAL}.png", extra / "street.png")
    return root


def arguments(data, model_dir, *extra):
    return [
        *TINY,
        f"--data_dir={data}",
        f"--labeled_list={data.parent / 'labeled.txt'}",
        f"--unlabeled_dirs={data.parent / 'extra'}",
        f"--model_dir={model_dir}",
        *extra,
    ]


def run_command(main, define, argv):
    """The SystemExit message of a command's `main` run with ARGV, in this process."""
    define()
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["command", *argv])
        with pytest.raises(SystemExit) as stopped:
            main(["command"])
    finally:
        flags.FLAGS.unparse_flags()
    return str(stopped.value.code)


def run_train(argv):
    """The SystemExit message of `python -m scl_tf.train ARGV`, in this process."""
    return run_command(train_command.main, flags_lib.define_train_flags, argv)


def run_evaluate(argv):
    """The SystemExit message of `python -m scl_tf.evaluate ARGV`, in this process."""
    return run_command(evaluate_command.main, flags_lib.define_evaluate_flags, argv)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def resize(path):
    with Image.open(path) as image:
        image.resize((image.width // 2, image.height // 2), Image.NEAREST).save(path)


def undefined_value(path):
    with Image.open(path) as image:
        values = np.array(image)
    values[:4, :4] = 200
    Image.fromarray(values).save(path)


def image(data, where):
    return {
        "labeled": data / "train" / f"{LABELED[0]}.png",
        "unlabeled": data / "train" / f"{UNLABELED}.png",
        "unlabeled_dirs": data.parent / "extra" / "street.png",
        "val": data / "val" / f"{VAL}.png",
    }[where]


def label(data, where):
    return {
        "labeled": data / "trainannot" / f"{LABELED[0]}.png",
        "val": data / "valannot" / f"{VAL}.png",
    }[where]


DATA_FAULTS = [
    *(
        (f"truncated image, {where}", lambda d, w=where: (truncate, image(d, w)))
        for where in ("labeled", "unlabeled", "unlabeled_dirs", "val")
    ),
    *(
        (f"truncated label, {where}", lambda d, w=where: (truncate, label(d, w)))
        for where in ("labeled", "val")
    ),
    *(
        (f"size mismatch, {where}", lambda d, w=where: (resize, label(d, w)))
        for where in ("labeled", "val")
    ),
    *(
        (f"undefined label value, {where}", lambda d, w=where: (undefined_value, label(d, w)))
        for where in ("labeled", "val")
    ),
    *(
        (f"unpaired image, {where}", lambda d, w=where: (os.remove, label(d, w)))
        for where in ("labeled", "val")
    ),
    # Files Pillow reads and TensorFlow, the decoder that trains, does not.
    ("broken IDAT CRC, labeled image", lambda d: (break_crc, image(d, "labeled"))),
    ("broken IDAT CRC, val label", lambda d: (break_crc, label(d, "val"))),
    ("TIFF named .png, val image", lambda d: (save_as_tiff, image(d, "val"))),
    ("TIFF named .png, unlabeled image", lambda d: (save_as_tiff, image(d, "unlabeled"))),
    ("bytes after IEND, unlabeled_dirs", lambda d: (append_bytes, image(d, "unlabeled_dirs"))),
    ("bytes after IEND, labeled label", lambda d: (append_bytes, label(d, "labeled"))),
    # Files that hang or exhaust a reader.
    ("FIFO named .png, labeled image", lambda d: (make_fifo, image(d, "labeled"))),
    ("FIFO named .png, val label", lambda d: (make_fifo, label(d, "val"))),
    ("16000x16000 PNG, labeled image", lambda d: (make_huge, image(d, "labeled"))),
    ("16000x16000 PNG, val image", lambda d: (make_huge, image(d, "val"))),
]


def tree_digest(folder):
    """{relative path: sha256} of every file under `folder`."""
    digest = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as source:
                digest[os.path.relpath(path, folder)] = hashlib.sha256(source.read()).hexdigest()
    return digest


def assert_refused(message, *named):
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in message
    for name in named:
        assert str(name) in message, message


@pytest.mark.parametrize("case", [name for name, _ in DATA_FAULTS])
def test_broken_file_is_refused_before_step_one(case, data, tmp_path):
    damage, victim = dict(DATA_FAULTS)[case](data)
    damage(victim)
    model_dir = tmp_path / "run"
    message = run_train(arguments(data, model_dir))
    assert_refused(message, victim.name)
    assert not model_dir.exists()


def empty(*folders):
    for folder in folders:
        for path in folder.glob("*.png"):
            path.unlink()


@pytest.mark.parametrize(
    "case, damage, named",
    [
        ("empty val split", lambda d: empty(d / "val", d / "valannot"), "val"),
        ("missing val split", lambda d: shutil.rmtree(d / "valannot"), "valannot"),
        ("empty train split", lambda d: empty(d / "train", d / "trainannot"), "train"),
    ],
)
def test_empty_or_missing_split_is_refused(case, damage, named, data, tmp_path):
    damage(data)
    model_dir = tmp_path / "run"
    assert_refused(run_train(arguments(data, model_dir)), named)
    assert not model_dir.exists()


@pytest.fixture
def folder_data(data, tmp_path):
    """The sample as a folder dataset (values 0..10 classes, 11 void)."""
    return [
        "--dataset=folder",
        f"--image_dir={data / 'train'}",
        f"--mask_dir={data / 'trainannot'}",
        f"--val_image_dir={data / 'val'}",
        f"--val_mask_dir={data / 'valannot'}",
        f"--model_dir={tmp_path / 'run'}",
        "--labeled_count=4",
        "--steps=2",
        "--backbone=mobilenetv2",
        "--crop_size=64x64",
        "--strategy=default",
    ]


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--num_classes=0"], "--num_classes"),
        (["--num_classes=11", "--class_names=sky,road"], "--class_names"),
        (["--num_classes=11", "--id_mapping=11:255,3:11"], "--id_mapping"),
        (["--num_classes=11", "--id_mapping=300:1"], "--id_mapping"),
    ],
)
def test_folder_flag_mistake_is_refused(extra, flag, folder_data, tmp_path):
    assert_refused(run_train([*folder_data, *extra]), flag)
    assert not (tmp_path / "run").exists()


def test_multi_worker_without_tf_config_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    model_dir = tmp_path / "run"
    message = run_train(arguments(data, model_dir, "--strategy=multi_worker"))
    assert_refused(message, "--strategy=multi_worker", "TF_CONFIG")
    assert not model_dir.exists()


def test_resume_with_another_architecture_is_refused_and_changes_nothing(data, tmp_path):
    model_dir = tmp_path / "run"
    config = Config(
        data=DataConfig("camvid", str(data)),
        model=ModelConfig(backbone="mobilenetv2", output_stride=16),
        model_dir=str(model_dir),
    )
    runs.write_config(config, 11, tuple(f"c{i}" for i in range(11)))
    (model_dir / "labeled_list.txt").write_text("train/0001TP_006690.png\n")
    before = tree_digest(model_dir)
    for flag in ("--backbone=resnet50", "--output_stride=8", "--decoder_convs=1"):
        message = run_train(arguments(data, model_dir, flag))
        assert_refused(message, flag.split("=")[0], str(model_dir))
    assert tree_digest(model_dir) == before


def test_second_run_of_the_same_data_decodes_nothing_and_sees_a_new_fault(data):
    from scl_tf.data import class_uniform, pipeline, preflight
    from scl_tf.data.datasets import DatasetError, find_pairs

    config = DataConfig("camvid", str(data), labeled_count=4)
    files = pipeline.train_files(config)
    val = find_pairs(config, "val")
    folders = class_uniform.cache_dirs(str(data))

    def check():
        return preflight.preflight(
            files.labeled, files.unlabeled, val, files.spec, folders, verbose=False
        )

    before = tree_digest(data)
    assert check() == 2 * (len(files.labeled) + len(val)) + len(files.unlabeled)
    assert check() == 0
    assert tree_digest(data) == before  # the cache is the user's, not in the dataset
    assert folders == [cache.data_cache_dir(str(data))] and os.listdir(folders[0])
    truncate(data / "valannot" / f"{VAL}.png")
    with pytest.raises(DatasetError, match=f"{VAL}.png"):
        check()
    with pytest.raises(DatasetError, match=f"{VAL}.png"):  # a failed file is never remembered
        check()


def test_data_caches_go_where_scl_tf_data_cache_says(data, tmp_path, monkeypatch):
    from scl_tf.data import class_uniform

    monkeypatch.setenv(cache.DATA_CACHE_ENV, str(tmp_path / "shared_cache"))
    (folder,) = class_uniform.cache_dirs(str(data))
    assert folder.startswith(str(tmp_path / "shared_cache" / "camvid-"))
    assert folder != class_uniform.cache_dirs(str(data.parent / "extra"))[0]


def test_file_name_that_is_not_utf8_is_named(data, tmp_path):
    extra = os.fsencode(data.parent / "extra")
    shutil.copy(image(data, "unlabeled_dirs"), os.path.join(extra, b"caf\xe9.png"))
    model_dir = tmp_path / "run"
    assert_refused(run_train(arguments(data, model_dir)), "caf\\xe9.png", "not UTF-8")
    assert not model_dir.exists()


def test_labeled_list_byte_that_is_not_utf8_is_named(data, tmp_path):
    listed = data.parent / "labeled.txt"
    listed.write_bytes(listed.read_bytes() + b"train/caf\xe9.png\n")
    model_dir = tmp_path / "run"
    message = run_train(arguments(data, model_dir))
    assert_refused(message, "--labeled_list", listed, "line 5", "0xe9")
    assert not model_dir.exists()


def test_two_images_of_one_name_in_a_folder_dataset_are_refused(data, folder_data, tmp_path):
    png = data / "train" / f"{LABELED[0]}.png"
    with Image.open(png) as picture:
        picture.convert("RGB").save(png.with_suffix(".jpg"))
    message = run_train([*folder_data, "--num_classes=11"])
    assert_refused(message, png.name, png.with_suffix(".jpg").name)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flag",
    ["--lambda_sc=nan", "--learning_rate=inf", "--scale_max=inf", "--lr_power=nan"],
)
def test_float_flag_that_is_not_finite_is_named(flag, data, tmp_path):
    model_dir = tmp_path / "run"
    message = run_train(arguments(data, model_dir, flag))
    assert_refused(message, flag.split("=")[0], "finite")
    assert not model_dir.exists()


def test_model_dir_that_is_a_file_is_refused(data, tmp_path):
    model_dir = tmp_path / "run"
    model_dir.write_text("notes\n")
    assert_refused(run_train(arguments(data, model_dir)), "--model_dir", model_dir)
    assert_refused(run_train(arguments(data, model_dir / "sub")), "--model_dir", model_dir)
    assert model_dir.read_text() == "notes\n"


def test_model_dir_in_a_read_only_folder_is_refused(data, tmp_path):
    parent = tmp_path / "read_only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("this user (root) writes into read-only folders")
        message = run_train(arguments(data, parent / "run"))
        assert_refused(message, "--model_dir", parent / "run")
        assert os.listdir(parent) == []
    finally:
        parent.chmod(0o755)


def test_second_run_on_a_model_dir_is_refused_naming_the_first(data, tmp_path):
    model_dir = tmp_path / "run"
    with runs.lock_model_dir(str(model_dir)):  # this process is the first run
        before = tree_digest(model_dir)
        message = run_train(arguments(data, model_dir))
        assert_refused(message, "--model_dir", f"process {os.getpid()} on")
        assert tree_digest(model_dir) == before
    assert not model_dir.exists()  # the first run created it and left it empty


def test_lock_of_a_dead_run_does_not_block(data, tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / runs.LOCK_NAME).write_text(f"{finished.stdout.strip()} on somewhere\n")
    truncate(label(data, "val"))  # to stop the run after the lock, at the preflight
    message = run_train(arguments(data, model_dir))
    assert_refused(message, f"{VAL}.png")
    assert os.listdir(model_dir) == []


def test_without_flock_the_lock_checks_the_recorded_process(tmp_path, monkeypatch):
    """Some network file systems have no flock: the process id in run.lock decides."""
    import socket

    monkeypatch.setattr(runs, "fcntl", None)
    lock = tmp_path / runs.LOCK_NAME
    lock.write_text(f"{os.getppid()} on {socket.gethostname()}\n")  # alive, not this process
    with pytest.raises(runs.ConfigError, match=f"process {os.getppid()} on"):
        with runs.lock_model_dir(str(tmp_path)):
            pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid} on {socket.gethostname()}\n")
    with runs.lock_model_dir(str(tmp_path)):
        assert lock.read_text() == f"{os.getpid()} on {socket.gethostname()}\n"
    assert not lock.exists()


def record_run(data, model_dir, *extra):
    """config.json and labeled_list.txt as `scl_tf.train ARGV` writes them (a run stopped
    before its first checkpoint)."""
    flags_lib.define_train_flags()
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["train", *arguments(data, model_dir, *extra)])
        config = flags_lib.config(flags.FLAGS)
    finally:
        flags.FLAGS.unparse_flags()
    from scl_tf.data import pipeline

    files = pipeline.train_files(config.data)
    runs.write_config(config, files.spec.num_classes, files.spec.class_names)
    splits.write_labeled_list(str(model_dir), files.labeled, files.root)


@pytest.mark.parametrize(
    "change, named",
    [
        ("another data_dir", "--data_dir"),
        ("another labeled count", "--labeled_count"),
        ("another labeled list", "--labeled_list"),
        ("another unlabeled folder", "--unlabeled_dirs"),
    ],
)
def test_resume_on_other_data_is_refused_and_changes_nothing(change, named, data, tmp_path):
    model_dir = tmp_path / "run"
    record_run(data, model_dir)
    before = tree_digest(model_dir)
    other = tmp_path / "other.txt"
    other.write_text("train/0001TP_006690.png\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    extra = {
        "another data_dir": [f"--data_dir={shutil.copytree(data, tmp_path / 'copy')}"],
        "another labeled count": ["--labeled_list=", "--labeled_count=3"],
        "another labeled list": [f"--labeled_list={other}"],
        "another unlabeled folder": [f"--unlabeled_dirs={elsewhere}"],
    }[change]
    if change == "another unlabeled folder":
        shutil.copy(image(data, "val"), elsewhere)
    message = run_train(arguments(data, model_dir, *extra))
    assert_refused(message, named, model_dir)
    assert tree_digest(model_dir) == before


def test_resume_from_the_runs_own_list_passes_the_data_check(data, tmp_path):
    model_dir = tmp_path / "run"
    record_run(data, model_dir)
    own = model_dir / splits.LABELED_LIST_NAME
    truncate(label(data, "val"))  # stops the run at the preflight, after the data check
    message = run_train(arguments(data, model_dir, f"--labeled_list={own}"))
    assert_refused(message, f"{VAL}.png")


def save_step_checkpoint(model_dir, step=1):
    """A checkpoint in model_dir/checkpoints as RunCheckpoints writes one (here only its step)."""
    folder = os.path.join(model_dir, runs.LATEST_FOLDER)
    state = tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64))
    return tf.train.CheckpointManager(state, folder, max_to_keep=3).save(checkpoint_number=step)


def test_truncated_checkpoint_on_resume_is_named(data, tmp_path):
    model_dir = tmp_path / "run"
    record_run(data, model_dir)
    prefix = save_step_checkpoint(model_dir)
    truncate(
        tmp_path / "run" / runs.LATEST_FOLDER / f"{os.path.basename(prefix)}.data-00000-of-00001"
    )
    before = tree_digest(model_dir)
    message = run_train(arguments(data, model_dir))
    assert_refused(message, prefix, "truncated")
    assert tree_digest(model_dir) == before


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, write_small_run):
    """A model dir of a small MobileNetV2 CamVid run (11 classes), written once: copy it to
    change it."""
    model_dir = tmp_path_factory.mktemp("small") / "run"
    write_small_run(str(model_dir))
    return model_dir


def test_weights_of_a_run_of_another_backbone_are_refused(data, tmp_path, small_run):
    source = small_run
    model_dir = tmp_path / "run"
    for weights in (source, source / runs.EXPORT_NAME):
        message = run_train(
            arguments(data, model_dir, "--backbone=resnet50", f"--weights={weights}")
        )
        assert_refused(message, "--weights", "mobilenetv2", "resnet50")
    assert not model_dir.exists()


class _FullDisk:
    """A CheckpointManager.save that fails as TensorFlow does on a full disk, after writing
    part of its temporary files."""

    def __init__(self, manager):
        self.manager = manager

    def __call__(self, checkpoint_number):
        temporary = os.path.join(self.manager.directory, f"ckpt-{int(checkpoint_number)}_temp")
        os.makedirs(temporary)
        with open(os.path.join(temporary, "part-00000-of-00001.data-00000-of-00001"), "wb") as out:
            out.write(b"half a checkpoint")
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{temporary}/part-00000-of-00001.data; No space left on device [Op:SaveV2]"
        )


def test_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    strategy = tf.distribute.get_strategy()
    saved = checkpoints_lib.RunCheckpoints(str(tmp_path), strategy, 3, weights=tf.Variable(1.0))
    saved.step.assign(1)
    first = saved.save()
    saved.step.assign(2)
    monkeypatch.setattr(saved.latest, "save", _FullDisk(saved.latest))
    with pytest.raises(checkpoints_lib.CheckpointError) as failed:
        saved.save()
    message = str(failed.value)
    assert "\n" not in message and "No space left on device" in message and first in message
    folder = str(tmp_path / runs.LATEST_FOLDER)
    assert not [name for name in os.listdir(folder) if name.startswith("ckpt-2")]
    assert saved.latest.latest_checkpoint == first == tf.train.latest_checkpoint(folder)


def test_leftovers_of_a_killed_save_are_removed_when_the_run_starts_again(tmp_path):
    strategy = tf.distribute.get_strategy()
    first = checkpoints_lib.RunCheckpoints(str(tmp_path), strategy, 3, weights=tf.Variable(1.0))
    first.step.assign(1)
    first.save()
    folder = tmp_path / runs.LATEST_FOLDER
    (folder / "ckpt-2_temp").mkdir()
    (folder / "ckpt-2_temp" / "part-00000-of-00001.index").write_bytes(b"partial")
    (folder / "ckpt-2.index").write_bytes(b"partial")
    again = checkpoints_lib.RunCheckpoints(str(tmp_path), strategy, 3, weights=tf.Variable(0.0))
    assert again.restore() and again.saved_step() == 1
    assert not any(name.startswith("ckpt-2") for name in os.listdir(folder))


def test_evaluate_names_a_truncated_latest_checkpoint(tmp_path, small_run):
    model_dir = shutil.copytree(small_run, tmp_path / "run")
    prefix = save_step_checkpoint(model_dir)
    truncate(tmp_path / "run" / runs.LATEST_FOLDER / f"{os.path.basename(prefix)}.index")
    message = run_evaluate([f"--model_dir={model_dir}", "--checkpoint=latest"])
    assert_refused(message, prefix, "truncated")


def test_model_keras_of_another_architecture_than_its_config_is_refused(tmp_path, small_run):
    from scl_tf.export import serving

    model_dir = shutil.copytree(small_run, tmp_path / "run")  # MobileNetV2, 11 classes
    path = model_dir / runs.CONFIG_NAME
    record = json.loads(path.read_text())
    record["model"]["backbone"] = "resnet50"
    path.write_text(json.dumps(record))
    message = run_evaluate([f"--model_dir={model_dir}"])
    assert_refused(message, model_dir / runs.EXPORT_NAME, path, "mobilenetv2", "resnet50")
    with pytest.raises(runs.ModelError, match="resnet50"):  # export/to_onnx's loader
        serving.load_source(str(model_dir))


def test_evaluate_names_a_file_only_tensorflow_cannot_decode(data, small_run):
    model_dir = small_run
    first = sorted((data / "val").glob("*.png"))[0]
    break_crc(first)
    message = run_evaluate([f"--model={model_dir}", "--dataset=camvid", f"--data_dir={data}"])
    assert_refused(message, first)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated label", "flag"])
def test_the_terminal_shows_one_line(damage, data, user_env, tmp_path):
    """As a user runs it: exit status 1, one stderr line, no TensorFlow start-up lines."""
    extra = []
    if damage == "truncated label":
        truncate(label(data, "labeled"))
    else:
        extra = ["--scl_boxes=40"]
    model_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "scl_tf.train", *arguments(data, model_dir, *extra)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=user_env,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and result.stdout == ""
    assert not model_dir.exists()
