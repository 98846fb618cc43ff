"""The shipped flag files parse into valid configs, and contradictory flags stop early."""

import pathlib

import pytest
from absl import flags

from scl_tf import config as config_lib

REPO = pathlib.Path(__file__).parent.parent
CONFIGS = REPO / "configs"


@pytest.fixture
def parse(monkeypatch):
    """Parses flags as `python -m scl_tf.train ...` would, from the repo root."""
    monkeypatch.chdir(REPO)

    def run(*arguments):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train", *arguments])
        return config_lib.from_flags(flags.FLAGS)

    yield run
    flags.FLAGS.unparse_flags()


def test_cityscapes_flags_are_the_papers_recipe(parse, tmp_path):
    config = parse("--flagfile=configs/cityscapes.flags", f"--data_dir={tmp_path}")
    assert (config.model.backbone, config.model.output_stride) == ("wrn38", 8)
    assert config.model.low_level_stride is None and config.model.sync_batchnorm  # wrn38: 2
    train = config.train
    assert (train.learning_rate, train.lr_power, train.momentum) == (0.002, 1.0, 0.9)
    assert (train.weight_decay, train.weight_decay_mode) == (0.001, "coupled")
    assert (train.epochs, train.ema_decay, train.teacher, train.eval_weights) == (
        175,
        0.999,
        "ema",
        "ema",
    )
    assert (train.lambda_c, train.lambda_sc, train.num_pairs) == (20, 3, 9000)
    pipeline = config.pipeline
    assert (pipeline.cutmix_boxes, pipeline.scl_boxes) == (32, 16)
    assert (pipeline.labeled_batch_size, pipeline.unlabeled_batch_size) == (1, 1)
    assert config.data.use_coarse_unlabeled and config.data.labeled_fraction is None


def test_semi_1_8_flags_build_on_the_paper_recipe(parse, tmp_path):
    config = parse("--flagfile=configs/cityscapes_semi_1-8.flags", f"--data_dir={tmp_path}")
    assert config.data.labeled_fraction == 0.125
    assert config.model_dir == "runs/cityscapes_semi_1-8"
    assert (config.model.backbone, config.train.lambda_sc) == ("wrn38", 3)


def test_camvid_and_demo_flags_parse(parse, tmp_path):
    camvid = parse("--flagfile=configs/camvid.flags", f"--data_dir={tmp_path}")
    assert camvid.data.dataset == "camvid" and not camvid.train.semi_supervised
    demo = parse("--flagfile=configs/demo.flags")
    assert demo.data.data_dir == "data/camvid_mini" and demo.train.semi_supervised
    assert (demo.train.lambda_c, demo.train.lambda_sc, demo.train.rampup_steps) == (2, 0.3, 20)


def test_camvid_1_8_flags_name_the_committed_46_frames(parse, tmp_path):
    config = parse("--flagfile=configs/camvid_semi_1-8.flags", f"--data_dir={tmp_path}")
    assert config.data.labeled_list == "configs/camvid_1-8_labeled.txt"
    assert config.train.semi_supervised and config.train.scl_mode == "exact"
    names = [
        line
        for line in (REPO / config.data.labeled_list).read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(names) == len(set(names)) == 46
    assert all(name.startswith("train/") and name.endswith(".png") for name in names)


def test_parity_flags_train_every_frame_supervised_briefly(parse, tmp_path):
    config = parse(
        "--flagfile=configs/camvid_parity.flags",
        f"--data_dir={tmp_path}",
        "--backbone=wrn38",
        "--model_dir=runs/parity/wrn38",
    )
    assert not config.train.semi_supervised and config.model.output_stride == 8
    data = config.data
    assert (data.labeled_fraction, data.labeled_count, data.labeled_list) == (None, None, None)
    assert (config.train.steps, config.train.ema_decay, config.model_dir) == (
        100,
        0.9,
        "runs/parity/wrn38",
    )


def test_an_empty_labeled_list_clears_the_flag_files_for_another_split(parse, tmp_path):
    with pytest.raises(config_lib.ConfigError, match="--labeled_fraction and --labeled_list"):
        parse(
            "--flagfile=configs/camvid_semi_1-8.flags",
            f"--data_dir={tmp_path}",
            "--labeled_fraction=0.25",
        )
    config = parse(
        "--flagfile=configs/camvid_semi_1-8.flags",
        f"--data_dir={tmp_path}",
        "--labeled_list=",
        "--labeled_fraction=0.25",
    )
    assert (config.data.labeled_list, config.data.labeled_fraction) == (None, 0.25)


@pytest.mark.parametrize(
    "argument, flag",
    [
        ("--scl_boxes=40", "--scl_boxes"),
        ("--lambda_sc=-1", "--lambda_sc"),
        ("--lambda_c=-0.5", "--lambda_c"),
        ("--rampup_steps=-1", "--rampup_steps"),
        ("--decoder_convs=0", "--decoder_convs"),
        ("--decoder_kernel_size=5", "--decoder_kernel_size"),
        ("--data_dir=/no/such/dir", "--data_dir"),
    ],
)
def test_contradictory_flags_name_the_flag(parse, argument, flag):
    with pytest.raises(config_lib.ConfigError, match=flag):
        parse("--flagfile=configs/demo.flags", argument)


def test_missing_data_dir_is_named(parse):
    with pytest.raises(config_lib.ConfigError, match="--data_dir"):
        parse("--dataset=camvid", "--model_dir=runs/x")


def test_crop_larger_than_the_scaled_images_stops_before_training(parse):
    from scl_tf.data import pipeline
    from scl_tf.training.loop import check_crop_fits

    config = parse("--flagfile=configs/demo.flags", "--crop_size=800x800")  # frames: 360x480
    files = pipeline.train_files(config.data)
    with pytest.raises(config_lib.ConfigError, match=r"--crop_size=800x800 .*\(360x480\)"):
        check_crop_fits(files, config)
    check_crop_fits(files, parse("--flagfile=configs/demo.flags", "--crop_size=720x960"))
