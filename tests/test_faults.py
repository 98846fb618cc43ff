"""The fault-injection suite: broken copies of the bundled data and wrong flags, each refused
before step 1 with one line naming the file or flag, no traceback, and nothing written to the
model dir (or changed in an existing one).

Runs `scl_tf.train`'s own `main` in this process (one TensorFlow start for all cases); the
slow tier runs a few cases as real subprocesses to check what a user sees on the terminal.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from commands import TINY_TRAIN_FLAGS
from PIL import Image

from scl_tf import flags as flags_lib
from scl_tf import runs
from scl_tf import train as train_command
from scl_tf.config import Config, DataConfig, ModelConfig

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


def run_train(argv):
    """The SystemExit message of `python -m scl_tf.train ARGV`, in this process."""
    flags_lib.define_train_flags()
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["train", *argv])
        with pytest.raises(SystemExit) as stopped:
            train_command.main(["train"])
    finally:
        flags.FLAGS.unparse_flags()
    return str(stopped.value.code)


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

    assert check() == 2 * (len(files.labeled) + len(val)) + len(files.unlabeled)
    assert check() == 0
    truncate(data / "valannot" / f"{VAL}.png")
    with pytest.raises(DatasetError, match=f"{VAL}.png"):
        check()
    with pytest.raises(DatasetError, match=f"{VAL}.png"):  # a failed file is never remembered
        check()


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
