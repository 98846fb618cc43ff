"""`python -m scl_tf.data.check` reports every problem of a dataset at once, decoding as
training does."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from broken_files import append_bytes, break_crc, make_fifo, make_huge, save_as_tiff
from PIL import Image

from scl_tf.config import DataConfig
from scl_tf.data import check, datasets
from scl_tf.data.datasets import Sample


def run_check(*flags):
    return subprocess.run(
        [sys.executable, "-m", "scl_tf.data.check", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_clean_dataset_passes_with_counts_and_shares(camvid_mini_dir):
    result = run_check("--dataset=camvid", f"--data_dir={camvid_mini_dir}")
    assert result.returncode == 0, result.stderr
    assert "train: 32 pairs, 0 problem(s)" in result.stdout
    assert "val: 12 pairs, 0 problem(s)" in result.stdout
    assert "No problems found." in result.stdout


@pytest.mark.slow
def test_every_problem_is_listed(camvid_mini_dir, tmp_path):
    root = tmp_path / "camvid"
    shutil.copytree(camvid_mini_dir, root)
    images = sorted((root / "train").iterdir())
    labels = sorted((root / "trainannot").iterdir())
    images[0].write_bytes(images[0].read_bytes()[:3000])  # truncated
    Image.open(labels[1]).resize((100, 80)).save(labels[1])  # size mismatch
    values = np.asarray(Image.open(labels[2])).copy()
    values[0, 0] = 77
    Image.fromarray(values).save(labels[2])  # undefined value
    (root / "valannot" / sorted((root / "val").iterdir())[0].name).unlink()  # unpaired
    result = run_check("--dataset=camvid", f"--data_dir={root}")
    assert result.returncode == 1
    out = result.stdout
    assert "4 problem(s):" in out
    assert f"Truncated or corrupt PNG file: {images[0]} (it does not end" in out
    assert f"size mismatch: image {images[1]}" in out
    assert f"label {labels[2]} holds values the dataset does not define: [77]" in out
    assert "image without label" in out


@pytest.mark.slow
def test_bad_flag_is_reported():
    result = run_check("--dataset=camvid", "--data_dir=/no/such/place")
    assert result.returncode != 0 and "--data_dir: no such folder" in result.stderr


def test_find_unreadable_names_only_bad_files(camvid_mini_dir, tmp_path):
    good = camvid_mini_dir / "val" / sorted(p.name for p in (camvid_mini_dir / "val").iterdir())[0]
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:2000])
    problems = check.find_unreadable([str(good), str(bad)])
    assert len(problems) == 1 and str(bad) in problems[0]


def test_class_shares_sum_to_one(camvid_mini_dir):
    samples = check.datasets.find_pairs(DataConfig("camvid", str(camvid_mini_dir)), "val")
    problems, counts = check.scan(
        samples, check.datasets.label_spec(DataConfig("camvid", str(camvid_mini_dir)))
    )
    assert problems == [] and counts.sum() == 12 * 360 * 480


@pytest.mark.parametrize(
    "damage, reason",
    [
        (break_crc, "Invalid PNG data"),
        (save_as_tiff, "Unknown image file format"),
        (append_bytes, "does not end with its IEND chunk"),
        (make_fifo, "not a regular file"),
        (make_huge, "too large to decode"),
    ],
)
def test_check_refuses_what_training_cannot_read(damage, reason, camvid_mini_dir, tmp_path):
    """Files that Pillow reads, or that hang or exhaust it, and that would stop training."""
    spec = datasets.label_spec(DataConfig("camvid", str(camvid_mini_dir)))
    name = "0016E5_07959.png"
    for folder in ("val", "valannot"):
        (tmp_path / folder).mkdir()
        shutil.copy(camvid_mini_dir / folder / name, tmp_path / folder)
    for victim in (tmp_path / "val" / name, tmp_path / "valannot" / name):
        damage(victim)
        problems, _ = check.scan(
            [Sample(str(tmp_path / "val" / name), str(tmp_path / "valannot" / name))], spec
        )
        assert len(problems) == 1 and str(victim) in problems[0] and reason in problems[0]
        (named,) = check.find_unreadable([str(victim)])  # the fallback of tf.data's errors
        assert str(victim) in named and reason in named
        victim.unlink()
        shutil.copy(camvid_mini_dir / victim.parent.name / name, victim)
