"""File discovery, splits and bad-input errors on tiny real-PNG trees and camvid_mini."""

import os
import shutil

import numpy as np
import pytest
from cityscapes_tree import make_cityscapes_tree
from PIL import Image

from scl_tf.config import ConfigError, DataConfig
from scl_tf.data import datasets, pipeline, splits
from scl_tf.data.datasets import DatasetError


@pytest.fixture
def cityscapes_root(tmp_path):
    return make_cityscapes_tree(tmp_path / "cityscapes", extra_images=3)


def test_cityscapes_pairs_and_coarse_unlabeled(cityscapes_root):
    config = DataConfig(
        "cityscapes", str(cityscapes_root), use_coarse_unlabeled=True, labeled_count=2
    )
    train = datasets.find_pairs(config, "train")
    assert len(train) == 6
    for sample in train:
        assert sample.image.endswith("_leftImg8bit.png")
        assert sample.label == sample.image.replace("leftImg8bit", "gtFine", 1).replace(
            "_leftImg8bit.png", "_gtFine_labelIds.png"
        )
    assert len(datasets.find_pairs(config, "val")) == 2
    files = pipeline.train_files(config)
    assert len(files.labeled) == 2
    assert len(files.unlabeled) == 4 + 3  # rest of train + train_extra
    assert sum("train_extra" in path for path in files.unlabeled) == 3


def test_cityscapes_train_ids_files(cityscapes_root):
    config = DataConfig("cityscapes", str(cityscapes_root), cityscapes_label_format="trainIds")
    assert all(
        s.label.endswith("_gtFine_labelTrainIds.png") for s in datasets.find_pairs(config, "train")
    )


def test_camvid_mini_pairs(camvid_mini_dir):
    config = DataConfig("camvid", str(camvid_mini_dir))
    assert len(datasets.find_pairs(config, "train")) == 32
    assert len(datasets.find_pairs(config, "val")) == 12
    assert datasets.existing_splits(config) == ["train", "val"]
    with pytest.raises(DatasetError, match="no such folder"):
        datasets.find_pairs(config, "test")


def test_folder_dataset_pairs_by_stem_and_suffix(tmp_path):
    for folder in ("img", "msk"):
        (tmp_path / folder / "sub").mkdir(parents=True)
    for name in ("a", "sub/b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / f"{name}.jpg")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "msk" / f"{name}_m.png")
    config = DataConfig(
        "folder",
        image_dir=str(tmp_path / "img"),
        mask_dir=str(tmp_path / "msk"),
        mask_suffix="_m",
        num_classes=2,
    )
    pairs = datasets.find_pairs(config, "train")
    assert [os.path.basename(s.label) for s in pairs] == ["a_m.png", "b_m.png"]
    with pytest.raises(DatasetError, match="--val_image_dir"):
        datasets.find_pairs(config, "val")


def test_unpaired_files_are_all_listed(cityscapes_root):
    images = sorted((cityscapes_root / "leftImg8bit" / "train").rglob("*.png"))
    labels = sorted((cityscapes_root / "gtFine" / "train").rglob("*_labelIds.png"))
    images[0].unlink()
    labels[-1].unlink()
    with pytest.raises(DatasetError) as error:
        datasets.find_pairs(DataConfig("cityscapes", str(cityscapes_root)), "train")
    message = str(error.value)
    assert "2 problem(s)" in message
    assert labels[0].name in message and images[-1].name in message


def test_empty_split_and_missing_folder(tmp_path):
    for split in ("train", "trainannot"):
        (tmp_path / split).mkdir()
    config = DataConfig("camvid", str(tmp_path))
    with pytest.raises(DatasetError, match="split 'train' of camvid is empty"):
        datasets.find_pairs(config, "train")
    with pytest.raises(DatasetError, match="valannot|no such folder"):
        datasets.find_pairs(config, "val")


def test_header_check_names_size_mismatch_and_bad_label_mode(camvid_mini_dir, tmp_path):
    root = tmp_path / "camvid"
    shutil.copytree(camvid_mini_dir, root)
    labels = sorted((root / "trainannot").iterdir())
    Image.open(labels[0]).resize((240, 180)).save(labels[0])
    Image.open(labels[1]).convert("RGB").save(labels[1])
    train = datasets.find_pairs(DataConfig("camvid", str(root)), "train")
    with pytest.raises(DatasetError) as error:
        datasets.check_headers(train, "camvid train")
    message = str(error.value)
    assert f"size mismatch: image {root / 'train' / labels[0].name}" in message
    assert f"label {labels[1]} has mode 'RGB'" in message


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"labeled_fraction": 0.0}, "--labeled_fraction"),
        ({"labeled_fraction": 1.5}, "--labeled_fraction"),
        ({"labeled_count": 0}, "--labeled_count"),
        ({"labeled_fraction": 0.5, "labeled_count": 3}, "--labeled_fraction and --labeled_count"),
        ({"labeled_list": "/no/such/list.txt"}, "--labeled_list"),
        ({"data_dir": "/no/such/folder"}, "--data_dir"),
        ({"data_dir": None}, "--data_dir"),
        ({"unlabeled_dirs": ("/no/such/folder",)}, "--unlabeled_dirs"),
    ],
)
def test_bad_flags_name_the_flag(camvid_mini_dir, kwargs, flag):
    arguments = {"dataset": "camvid", "data_dir": str(camvid_mini_dir), **kwargs}
    with pytest.raises(ConfigError, match=flag):
        DataConfig(**arguments)


def test_folder_dataset_requires_its_flags(tmp_path):
    with pytest.raises(ConfigError, match="--image_dir"):
        DataConfig("folder", mask_dir=str(tmp_path), num_classes=2)


def test_labeled_fraction_is_deterministic_and_written(camvid_mini_dir, tmp_path):
    config = DataConfig("camvid", str(camvid_mini_dir), labeled_fraction=0.25, split_seed=3)
    files = pipeline.train_files(config)
    splits.write_labeled_list(str(tmp_path), files.labeled, files.root)
    again = pipeline.train_files(config)
    other = pipeline.train_files(
        DataConfig("camvid", str(camvid_mini_dir), labeled_fraction=0.25, split_seed=4)
    )
    assert len(files.labeled) == 8 and len(files.unlabeled) == 24
    assert files.labeled == again.labeled and files.labeled != other.labeled
    assert not {s.image for s in files.labeled} & set(files.unlabeled)
    listed = (tmp_path / splits.LABELED_LIST_NAME).read_text().split()
    assert listed == [os.path.relpath(s.image, camvid_mini_dir) for s in files.labeled]
    # The written list reproduces the split.
    from_list = pipeline.train_files(
        DataConfig("camvid", str(camvid_mini_dir), labeled_list=str(tmp_path / "labeled_list.txt"))
    )
    assert from_list.labeled == files.labeled


def test_labeled_list_accepts_names_and_stems_and_reports_unknown(cityscapes_root, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# labeled\naachen_000000_000019\nbremen_000001_000019_leftImg8bit.png\n"
        "leftImg8bit/train/aachen/aachen_000002_000019_leftImg8bit.png\n"
    )
    config = DataConfig("cityscapes", str(cityscapes_root), labeled_list=str(listing))
    files = pipeline.train_files(config)
    assert len(files.labeled) == 2 + 1 and len(files.unlabeled) == 3
    listing.write_text("aachen_000000_000019\nmunich_000000_000019\nnot_there.png\n")
    with pytest.raises(DatasetError, match=r"line 2: 'munich_000000_000019'.*\n.*line 3"):
        pipeline.train_files(config)


def test_labeled_count_larger_than_train(camvid_mini_dir):
    config = DataConfig("camvid", str(camvid_mini_dir), labeled_count=33)
    with pytest.raises(DatasetError, match="--labeled_count=33 exceeds the 32"):
        pipeline.train_files(config)


def test_labeled_list_with_a_byte_order_mark_and_crlf_line_ends_is_read(cityscapes_root, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbfaachen_000000_000019\r\nbremen_000001_000019\r\n")
    config = DataConfig("cityscapes", str(cityscapes_root), labeled_list=str(listing))
    names = [os.path.basename(sample.image) for sample in pipeline.train_files(config).labeled]
    assert names == ["aachen_000000_000019_leftImg8bit.png", "bremen_000001_000019_leftImg8bit.png"]
    listing.write_bytes(b"aachen_000000_000019\r\n\xff\xfeb\x00r\x00\r\n")  # UTF-16 pasted in
    with pytest.raises(DatasetError, match=r"--labeled_list .*list.txt: line 2 is not UTF-8"):
        pipeline.train_files(config)


def test_folder_dataset_refuses_two_images_of_one_name(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "a.png")
    config = DataConfig(
        "folder",
        image_dir=str(tmp_path / "images"),
        mask_dir=str(tmp_path / "masks"),
        num_classes=2,
    )
    with pytest.raises(DatasetError, match=r"two images of one name: .*a\.jpg and .*a\.png"):
        datasets.find_pairs(config, "train")


def test_header_check_refuses_special_files_bombs_and_names_that_are_not_utf8(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer forever
    header = datasets.header_problems
    assert "not a regular file" in header(datasets.Sample(str(tmp_path / "pipe.png")))[0]
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(odd)
    (problem,) = header(datasets.Sample(os.fsdecode(odd)))
    assert problem.endswith("caf\\xe9.png") and "not UTF-8" in problem
    assert "no such file" in header(datasets.Sample(str(tmp_path / "gone.png")))[0].lower()
