"""The tf.data training and evaluation streams on camvid_mini and small folder datasets."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from scl_tf.config import DataConfig, PipelineConfig
from scl_tf.data import augment, pipeline
from scl_tf.data.datasets import DatasetError, Sample

FAST = dict(crop_size=(64, 80), color_jitter=0.0, blur_prob=0.0, class_uniform_pct=0.0)


@pytest.fixture(scope="module")
def mini_files(camvid_mini_dir):
    return pipeline.train_files(DataConfig("camvid", str(camvid_mini_dir), labeled_count=6))


def first_elements(dataset, count):
    return [tf.nest.map_structure(lambda t: t.numpy(), element) for element in dataset.take(count)]


@pytest.mark.slow
def test_element_structure_for_two_replicas(mini_files):
    config = PipelineConfig(
        crop_size=(48, 64),
        labeled_batch_size=2,
        unlabeled_batch_size=3,
        cutmix_boxes=8,
        scl_boxes=4,
    )
    (element,) = first_elements(pipeline.train_dataset(mini_files, config, num_replicas=2), 1)
    labeled, unlabeled = element["labeled"], element["unlabeled"]
    assert labeled["image"].shape == (4, 48, 64, 3) and labeled["image"].dtype == np.float32
    assert labeled["label"].shape == (4, 48, 64) and labeled["label"].dtype == np.int32
    for key in ("u_a", "u_b"):
        assert unlabeled[key].shape == (6, 48, 64, 3)
        assert 0 <= unlabeled[key].min() and unlabeled[key].max() <= 255
    assert unlabeled["boxes"].shape == (6, 8, 4) and unlabeled["boxes"].dtype == np.int32
    for part, key in [
        (labeled, "photometric"),
        (unlabeled, "photometric_a"),
        (unlabeled, "photometric_b"),
    ]:
        assert part[key].shape == (len(part[key]), 5) and part[key].dtype == np.float32
    assert set(np.unique(labeled["label"])) <= set(range(11)) | {255}
    assert not np.array_equal(unlabeled["u_a"], unlabeled["u_b"])


@pytest.mark.slow
def test_stream_is_deterministic_given_the_seed(mini_files):
    config = PipelineConfig(crop_size=(32, 32), class_uniform_pct=0.5, seed=7)
    runs = [first_elements(pipeline.train_dataset(mini_files, config), 3) for _ in range(2)]
    other = first_elements(
        pipeline.train_dataset(
            mini_files, PipelineConfig(crop_size=(32, 32), class_uniform_pct=0.5, seed=8)
        ),
        3,
    )
    flat = [tf.nest.flatten(run) for run in runs + [other]]
    assert all(np.array_equal(a, b) for a, b in zip(flat[0], flat[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(flat[0], flat[2]))


@pytest.mark.slow
def test_apply_photometric_changes_each_image_with_its_own_parameters(mini_files):
    config = PipelineConfig(crop_size=(32, 48), color_jitter=0.25, blur_prob=0.5)
    (element,) = first_elements(pipeline.train_dataset(mini_files, config), 1)
    applied = tf.nest.map_structure(np.asarray, pipeline.apply_photometric(element))
    assert set(applied["labeled"]) == {"image", "label"}
    assert set(applied["unlabeled"]) == {"u_a", "u_b", "boxes"}
    np.testing.assert_array_equal(applied["labeled"]["label"], element["labeled"]["label"])
    for part, image_key, params_key in [
        ("labeled", "image", "photometric"),
        ("unlabeled", "u_a", "photometric_a"),
        ("unlabeled", "u_b", "photometric_b"),
    ]:
        images, params = element[part][image_key], element[part][params_key]
        for index in range(len(images)):
            alone = augment.apply_photometric(images[index : index + 1], params[index : index + 1])
            np.testing.assert_allclose(applied[part][image_key][index], alone[0], atol=1e-3)
            assert np.abs(applied[part][image_key][index] - images[index]).max() > 1
    # A hand-made batch without parameters passes unchanged.
    bare = {"labeled": {"image": element["labeled"]["image"]}}
    np.testing.assert_array_equal(
        pipeline.apply_photometric(bare)["labeled"]["image"], element["labeled"]["image"]
    )


@pytest.mark.slow
def test_supervised_stream_has_no_unlabeled_part(mini_files):
    files = pipeline.TrainFiles(mini_files.spec, mini_files.root, mini_files.labeled, [])
    (element,) = first_elements(
        pipeline.train_dataset(files, PipelineConfig(**FAST), with_unlabeled=False), 1
    )
    assert set(element) == {"labeled"}
    with pytest.raises(DatasetError, match="unlabeled pool is empty"):
        pipeline.train_dataset(files, PipelineConfig(**FAST))


def test_crops_keep_image_and_label_aligned(tmp_path):
    """Image pixels encode their class; at scale 1 every labeled crop pixel must agree."""
    for folder in ("img", "msk"):
        (tmp_path / folder).mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        label = rng.integers(0, 5, (40, 50)).astype(np.uint8)
        Image.fromarray(np.repeat(label[..., None] * 50, 3, -1)).save(tmp_path / f"img/{i}.png")
        Image.fromarray(label).save(tmp_path / f"msk/{i}.png")
    config = DataConfig(
        "folder", image_dir=str(tmp_path / "img"), mask_dir=str(tmp_path / "msk"), num_classes=5
    )
    files = pipeline.train_files(config)
    stream = pipeline.train_dataset(
        files,
        PipelineConfig(
            crop_size=(32, 32),
            scale_min=1.0,
            scale_max=1.0,
            color_jitter=0.0,
            blur_prob=0.0,
            class_uniform_pct=0.5,
        ),
        with_unlabeled=False,
    )
    for element in first_elements(stream, 10):
        image, label = element["labeled"]["image"][0], element["labeled"]["label"][0]
        np.testing.assert_allclose(image[..., 0], label * 50.0, atol=1e-3)


def rare_class_dataset(root):
    """Four 64x64 masks of class 0 with a 2x2 patch of class 1 in one and of class 2 in
    another."""
    for folder in ("img", "msk"):
        (root / folder).mkdir()
    for i in range(4):
        label = np.zeros((64, 64), np.uint8)
        if i in (0, 3):
            label[40:42, 10:12] = 1 if i == 0 else 2
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / f"img/{i}.png")
        Image.fromarray(label).save(root / f"msk/{i}.png")
    return DataConfig(
        "folder", image_dir=str(root / "img"), mask_dir=str(root / "msk"), num_classes=3
    )


@pytest.mark.parametrize("pct, low, high", [(1.0, 0.55, 0.8), (0.0, 0.0, 0.15)])
def test_class_uniform_crops_find_rare_classes(tmp_path, pct, low, high):
    files = pipeline.train_files(rare_class_dataset(tmp_path))
    config = PipelineConfig(
        crop_size=(16, 16),
        scale_min=1.0,
        scale_max=1.0,
        color_jitter=0.0,
        blur_prob=0.0,
        class_uniform_pct=pct,
        labeled_batch_size=8,
    )
    labels = np.concatenate(
        [
            element["labeled"]["label"]
            for element in first_elements(
                pipeline.train_dataset(files, config, with_unlabeled=False, verbose=False), 25
            )
        ]
    )
    with_rare = np.mean([(crop > 0).any() for crop in labels])
    assert low <= with_rare <= high  # uniform over 3 classes: 2/3 of crops hold a rare one


def test_eval_stream_reads_whole_images(camvid_mini_dir):
    config = DataConfig("camvid", str(camvid_mini_dir))
    samples = pipeline.datasets.find_pairs(config, "val")[:2]
    elements = first_elements(
        pipeline.eval_dataset(samples, pipeline.datasets.label_spec(config)), 2
    )
    for sample, element in zip(samples, elements):
        assert element["image"].shape == (1, 360, 480, 3)
        np.testing.assert_array_equal(element["image"][0], np.asarray(Image.open(sample.image)))
        expected = np.asarray(Image.open(sample.label)).astype(np.int32)
        expected[expected == 11] = 255
        np.testing.assert_array_equal(element["label"][0], expected)
        assert element["path"][0].decode() == sample.image


def test_truncated_png_is_named(camvid_mini_dir, tmp_path):
    root = tmp_path / "camvid"
    shutil.copytree(camvid_mini_dir / "val", root / "val")
    shutil.copytree(camvid_mini_dir / "valannot", root / "valannot")
    victim = sorted((root / "val").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:5000])
    config = DataConfig("camvid", str(root))
    stream = pipeline.eval_dataset(
        pipeline.datasets.find_pairs(config, "val"), pipeline.datasets.label_spec(config)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"Truncated.*{victim}"):
        first_elements(stream, 3)


def test_undefined_label_value_is_named(camvid_mini_dir, tmp_path):
    root = tmp_path / "camvid"
    shutil.copytree(camvid_mini_dir, root)
    victim = sorted((root / "trainannot").iterdir())[0]
    label = np.asarray(Image.open(victim)).copy()
    label[0, :3] = [12, 40, 12]
    Image.fromarray(label).save(victim)
    files = pipeline.train_files(DataConfig("camvid", str(root)))
    samples = [Sample(files.labeled[0].image, str(victim))]
    stream = pipeline.eval_dataset(samples, files.spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{victim}.*does not define.*12 40"):
        first_elements(stream, 1)


@pytest.mark.slow
def test_resuming_at_a_step_continues_the_same_stream(mini_files):
    config = PipelineConfig(
        crop_size=(24, 32), labeled_batch_size=2, class_uniform_pct=0.5, cutmix_boxes=4, scl_boxes=2
    )
    whole = first_elements(pipeline.train_dataset(mini_files, config), 3)
    resumed = first_elements(pipeline.train_dataset(mini_files, config, start_step=2), 1)
    for a, b in zip(tf.nest.flatten(whole[2]), tf.nest.flatten(resumed[0])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_input_pipelines_make_the_same_global_batch(mini_files):
    """Two pipelines of one replica each (as two workers would) vs one pipeline for both."""
    config = PipelineConfig(
        crop_size=(24, 32),
        labeled_batch_size=2,
        unlabeled_batch_size=1,
        cutmix_boxes=4,
        scl_boxes=2,
        class_uniform_pct=0.5,
    )
    whole = first_elements(pipeline.train_dataset(mini_files, config, num_replicas=2), 2)
    parts = [
        first_elements(
            pipeline.train_dataset(
                mini_files, config, input_context=tf.distribute.InputContext(2, pipeline_id, 2)
            ),
            2,
        )
        for pipeline_id in range(2)
    ]
    for step in range(2):
        joined = tf.nest.map_structure(
            lambda a, b: np.concatenate([a, b]), parts[0][step], parts[1][step]
        )
        for a, b in zip(tf.nest.flatten(whole[step]), tf.nest.flatten(joined)):
            np.testing.assert_array_equal(a, b)


def test_epochs_visit_every_image_once(mini_files):
    numbers = [int(pipeline._permuted(position, 7, seed=3)) for position in range(21)]
    for epoch in range(3):
        assert sorted(numbers[7 * epoch : 7 * epoch + 7]) == list(range(7))
    assert numbers[:7] != numbers[7:14]
