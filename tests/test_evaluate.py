"""Evaluation: scores equal to cityscapesscripts, model and prediction-file paths, the command."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from cityscapes_tree import LABEL_IDS, make_cityscapes_tree
from PIL import Image

from scl_tf import config as config_lib
from scl_tf import evaluate, runs
from scl_tf import flags as flags_lib
from scl_tf.data import datasets
from scl_tf.data import labels as labels_lib
from scl_tf.data.datasets import DatasetError
from scl_tf.eval import predictors, scoring
from scl_tf.predict import list_inputs, output_paths, predict_files

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_CLASSES = 19

flags_lib.define_evaluate_flags()

# Runs in a subprocess: cityscapesscripts reads CITYSCAPES_* at import time.
CITYSCAPES_SCRIPT = textwrap.dedent("""
    import glob, json, os, sys
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    cs.args.evalInstLevelScore = False  # crashes with NumPy 2 (np.in1d)
    cs.args.quiet = True
    cs.args.JSONOutput = False
    scores = {}
    for folder in sys.argv[1:]:
        cs.args.predictionPath, cs.args.predictionWalk = folder, None
        truths = sorted(glob.glob(cs.args.groundTruthSearch))
        predictions = [cs.getPrediction(cs.args, truth) for truth in truths]
        scores[folder] = cs.evaluateImgLists(predictions, truths, cs.args)["classScores"]
    print(json.dumps(scores))
""")


def tiny_model(num_classes=NUM_CLASSES, seed=0):
    """1x1 convolutions: float RGB [B, H, W, 3] in [0, 255] -> logits, varied per pixel."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Rescaling(1 / 64.0),
            keras.layers.Conv2D(8, 1, activation="tanh"),
            keras.layers.Conv2D(num_classes, 1),
        ]
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A Cityscapes tree whose val split has 4 frames in 2 cities, and a model file."""
    root = tmp_path_factory.mktemp("cityscapes")
    make_cityscapes_tree(
        root, splits=(("val", ("frankfurt", "lindau"), 2),), height=24, width=40, seed=1
    )
    tiny_model().save(str(root / "model.keras"))
    return root


def val_samples(root):
    return datasets.find_pairs(
        config_lib.DataConfig(dataset="cityscapes", data_dir=str(root)), "val"
    )


def cityscapes_scores(root, *folders):
    """{folder: {label name: IoU}} from cityscapesscripts' evalPixelLevelSemanticLabeling."""
    env = {
        **os.environ,
        "CITYSCAPES_DATASET": str(root),
        "CITYSCAPES_RESULTS": str(folders[0]),
        "CITYSCAPES_EXPORT_DIR": str(root),
    }
    result = subprocess.run(
        [sys.executable, "-c", CITYSCAPES_SCRIPT, *map(str, folders)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_random_label_ids(root, folder):
    """labelIds predictions that use every Cityscapes id, void ones included."""
    rng = np.random.default_rng(5)
    for sample in val_samples(root):
        with Image.open(sample.label) as label:
            truth = np.asarray(label)
        guess = np.where(rng.random(truth.shape) < 0.5, truth, rng.choice(LABEL_IDS, truth.shape))
        folder.mkdir(parents=True, exist_ok=True)
        name = os.path.basename(sample.image)
        Image.fromarray(guess.astype(np.uint8)).save(folder / name)


@pytest.mark.slow
def test_scores_equal_cityscapesscripts(tree, tmp_path):
    spec = labels_lib.cityscapes()
    samples = val_samples(tree)
    model_predictions = tmp_path / "model"
    paths, base = list_inputs(str(tree / "leftImg8bit" / "val"))
    predictor = predictors.load_predictor(str(tree / "model.keras"))
    predict_files(
        predictor,
        paths,
        output_paths(paths, base, str(model_predictions)),
        config_lib.InferenceConfig(),
        "labelIds",
        spec,
        verbose=False,
    )
    random_predictions = tmp_path / "random"
    write_random_label_ids(tree, random_predictions)
    reference = cityscapes_scores(tree, model_predictions, random_predictions)

    for folder in (model_predictions, random_predictions):
        ours = scoring.evaluate_predictions(
            scoring.pair_predictions(samples, str(folder)), spec, "labelIds"
        )
        theirs = reference[str(folder)]
        for name, iou in zip(spec.class_names, ours.class_iou()):
            assert (np.isnan(iou) and np.isnan(theirs[name])) or iou == pytest.approx(
                theirs[name], abs=1e-6
            ), name
        defined = [theirs[name] for name in spec.class_names if not np.isnan(theirs[name])]
        assert ours.miou() == pytest.approx(np.mean(defined), abs=1e-6)
    assert ours.confusion[:, -1].sum() > 0  # the random predictions hold void ids

    # Running the model directly scores the same pixels as its written predictions.
    direct = scoring.evaluate_model(
        predictor, samples, spec, config_lib.InferenceConfig(), verbose=False
    )
    written = scoring.evaluate_predictions(
        scoring.pair_predictions(samples, str(model_predictions)), spec, "labelIds"
    )
    np.testing.assert_array_equal(direct.confusion, written.confusion)
    assert direct.num_images == 4 and direct.seconds_per_image > 0


def test_unpaired_prediction_names_are_listed(tree, tmp_path):
    folder = tmp_path / "predictions"
    write_random_label_ids(tree, folder)
    missing = sorted(folder.iterdir())[0]
    missing.unlink()
    (folder / "stray_000000_000019_leftImg8bit.png").write_bytes(b"")
    with pytest.raises(DatasetError) as error:
        scoring.pair_predictions(val_samples(tree), str(folder))
    message = str(error.value)
    assert f"image without prediction: {tree}/leftImg8bit/val/" in message
    assert missing.name in message
    assert (
        "prediction without image: " + str(folder / "stray_000000_000019_leftImg8bit.png")
        in message
    )


def test_bad_prediction_files_are_named(tree, tmp_path):
    samples = val_samples(tree)
    folder = tmp_path / "predictions"
    write_random_label_ids(tree, folder)
    victim = folder / os.path.basename(samples[0].image)
    Image.fromarray(np.full((24, 40), 200, np.uint8)).save(victim)
    with pytest.raises(DatasetError, match=f"prediction {victim} holds values .*200"):
        scoring.evaluate_predictions(
            scoring.pair_predictions(samples, str(folder)), labels_lib.cityscapes(), "labelIds"
        )
    Image.fromarray(np.zeros((12, 40), np.uint8)).save(victim)
    with pytest.raises(DatasetError, match="size mismatch"):
        scoring.evaluate_predictions(
            scoring.pair_predictions(samples, str(folder)), labels_lib.cityscapes(), "labelIds"
        )


def test_class_count_mismatch_is_reported(tree):
    predictor = predictors.keras_predictor(tiny_model(num_classes=5), "five-class model")
    with pytest.raises(runs.ModelError, match="predicts 5 classes, the cityscapes"):
        scoring.evaluate_model(
            predictor,
            val_samples(tree),
            labels_lib.cityscapes(),
            config_lib.InferenceConfig(),
            verbose=False,
        )


def test_model_dir_alone_finds_its_dataset_and_gets_the_json(tree, tmp_path):
    """--model_dir of a run (config.json + model.keras): the dataset comes from the run and
    the JSON lands in the run's folder."""
    run = tmp_path / "run"
    data = config_lib.DataConfig(dataset="cityscapes", data_dir=str(tree))
    runs.write_config(
        config_lib.Config(data=data, model_dir=str(run)),
        NUM_CLASSES,
        labels_lib.cityscapes().class_names,
    )
    tiny_model().save(str(run / runs.EXPORT_NAME))
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(model_dir=str(run), scales=["0.5", "1"], tile="16"):
        evaluation, context, output = evaluate.evaluate_from_flags(flags.FLAGS)
    assert output == os.path.join(str(run), "eval_final_val_s0.5-1_tile16x16.json")
    assert context["checkpoint"] == "final" and context["tile_stride"] == (11, 11)
    assert evaluation.num_images == 4 and evaluation.confusion.sum() > 0


@pytest.mark.slow
def test_command_line_writes_table_and_json(tree):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scl_tf.evaluate",
            "--dataset=cityscapes",
            f"--data_dir={tree}",
            f"--model={tree / 'model.keras'}",
            "--scales=0.5,1.0,2.0",
            "--flip",
            "--tile=16x16",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "mIoU" in result.stdout and "pixel accuracy" in result.stdout
    path = tree / "eval_model.keras_val_s0.5-1-2_flip_tile16x16.json"
    record = json.loads(path.read_text())
    assert record["num_images"] == 4 and record["flip"] and record["tile"] == [16, 16]
    assert set(record["class_iou"]) == set(labels_lib.cityscapes().class_names)
    assert f"Wrote {path}" in result.stdout


def test_contradictory_flags_are_named(tree):
    flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver(model=str(tree / "model.keras"), predictions=str(tree)):
        with pytest.raises(config_lib.ConfigError, match="--predictions and --model"):
            evaluate.evaluate_from_flags(flags.FLAGS)
    with flagsaver.flagsaver(model=str(tree / "model.keras"), dataset=None):
        with pytest.raises(config_lib.ConfigError, match="--dataset: required"):
            evaluate.evaluate_from_flags(flags.FLAGS)
