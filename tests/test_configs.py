"""The shipped flag files parse into valid configs, contradictory flags stop early, and flags
exist only where a command defines them."""

import dataclasses
import pathlib
import re
import subprocess
import sys

import pytest
from absl import flags

from scl_tf import config as config_lib
from scl_tf import flags as flags_lib
from scl_tf.training.scl_model import StepConfig

REPO = pathlib.Path(__file__).parent.parent
CONFIGS = REPO / "configs"


@pytest.fixture
def parse(monkeypatch):
    """Parses flags as `python -m scl_tf.train ...` would, from the repo root."""
    monkeypatch.chdir(REPO)
    flags_lib.define_train_flags()

    def run(*arguments):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train", *arguments])
        return flags_lib.config(flags.FLAGS)

    yield run
    flags.FLAGS.unparse_flags()


def semi_supervised(config):
    return StepConfig.from_config(config).semi_supervised


def run_python(code):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_importing_the_library_defines_no_flag():
    # TensorFlow and absl define flags of their own on import; the library adds none.
    output = run_python(
        "import absl.app, absl.flags as f, keras, tensorflow\n"
        "before = set(f.FLAGS)\n"
        "import scl_tf.data.datasets, scl_tf.data.pipeline, scl_tf.models, "
        "scl_tf.training.loop, scl_tf.evaluate, scl_tf.predict, scl_tf.runs\n"
        "print(sorted(set(f.FLAGS) - before))"
    )
    assert output.strip().splitlines()[-1] == "[]"


# --help of a command run as a module and of a script: flags it must list, and flags of other
# commands it must not. Every command's definer works alike (scl_tf.flags._command); starting a
# process per command would cost this suite a minute.
HELP = {
    ("-m", "scl_tf.train"): (
        ["--lambda_sc", "--crop_size", "--backbone", "--eval_weights", "--dataset"],
        ["--opset", "--overlay_alpha", "--scales", "--provider", "--source"],
    ),
    ("export/to_onnx.py",): (
        ["--opset", "--int8", "--source", "--parity_dir", "--model_dir"],
        ["--lambda_sc", "--precision", "--scales", "--dataset"],
    ),
}


@pytest.mark.slow
def test_help_lists_the_commands_own_flags_only():
    """absl's --help shows the main module's key flags; the flags are defined in
    scl_tf.flags, which makes them key flags of the command that defined them."""
    running = {
        command: subprocess.Popen(
            [sys.executable, *command, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for command in HELP
    }
    for command, process in running.items():
        text = process.communicate(timeout=300)[0]
        listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", text, re.MULTILINE))
        wanted, others = HELP[command]
        assert {flag[2:] for flag in wanted} <= listed, (command, text[-2000:])
        assert not {flag[2:] for flag in others} & listed, command
        assert "logtostderr" not in listed and "log_dir" not in listed  # absl's own


def test_flag_defaults_are_the_configs_defaults():
    flags_lib.define_train_flags()
    values = flags.FLAGS
    for cls in (config_lib.TrainConfig, config_lib.ModelConfig):
        for field in dataclasses.fields(cls):
            if field.name in ("low_level_stride",):  # 0 on the command line means None
                continue
            assert values[field.name].default == field.default, field.name
    assert flags_lib.parse_id_mapping(["0:255", "3:1"]) == ((0, 255), (3, 1))


def test_step_config_comes_from_the_run_config_in_one_place(parse, tmp_path):
    config = parse("--flagfile=configs/demo.flags", "--lambda_sc=0.7", "--scl_boxes=8", "--seed=5")
    step = StepConfig.from_config(config)
    assert (step.lambda_c, step.lambda_sc, step.rampup_steps) == (2, 0.7, 20)
    assert (step.scl_boxes, step.seed, step.scl_mode) == (8, 5, "exact")
    assert StepConfig() == StepConfig.from_config(
        config_lib.Config(data=config.data, model_dir="x")
    )


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
    assert camvid.data.dataset == "camvid" and not semi_supervised(camvid)
    demo = parse("--flagfile=configs/demo.flags")
    assert demo.data.data_dir == "data/camvid_mini" and semi_supervised(demo)
    assert (demo.train.lambda_c, demo.train.lambda_sc, demo.train.rampup_steps) == (2, 0.3, 20)


def test_camvid_1_8_flags_name_the_committed_46_frames(parse, tmp_path):
    config = parse("--flagfile=configs/camvid_semi_1-8.flags", f"--data_dir={tmp_path}")
    assert config.data.labeled_list == "configs/camvid_1-8_labeled.txt"
    assert semi_supervised(config) and config.train.scl_mode == "exact"
    names = [
        line
        for line in (REPO / config.data.labeled_list).read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(names) == len(set(names)) == 46
    assert all(name.startswith("train/") and name.endswith(".png") for name in names)


def test_recipe_flags_are_the_study_arm_they_name(parse, tmp_path):
    """Stage 1 is the recipe study's S750, stage 2 its W-mean-boxes-pixel from stage 1's run."""
    study = parse("--flagfile=configs/camvid_semi_1-8_imagenet.flags", f"--data_dir={tmp_path}")
    supervised = parse(
        "--flagfile=configs/camvid_recipe_1-8_supervised.flags", f"--data_dir={tmp_path}"
    )
    assert not semi_supervised(supervised)
    s750 = dataclasses.replace(supervised.train, lambda_c=20, lambda_sc=3, mixed_precision="none")
    assert s750 == study.train
    assert supervised.model.weights == "imagenet" and supervised.train.mixed_precision == "bfloat16"
    # Stage 2 starts from stage 1's run dir, and says so while stage 1 has not run.
    missing = f"--weights: no such file or model dir: {supervised.model_dir}$"
    with pytest.raises(config_lib.ConfigError, match=missing):
        parse("--flagfile=configs/camvid_recipe_1-8.flags", f"--data_dir={tmp_path}")
    recipe = parse(
        "--flagfile=configs/camvid_recipe_1-8.flags",
        f"--data_dir={tmp_path}",
        f"--weights={tmp_path}",
    )
    train = recipe.train
    assert semi_supervised(recipe) and (train.lambda_c, train.lambda_sc) == (20, 3)
    assert (train.consistency_class_reduction, train.confidence_form) == ("mean", "pixel")
    assert train.confidence_threshold == 0.97 and train.mixed_precision == "bfloat16"
    assert (recipe.pipeline.cutmix_boxes, recipe.pipeline.scl_boxes) == (4, 2)  # the box rule
    assert (train.steps, train.learning_rate, train.ema_decay) == (750, 0.01, 0.913)
    assert recipe.data == supervised.data == study.data
    assert dataclasses.replace(recipe.model, weights=None) == dataclasses.replace(
        study.model, weights=None
    )


def test_parity_flags_train_every_frame_supervised_briefly(parse, tmp_path):
    config = parse(
        "--flagfile=configs/camvid_parity.flags",
        f"--data_dir={tmp_path}",
        "--backbone=wrn38",
        "--model_dir=runs/parity/wrn38",
    )
    assert not semi_supervised(config) and config.model.output_stride == 8
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


def test_an_empty_labeled_count_clears_the_flag_files_count(parse, tmp_path):
    counted = tmp_path / "counted.flags"
    counted.write_text(f"--flagfile={CONFIGS / 'demo.flags'}\n--labeled_count=4\n")
    assert parse(f"--flagfile={counted}").data.labeled_count == 4
    listing = tmp_path / "list.txt"
    listing.write_text("train/0001TP_006690.png\n")
    config = parse(f"--flagfile={counted}", "--labeled_count=", f"--labeled_list={listing}")
    assert (config.data.labeled_count, config.data.labeled_list) == (None, str(listing))
    config = parse(f"--flagfile={counted}", "--labeled_count=", "--labeled_fraction=0.5")
    assert (config.data.labeled_count, config.data.labeled_fraction) == (None, 0.5)


@pytest.mark.parametrize(
    "argument, flag",
    [
        ("--lambda_sc=nan", "--lambda_sc"),
        ("--learning_rate=inf", "--learning_rate"),
        ("--momentum=nan", "--momentum"),
        ("--epochs=nan", "--epochs"),
        ("--scale_min=nan", "--scale_min"),
        ("--ema_decay=nan", "--ema_decay"),
        ("--labeled_fraction=nan", "--labeled_fraction"),
        ("--lr_power=-1", "--lr_power"),
        ("--scl_boxes=40", "--scl_boxes"),
        ("--lambda_sc=-1", "--lambda_sc"),
        ("--lambda_c=-0.5", "--lambda_c"),
        ("--rampup_steps=-1", "--rampup_steps"),
        ("--decoder_convs=0", "--decoder_convs"),
        ("--decoder_kernel_size=5", "--decoder_kernel_size"),
        ("--data_dir=/no/such/dir", "--data_dir"),
        ("--confidence_threshold=1", "--confidence_threshold"),
        ("--confidence_threshold=-0.1", "--confidence_threshold"),
        ("--cutmix_min_box_cells=-1", "--cutmix_min_box_cells"),
        ("--cutmix_min_box_cells=100", "--cutmix_min_box_cells"),
        ("--weights=/no/such/run", "--weights"),
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
    check_crop_fits(
        files, parse("--flagfile=configs/demo.flags", "--crop_size=720x960", "--scale_max=2.0")
    )


def test_box_rule_sets_n_and_nbox_from_the_crop_and_the_stride(parse, tmp_path):
    """The recipe study's rule: 8 output cells a side on 256x320 crops at stride 16 leaves 4 of
    the 32 boxes (8.1 cells each) and 2 of the 16 SCL boxes; off, the flags' counts stand."""
    arguments = ("--flagfile=configs/camvid_semi_1-8_imagenet.flags", f"--data_dir={tmp_path}")
    plain = parse(*arguments)
    assert (plain.pipeline.cutmix_boxes, plain.pipeline.scl_boxes) == (32, 16)
    ruled = parse(*arguments, "--cutmix_boxes=32", "--scl_boxes=16", "--cutmix_min_box_cells=8")
    assert (ruled.pipeline.cutmix_boxes, ruled.pipeline.scl_boxes) == (4, 2)
    assert StepConfig.from_config(ruled).scl_boxes == 2
    # Stride 8 doubles the cells: 8 cells a side allows more, smaller (in pixels) boxes.
    finer = parse(*arguments, "--cutmix_min_box_cells=8", "--output_stride=8")
    assert finer.pipeline.cutmix_boxes > 4
    # Resolving again (a run's config.json read back) changes nothing.
    assert ruled.pipeline.with_box_rule(16) == ruled.pipeline
    with pytest.raises(
        config_lib.ConfigError, match=r"--cutmix_min_box_cells: 13 cells .* \(12.9\)"
    ):
        parse(*arguments, "--cutmix_min_box_cells=13")


def test_unlabeled_gate_and_reading_flags_reach_the_step(parse, tmp_path):
    config = parse(
        "--flagfile=configs/camvid_semi_1-8_imagenet.flags",
        f"--data_dir={tmp_path}",
        "--consistency_class_reduction=mean",
        "--confidence_threshold=0.97",
        "--confidence_form=pixel",
    )
    step = StepConfig.from_config(config)
    assert (step.consistency_class_reduction, step.confidence_threshold) == ("mean", 0.97)
    assert step.confidence_form == "pixel"
    default = StepConfig.from_config(parse("--flagfile=configs/demo.flags"))
    assert (default.consistency_class_reduction, default.confidence_threshold) == ("sum", 0.0)
