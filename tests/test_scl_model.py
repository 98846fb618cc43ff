"""The train step: loss wiring, the supervised baseline, the EMA update."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_losses import reference_consistency, reference_scl
from train_helpers import random_batch, tiny_segmenter

from scl_tf.data.augment import apply_photometric
from scl_tf.losses import relaxed_cross_entropy
from scl_tf.training.optim import CoupledSGD
from scl_tf.training.scl_model import SCLModel, StepConfig, rampup_weight


def make_model(step_config, **segmenter):
    student, teacher = tiny_segmenter(**segmenter), tiny_segmenter(**segmenter)
    model = SCLModel(student, teacher, step_config)
    model.copy_student_to_teacher()
    model.compile(optimizer=CoupledSGD(l2=1e-3, learning_rate=0.05, momentum=0.9))
    model.optimizer.build(student.trainable_variables)
    return model


@pytest.mark.slow
def test_cutmix_targets_match_inputs_for_a_per_pixel_model():
    """With 1x1 convolutions, no BN and the teacher's weights, the student's prediction on the
    CutMix image is exactly the CutMix of the teacher's predictions: both losses vanish only if
    images and targets are mixed with the same mask, the same way round."""
    model = make_model(
        StepConfig(lambda_c=1.0, lambda_sc=1.0, scl_mode="exact", scl_boxes=4),
        kernel_size=1,
        batchnorm=False,
    )
    shares = model.compute_losses(random_batch())
    assert float(shares["loss_c"]) == pytest.approx(0.0, abs=1e-12)
    assert float(shares["loss_sc"]) == pytest.approx(0.0, abs=1e-10)
    # A 3x3 model sees across box edges: now the terms are positive.
    model = make_model(
        StepConfig(lambda_c=1.0, lambda_sc=1.0, scl_mode="exact", scl_boxes=4),
        kernel_size=3,
        batchnorm=False,
    )
    shares = model.compute_losses(random_batch())
    assert float(shares["loss_c"]) > 1e-6 and float(shares["loss_sc"]) > 1e-8


def test_total_is_the_weighted_sum_and_labeled_term_is_relaxed_ce():
    config = StepConfig(lambda_c=20.0, lambda_sc=3.0, scl_mode="exact", scl_boxes=4, relax_window=3)
    model = make_model(config, batchnorm=False)
    batch = random_batch(seed=3)
    shares = model.compute_losses(batch)
    expected_x = relaxed_cross_entropy(
        batch["labeled"]["label"], model.student(batch["labeled"]["image"]), 3
    )
    assert float(shares["loss_x"]) == pytest.approx(float(expected_x), rel=1e-5)
    total = shares["loss_x"] + 20.0 * shares["loss_c"] + 3.0 * shares["loss_sc"]
    assert float(shares["loss"]) == pytest.approx(float(total), rel=1e-6)
    labels = batch["labeled"]["label"].numpy()
    assert float(shares["scored"]) == np.sum(labels != 255)


def step_and_references(**gate):
    """One step's shares with a gate, and the student probabilities, teacher target and box
    masks of its unlabeled half, taken apart from the same (seeded) model."""
    config = StepConfig(lambda_c=2.0, lambda_sc=3.0, scl_mode="exact", scl_boxes=4, **gate)
    model = make_model(config, batchnorm=False)
    batch = random_batch(seed=5)
    shares = model.compute_losses(batch)
    mixed, target, masks = model.cutmix_batch(batch["unlabeled"])  # no photometric keys
    student = tf.nn.softmax(model.student(mixed, training=True)).numpy()
    return shares, student, target.numpy(), masks.numpy()


@pytest.fixture(scope="module")
def median_confidence():
    """A threshold that half of the test batch's target pixels reach."""
    _, _, target, _ = step_and_references()
    return float(np.median(target.max(axis=-1)))


@pytest.mark.parametrize("class_reduction", ["sum", "mean"])
@pytest.mark.parametrize("form", ["batch", "pixel"])
def test_confidence_gate_and_class_reduction_match_numpy(median_confidence, form, class_reduction):
    shares, student, target, masks = step_and_references(
        consistency_class_reduction=class_reduction,
        confidence_threshold=median_confidence,
        confidence_form=form,
    )
    confident = (target.max(axis=-1) >= median_confidence).astype(np.float32)
    share = confident.mean()
    assert 0.3 < share < 0.7
    assert float(shares["confident_share"]) == pytest.approx(share, rel=1e-6)
    mask = confident if form == "pixel" else None
    expected_c = reference_consistency(student, target, class_reduction, mask)
    expected_sc = reference_scl(student, target, masks, mask)
    assert float(shares["loss_c"]) == pytest.approx(expected_c, rel=1e-4)
    # The exact SCL is a difference of Gram norms in float32: 1e-4 relative from float64.
    assert float(shares["loss_sc"]) == pytest.approx(expected_sc, rel=1e-3)
    scale = share if form == "batch" else 1.0
    total = float(shares["loss_x"]) + scale * (2.0 * expected_c + 3.0 * expected_sc)
    assert float(shares["loss"]) == pytest.approx(total, rel=1e-3)


def test_without_a_threshold_no_share_is_logged_and_nothing_is_gated():
    shares, student, target, masks = step_and_references()
    assert "confident_share" not in shares
    assert float(shares["loss_c"]) == pytest.approx(
        reference_consistency(student, target), rel=1e-4
    )


@pytest.mark.slow
def test_the_step_applies_the_photometric_parameters_of_the_element():
    model = make_model(StepConfig(lambda_c=1.0, lambda_sc=1.0, scl_mode="exact", scl_boxes=4))
    batch = random_batch(seed=4)
    params = {
        key: tf.constant([[1.2, 0.8, 1.1, 0.1, 0.9], [0.9, 1.1, 0.8, -0.1, 0.0]])
        for key in ("photometric", "photometric_a", "photometric_b")
    }
    with_params = {
        "labeled": {**batch["labeled"], "photometric": params["photometric"]},
        "unlabeled": {
            **batch["unlabeled"],
            "photometric_a": params["photometric_a"],
            "photometric_b": params["photometric_b"],
        },
    }
    applied = {
        "labeled": {
            **batch["labeled"],
            "image": apply_photometric(batch["labeled"]["image"], params["photometric"]),
        },
        "unlabeled": {
            **batch["unlabeled"],
            "u_a": apply_photometric(batch["unlabeled"]["u_a"], params["photometric_a"]),
            "u_b": apply_photometric(batch["unlabeled"]["u_b"], params["photometric_b"]),
        },
    }
    shares = model.compute_losses(with_params)
    for name, value in model.compute_losses(applied).items():
        assert float(shares[name]) == pytest.approx(float(value), rel=1e-5), name
    assert float(shares["loss"]) != pytest.approx(
        float(model.compute_losses(batch)["loss"]), rel=1e-3
    )


def test_supervised_baseline_needs_no_unlabeled_data_nor_teacher():
    model = make_model(StepConfig(lambda_c=0.0, lambda_sc=0.0))
    for weight in model.teacher.weights:  # a teacher used by mistake would give NaN
        weight.assign(tf.fill(weight.shape, np.nan))
    batch = {"labeled": random_batch()["labeled"]}
    shares = model.train_step(batch)
    assert np.isfinite(float(shares["loss"]))
    assert float(shares["loss_c"]) == 0.0 and float(shares["loss_sc"]) == 0.0


@pytest.mark.slow
def test_ema_update_of_every_weight_and_statistic():
    decay = 0.9
    model = make_model(
        StepConfig(
            lambda_c=1.0,
            lambda_sc=1.0,
            scl_mode="pairs",
            num_pairs=50,
            ema_decay=decay,
            scl_boxes=4,
        )
    )
    before = [w.numpy().copy() for w in model.teacher.weights]
    model.train_step(random_batch())
    after_student = [w.numpy() for w in model.student.weights]
    assert any(not np.allclose(s, t) for s, t in zip(after_student, before))
    for teacher, old, student in zip(model.teacher.weights, before, after_student):
        np.testing.assert_allclose(
            teacher.numpy(), decay * old + (1 - decay) * student, rtol=1e-5, atol=1e-7
        )
    statistics = [w for w in model.student.weights if "moving" in w.path]
    assert statistics  # BN moving statistics are among the EMA'd weights


def test_teacher_student_mode_uses_student_weights():
    model = make_model(
        StepConfig(lambda_c=1.0, lambda_sc=0.0, teacher="student"), kernel_size=1, batchnorm=False
    )
    for weight in model.teacher.weights:
        weight.assign(tf.fill(weight.shape, np.nan))
    assert float(model.compute_losses(random_batch())["loss_c"]) == pytest.approx(0, abs=1e-12)


@pytest.mark.slow
def test_teacher_gets_no_gradient():
    model = make_model(StepConfig(lambda_c=1.0, lambda_sc=1.0, scl_mode="exact", scl_boxes=4))
    with tf.GradientTape() as tape:
        loss = model.compute_losses(random_batch())["loss"]
    gradients = tape.gradient(loss, model.teacher.trainable_weights + model.teacher.weights)
    assert all(g is None for g in gradients)


def test_rampup_weight_rises_from_exp_minus_5_to_one():
    assert float(rampup_weight(0, 0)) == float(rampup_weight(10**6, 0)) == 1.0
    steps = [0, 25, 50, 100, 400]
    expected = [np.exp(-5.0 * (1.0 - min(step / 100, 1.0)) ** 2) for step in steps]
    np.testing.assert_allclose(
        [float(rampup_weight(step, 100)) for step in steps], expected, rtol=1e-6
    )


def test_rampup_scales_only_the_unlabeled_terms():
    config = StepConfig(
        lambda_c=20.0, lambda_sc=3.0, scl_mode="exact", scl_boxes=4, rampup_steps=100
    )
    model = make_model(config, batchnorm=False)
    batch = random_batch(seed=4)
    for step, weight in ((0, np.exp(-5.0)), (50, np.exp(-1.25)), (100, 1.0)):
        model.optimizer.iterations.assign(step)
        shares = model.compute_losses(batch)
        unlabeled = 20.0 * shares["loss_c"] + 3.0 * shares["loss_sc"]
        assert float(unlabeled) > 0
        assert float(shares["loss"]) == pytest.approx(
            float(shares["loss_x"] + weight * unlabeled), rel=1e-5
        )


def test_config_round_trip(tmp_path):
    model = make_model(StepConfig(lambda_c=2.0, lambda_sc=1.0, scl_boxes=4))
    clone = SCLModel.from_config(model.get_config())
    assert clone.step_config == model.step_config
    assert len(clone.student.weights) == len(model.student.weights)
    images = random_batch()["labeled"]["image"]
    assert keras.ops.convert_to_numpy(clone(images)).shape == (2, 16, 20, 5)
