"""The losses against plainly written NumPy references (loops and dense pair matrices)."""

import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from scl_tf.losses import (
    consistency_loss,
    relaxed_cross_entropy,
    structured,
    structured_consistency_loss,
)

BATCH, HEIGHT, WIDTH, CLASSES = 2, 24, 40, 19
IGNORE = 255


# ---------------------------------------------------------------------------------------------
# NumPy references


def log_sum_exp(values):
    top = values.max()
    return top + np.log(np.exp(values - top).sum())


def reference_relaxed_cross_entropy(labels, logits, window, ignore_label=IGNORE):
    logits = logits.astype(np.float64)
    radius = window // 2
    batch, height, width = labels.shape
    losses = []
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                if labels[b, y, x] == ignore_label:
                    continue
                neighbourhood = labels[
                    b, max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1
                ]
                classes = sorted(set(neighbourhood.ravel().tolist()) - {ignore_label})
                losses.append(log_sum_exp(logits[b, y, x]) - log_sum_exp(logits[b, y, x, classes]))
    return float(np.mean(losses)) if losses else 0.0


def reference_consistency(student, teacher, class_reduction="sum", confident=None):
    """Loops over pixels: the squared distance summed (or averaged) over classes, kept where
    confident, averaged over every pixel."""
    total = 0.0
    batch, height, width, classes = student.shape
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                if confident is not None and not confident[b, y, x]:
                    continue
                squared = np.sum((student[b, y, x].astype(np.float64) - teacher[b, y, x]) ** 2)
                total += squared / (classes if class_reduction == "mean" else 1)
    return total / (batch * height * width)


def reference_scl(student, teacher, box_masks, confident=None):
    """Per box the mean over ordered visible pairs of the dense pair matrices, the pairs with
    a pixel that is not confident set to 0; summed, / B."""
    total = 0.0
    for b in range(box_masks.shape[0]):
        for mask in box_masks[b]:
            visible = mask.ravel() > 0
            if not visible.any():
                continue
            s = student[b].reshape(-1, student.shape[-1])[visible].astype(np.float64)
            t = teacher[b].reshape(-1, teacher.shape[-1])[visible].astype(np.float64)
            s /= np.linalg.norm(s, axis=1, keepdims=True)
            t /= np.linalg.norm(t, axis=1, keepdims=True)
            squared = (s @ s.T - t @ t.T) ** 2
            if confident is not None:
                kept = confident[b].ravel()[visible] > 0
                squared *= np.outer(kept, kept)
            total += np.mean(squared)
    return total / student.shape[0]


# ---------------------------------------------------------------------------------------------
# Inputs


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def paste_boxes(boxes, height, width):
    """Visible masks [N, H, W] of boxes (y0, x0, y1, x1) pasted in order, later over earlier."""
    owner = np.full((height, width), -1)
    for index, (y0, x0, y1, x1) in enumerate(boxes):
        owner[y0:y1, x0:x1] = index
    return np.stack([owner == index for index in range(len(boxes))]).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # Image 0: overlapping boxes (later ones punch holes in earlier ones), boxes touching the
    # bottom and right edges, and one box entirely covered by a later one (empty).
    # Image 1: two boxes and three empty slots.
    boxes = [
        [(2, 3, 15, 30), (0, 20, 9, 40), (10, 10, 24, 40), (15, 12, 17, 14), (14, 0, 24, 25)],
        [(1, 1, 20, 17), (5, 9, 12, 33), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)],
    ]
    masks = np.stack([paste_boxes(image_boxes, HEIGHT, WIDTH) for image_boxes in boxes])
    shape = (BATCH, HEIGHT, WIDTH, CLASSES)
    student = softmax(2.0 * rng.normal(size=shape)).astype(np.float32)
    teacher = softmax(2.0 * rng.normal(size=shape)).astype(np.float32)
    return student, teacher, masks


def test_fixture_has_holes_and_empty_boxes(data):
    _, _, masks = data
    counts = masks.sum(axis=(2, 3))
    assert (counts == 0).sum() == 4
    assert counts[0, 0] < 13 * 27  # box 0 of image 0 lost pixels to later boxes
    assert masks.sum(axis=1).max() == 1  # disjoint


# ---------------------------------------------------------------------------------------------
# Relaxed cross entropy


@pytest.fixture(scope="module")
def segmentation():
    rng = np.random.default_rng(1)
    # Blocky labels so that windows see 1-3 classes, plus scattered ignore pixels.
    labels = np.repeat(np.repeat(rng.integers(0, CLASSES, (BATCH, 6, 10)), 4, 1), 4, 2)
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    logits = rng.normal(size=(BATCH, HEIGHT, WIDTH, CLASSES)).astype(np.float32)
    return labels.astype(np.int32), logits


@pytest.mark.parametrize("window", [1, 3, 5])
def test_relaxed_cross_entropy_matches_reference(segmentation, window):
    labels, logits = segmentation
    expected = reference_relaxed_cross_entropy(labels, logits, window)
    loss = relaxed_cross_entropy(labels, logits, window=window)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_relaxed_cross_entropy_window_1_is_sparse_cross_entropy(segmentation):
    labels, logits = segmentation
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
    np.testing.assert_allclose(
        float(relaxed_cross_entropy(labels, logits, window=1)),
        float(sparse(labels, logits)),
        rtol=1e-5,
    )


def test_relaxed_cross_entropy_is_stable_for_huge_logits(segmentation):
    labels, logits = segmentation
    logits = tf.Variable(1e4 * logits)
    with tf.GradientTape() as tape:
        loss = relaxed_cross_entropy(labels, logits, window=3)
    gradient = tape.gradient(loss, logits).numpy()
    expected = reference_relaxed_cross_entropy(labels, logits.numpy(), 3)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[labels == IGNORE] == 0.0)


def test_relaxed_cross_entropy_without_labels_is_zero(segmentation):
    labels, logits = segmentation
    logits = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = relaxed_cross_entropy(np.full_like(labels, IGNORE), logits)
    gradient = tape.gradient(loss, logits)
    assert float(loss) == 0.0
    assert np.all(gradient.numpy() == 0.0)


def test_relaxed_cross_entropy_ignores_ignore_pixels_as_neighbours():
    # The pixel labelled 0 sits next to ignore pixels only: its set is {0}, i.e. plain CE.
    labels = np.full((1, 3, 3), IGNORE, np.int32)
    labels[0, 1, 1] = 0
    logits = np.random.default_rng(2).normal(size=(1, 3, 3, 4)).astype(np.float32)
    expected = -np.log(softmax(logits[0, 1, 1].astype(np.float64))[0])
    np.testing.assert_allclose(float(relaxed_cross_entropy(labels, logits)), expected, rtol=1e-5)


@pytest.mark.parametrize("window", [0, 2, -1, 3.0, True])
def test_relaxed_cross_entropy_rejects_bad_window(segmentation, window):
    labels, logits = segmentation
    with pytest.raises(ValueError, match="window"):
        relaxed_cross_entropy(labels, logits, window=window)


def test_relaxed_cross_entropy_rejects_mismatched_shapes(segmentation):
    labels, logits = segmentation
    with pytest.raises(ValueError, match="labels"):
        relaxed_cross_entropy(labels[:, :-1], logits)


# ---------------------------------------------------------------------------------------------
# Consistency loss


def test_consistency_matches_reference_and_spares_teacher(data):
    student, teacher, _ = data
    student, teacher = tf.Variable(student), tf.Variable(teacher)
    with tf.GradientTape() as tape:
        loss = consistency_loss(student, teacher)
    student_grad, teacher_grad = tape.gradient(loss, [student, teacher])
    np.testing.assert_allclose(
        float(loss), reference_consistency(student.numpy(), teacher.numpy()), rtol=1e-5
    )
    pixels = BATCH * HEIGHT * WIDTH
    np.testing.assert_allclose(
        student_grad.numpy(), 2 * (student.numpy() - teacher.numpy()) / pixels, rtol=1e-5
    )
    assert teacher_grad is None


def test_consistency_rejects_mismatched_shapes(data):
    student, teacher, _ = data
    with pytest.raises(ValueError, match="teacher_probs"):
        consistency_loss(student, teacher[:1])
    with pytest.raises(ValueError, match="class_reduction"):
        consistency_loss(student, teacher, class_reduction="max")


@pytest.fixture(scope="module")
def confident(data):
    """A 0/1 confidence mask: the teacher's top probability >= 0.3 (about half the pixels)."""
    _, teacher, _ = data
    mask = (teacher.max(axis=-1) >= 0.3).astype(np.float32)
    assert 0.2 < mask.mean() < 0.8
    return mask


@pytest.mark.parametrize("class_reduction", ["sum", "mean"])
@pytest.mark.parametrize("gated", [False, True])
def test_consistency_readings_and_pixel_gate_match_reference(
    data, confident, class_reduction, gated
):
    student, teacher, _ = data
    mask = confident if gated else None
    loss = consistency_loss(student, teacher, class_reduction=class_reduction, confident=mask)
    expected = reference_consistency(student, teacher, class_reduction, mask)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_consistency_mean_reading_is_the_sum_over_classes(data):
    student, teacher, _ = data
    total = consistency_loss(student, teacher, class_reduction="sum")
    mean = consistency_loss(student, teacher, class_reduction="mean")
    np.testing.assert_allclose(float(total), CLASSES * float(mean), rtol=1e-6)


def test_consistency_gate_sends_no_gradient_to_pixels_it_leaves_out(data, confident):
    student, teacher, _ = data
    student = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = consistency_loss(student, teacher, confident=confident)
    gradient = tape.gradient(loss, student).numpy()
    assert np.all(gradient[confident == 0] == 0.0)
    pixels = BATCH * HEIGHT * WIDTH
    np.testing.assert_allclose(
        gradient[confident == 1],
        2 * (student.numpy() - teacher)[confident == 1] / pixels,
        rtol=1e-5,
    )


# ---------------------------------------------------------------------------------------------
# Structured consistency loss: exact


def test_exact_matches_dense_reference(data):
    student, teacher, masks = data
    loss = structured_consistency_loss(student, teacher, masks)
    np.testing.assert_allclose(float(loss), reference_scl(student, teacher, masks), rtol=1e-5)


def test_pixel_gate_keeps_pairs_of_confident_pixels_in_every_mode(data, confident):
    student, teacher, masks = data
    expected = reference_scl(student, teacher, masks, confident)
    assert 0 < expected < reference_scl(student, teacher, masks)
    largest_box = int(masks.sum(axis=(2, 3)).max())
    for mode, num_pairs in (("exact", None), ("pairs", largest_box**2), ("pixels", largest_box)):
        loss = structured_consistency_loss(
            student, teacher, masks, num_pairs=num_pairs, mode=mode, seed=0, confident=confident
        )
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5, err_msg=mode)
    ones = structured_consistency_loss(student, teacher, masks, confident=np.ones_like(confident))
    np.testing.assert_allclose(float(ones), reference_scl(student, teacher, masks), rtol=1e-5)


@pytest.mark.slow
def test_pixel_gate_gradient_matches_finite_differences_and_spares_the_rest(data, confident):
    student, teacher, masks = data
    _, gradient, _ = scl_gradients(student, teacher, masks, confident=confident)
    gradient = gradient.numpy().astype(np.float64)
    left_out = (confident == 0) | (masks.sum(axis=1) == 0)
    assert np.all(gradient[left_out] == 0.0)
    rng = np.random.default_rng(5)
    step = 1e-5
    for _ in range(3):
        direction = rng.normal(size=student.shape) * (~left_out)[..., None]
        slope = (
            reference_scl(student + step * direction, teacher, masks, confident)
            - reference_scl(student - step * direction, teacher, masks, confident)
        ) / (2 * step)
        np.testing.assert_allclose(np.sum(gradient * direction), slope, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("mode, num_pairs", [("pairs", 40), ("pixels", 12)])
def test_pixel_gated_sampled_modes_are_unbiased(data, confident, mode, num_pairs):
    student, teacher, masks = data
    seeds = keras.random.SeedGenerator(seed=6)

    @tf.function(jit_compile=True)
    def estimate():
        return structured_consistency_loss(
            student,
            teacher,
            masks,
            num_pairs=num_pairs,
            mode=mode,
            seed=seeds,
            confident=confident,
        )

    estimates = np.array([float(estimate()) for _ in range(200)])
    standard_error = estimates.std(ddof=1) / np.sqrt(len(estimates))
    expected = reference_scl(student, teacher, masks, confident)
    assert standard_error > 0
    assert abs(estimates.mean() - expected) < 3 * standard_error


@pytest.mark.slow
def test_exact_compiles_with_xla_and_in_a_graph(data):
    student, teacher, masks = data
    expected = reference_scl(student, teacher, masks)
    for jit_compile in (True, False):
        compiled = tf.function(structured_consistency_loss, jit_compile=jit_compile)
        np.testing.assert_allclose(float(compiled(student, teacher, masks)), expected, rtol=1e-5)


@pytest.mark.parametrize("height, width", [(13, 11), (9, 10)])
def test_exact_matches_dense_reference_at_awkward_sizes(height, width):
    # 13 has no divisor between 2 and 8: one-row cells.
    rng = np.random.default_rng(6)
    masks = paste_boxes([(0, 0, 7, 6), (3, 2, height, width), (5, 5, 6, 6)], height, width)
    shape = (1, height, width, CLASSES)
    student, teacher = softmax(rng.normal(size=shape)), softmax(rng.normal(size=shape))
    loss = structured_consistency_loss(student, teacher, masks[None])
    np.testing.assert_allclose(float(loss), reference_scl(student, teacher, masks[None]), rtol=1e-5)


@pytest.fixture(scope="module")
def overlapping_masks():
    """[B, 3, H, W] random masks: every box visits every cell, pixels belong to 0-3 boxes."""
    rng = np.random.default_rng(3)
    return (rng.random((BATCH, 3, HEIGHT, WIDTH)) < 0.4).astype(np.float32)


def test_exact_does_not_need_disjoint_masks(data, overlapping_masks):
    student, teacher, _ = data
    masks = overlapping_masks
    loss = structured_consistency_loss(student, teacher, masks)
    np.testing.assert_allclose(float(loss), reference_scl(student, teacher, masks), rtol=1e-5)


def test_exact_accepts_bool_masks_and_half_precision(data):
    student, teacher, masks = data
    expected = reference_scl(student, teacher, masks)
    loss = structured_consistency_loss(
        student.astype(np.float16), teacher.astype(np.float16), masks.astype(bool)
    )
    assert loss.dtype == "float32"
    reference_half = reference_scl(student.astype(np.float16), teacher.astype(np.float16), masks)
    np.testing.assert_allclose(float(loss), reference_half, rtol=1e-5)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-2)


def scl_gradients(student, teacher, masks, **kwargs):
    student, teacher = tf.Variable(student), tf.Variable(teacher)
    with tf.GradientTape() as tape:
        loss = structured_consistency_loss(student, teacher, masks, **kwargs)
    student_grad, teacher_grad = tape.gradient(loss, [student, teacher])
    return loss, student_grad, teacher_grad


@pytest.mark.slow
@pytest.mark.parametrize("overlapping", [False, True])
def test_exact_gradient_matches_finite_differences(data, overlapping_masks, overlapping):
    student, teacher, masks = data
    if overlapping:
        masks = overlapping_masks
    _, gradient, _ = scl_gradients(student, teacher, masks)
    gradient = gradient.numpy().astype(np.float64)
    rng = np.random.default_rng(4)
    step = 1e-5
    for _ in range(3):
        direction = rng.normal(size=student.shape) * (masks.sum(axis=1)[..., None] > 0)
        slope = (
            reference_scl(student + step * direction, teacher, masks)
            - reference_scl(student - step * direction, teacher, masks)
        ) / (2 * step)
        np.testing.assert_allclose(np.sum(gradient * direction), slope, rtol=1e-4)
    # Single coordinates too, inside boxes of both images.
    for b, y, x, c in [(0, 5, 5, 0), (0, 20, 38, 7), (1, 8, 15, 18)]:
        bump = np.zeros_like(student, dtype=np.float64)
        bump[b, y, x, c] = step
        slope = (
            reference_scl(student + bump, teacher, masks)
            - reference_scl(student - bump, teacher, masks)
        ) / (2 * step)
        np.testing.assert_allclose(gradient[b, y, x, c], slope, rtol=1e-4, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_cells", [1, 5])
def test_exact_is_the_same_in_any_chunking(data, overlapping_masks, monkeypatch, chunk_cells):
    # The default puts each box of the fixture in one padded chunk; 1 and 5 cells per chunk
    # spread a box over several chunks (5: a partial last one), and with overlapping masks a
    # cell's gradient adds up over the chunks of several boxes.
    student, teacher, masks = data
    expected = [scl_gradients(student, teacher, m) for m in (masks, overlapping_masks)]
    monkeypatch.setattr(structured, "_CHUNK_CELLS", chunk_cells)
    for m, (expected_loss, expected_gradient, _) in zip(
        (masks, overlapping_masks), expected, strict=True
    ):
        loss, gradient, _ = scl_gradients(student, teacher, m)
        np.testing.assert_allclose(float(loss), float(expected_loss), rtol=1e-6)
        np.testing.assert_allclose(
            gradient.numpy(), expected_gradient.numpy(), rtol=1e-5, atol=1e-9
        )


@pytest.mark.parametrize("mode", ["exact", "pairs", "pixels"])
def test_no_gradient_to_teacher_or_outside_boxes(data, mode):
    student, teacher, masks = data
    loss, student_grad, teacher_grad = scl_gradients(
        student, teacher, masks, mode=mode, num_pairs=50, seed=0
    )
    assert teacher_grad is None
    outside = masks.sum(axis=1) == 0
    assert np.all(student_grad.numpy()[outside] == 0.0)
    assert np.any(student_grad.numpy()[~outside] != 0.0)
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("mode", ["exact", "pairs", "pixels"])
def test_empty_boxes_give_zero_not_nan(data, mode):
    student, teacher, masks = data
    loss, gradient, _ = scl_gradients(
        student, teacher, np.zeros_like(masks), mode=mode, num_pairs=50, seed=0
    )
    assert float(loss) == 0.0
    assert np.all(gradient.numpy() == 0.0)


# ---------------------------------------------------------------------------------------------
# Structured consistency loss: sampled modes


def test_sampled_modes_equal_exact_when_boxes_are_small_enough(data):
    student, teacher, masks = data
    exact = reference_scl(student, teacher, masks)
    largest_box = int(masks.sum(axis=(2, 3)).max())
    pairs = structured_consistency_loss(
        student, teacher, masks, num_pairs=largest_box**2, mode="pairs", seed=0
    )
    pixels = structured_consistency_loss(
        student, teacher, masks, num_pairs=largest_box, mode="pixels", seed=0
    )
    np.testing.assert_allclose(float(pairs), exact, rtol=1e-5)
    np.testing.assert_allclose(float(pixels), exact, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode, num_pairs", [("pairs", 40), ("pixels", 12)])
def test_sampled_modes_are_unbiased(data, mode, num_pairs):
    student, teacher, masks = data
    counts = masks.sum(axis=(2, 3))
    sampled = counts**2 > num_pairs if mode == "pairs" else counts > num_pairs
    assert sampled.sum() >= 4  # most boxes are actually sampled
    seeds = keras.random.SeedGenerator(seed=5)

    @tf.function(jit_compile=True)
    def estimate():
        return structured_consistency_loss(
            student, teacher, masks, num_pairs=num_pairs, mode=mode, seed=seeds
        )

    estimates = np.array([float(estimate()) for _ in range(200)])
    exact = reference_scl(student, teacher, masks)
    standard_error = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert standard_error > 0  # the generator advanced: each call drew a new sample
    assert abs(estimates.mean() - exact) < 3 * standard_error


@pytest.mark.parametrize("mode", ["pairs", "pixels"])
def test_sampled_modes_are_deterministic_per_seed(data, mode):
    student, teacher, masks = data

    def loss(seed):
        return float(
            structured_consistency_loss(student, teacher, masks, num_pairs=20, mode=mode, seed=seed)
        )

    assert loss(7) == loss(7)
    assert loss(7) != loss(8)


def test_sampled_pixels_are_visible_pixels_of_their_box(data):
    # The sampled modes draw ranks; the k-th visible pixel in raster order must skip holes.
    from scl_tf.losses.structured import _visible_pixel_indices

    _, _, masks = data
    counts = masks.sum(axis=(2, 3)).astype(np.int32)
    ranks = np.stack(
        [np.stack([np.arange(50) % max(count, 1) for count in image]) for image in counts]
    ).astype(np.int32)
    pixels = np.asarray(_visible_pixel_indices(masks, ranks))
    for b in range(BATCH):
        for n in range(masks.shape[1]):
            if counts[b, n] == 0:
                continue
            visible = np.flatnonzero(masks[b, n].ravel())
            np.testing.assert_array_equal(pixels[b, n] - b * HEIGHT * WIDTH, visible[ranks[b, n]])


def xla_parameters(function, *args):
    """The parameters of the XLA program TensorFlow compiles for `function(*args)`."""
    hlo = tf.function(function, jit_compile=True).experimental_get_compiler_ir(*args)(stage="hlo")
    entry = next(line for line in hlo.splitlines() if line.startswith("ENTRY"))
    return re.findall(r"arg\d+\.\d+:", entry)


@pytest.mark.parametrize("mode", ["exact", "pairs", "pixels"])
def test_compiled_once_whatever_the_masks(data, mode):
    # TensorFlow silently turns an input that decides a slice's start into a compile-time
    # constant of the XLA program, which then recompiles for every new value.
    student, teacher, masks = data

    def step(student, teacher, masks):
        with tf.GradientTape() as tape:
            tape.watch(student)
            loss = structured_consistency_loss(student, teacher, masks, 50, mode, seed=0)
        return loss, tape.gradient(loss, student)

    assert len(xla_parameters(step, student, teacher, masks)) == 3


def test_relaxed_cross_entropy_compiled_once_whatever_the_labels(segmentation):
    labels, logits = segmentation

    def loss(labels, logits):
        return relaxed_cross_entropy(labels, logits, window=3)

    assert len(xla_parameters(loss, labels, logits)) == 2


# ---------------------------------------------------------------------------------------------
# Argument checks


def test_structured_rejects_bad_arguments(data):
    student, teacher, masks = data
    with pytest.raises(ValueError, match="mode"):
        structured_consistency_loss(student, teacher, masks, mode="dense")
    with pytest.raises(ValueError, match="num_pairs"):
        structured_consistency_loss(student, teacher, masks, mode="pairs")
    with pytest.raises(ValueError, match="num_pairs"):
        structured_consistency_loss(student, teacher, masks, num_pairs=1, mode="pixels")
    with pytest.raises(ValueError, match="teacher_probs"):
        structured_consistency_loss(student, teacher[..., :-1], masks)
    with pytest.raises(ValueError, match="box_masks"):
        structured_consistency_loss(student, teacher, masks[:, :, :-1])
    with pytest.raises(ValueError, match="box_masks"):
        structured_consistency_loss(student, teacher, masks[0])


# ---------------------------------------------------------------------------------------------
# JAX backend

JAX_SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import keras
    import numpy as np

    from scl_tf.losses import (
        consistency_loss,
        relaxed_cross_entropy,
        structured_consistency_loss,
    )

    assert keras.backend.backend() == "jax"
    inputs = np.load(sys.argv[1])
    student, teacher, masks = inputs["student"], inputs["teacher"], inputs["masks"]
    big = int(masks.sum(axis=(2, 3)).max()) ** 2

    def scl(student, teacher, mode="exact", num_pairs=big, seed=0):
        return structured_consistency_loss(student, teacher, masks, num_pairs, mode, seed)

    @jax.jit
    def evaluate(student, teacher, key):
        return {
            "relaxed_ce": relaxed_cross_entropy(inputs["labels"], inputs["logits"], window=3),
            "consistency": consistency_loss(student, teacher),
            "exact": scl(student, teacher),
            "pairs_all": scl(student, teacher, "pairs"),
            "pixels_all": scl(student, teacher, "pixels"),
            # Sampled with a PRNG key, as a train step would pass a new one every step.
            "pairs_key": scl(student, teacher, "pairs", 40, key),
            "gradient": jax.grad(scl)(student, teacher),
            "teacher_gradient": jax.grad(scl, argnums=1)(student, teacher),
        }

    results = evaluate(student, teacher, jax.random.PRNGKey(1))
    np.savez(sys.argv[2], **{key: np.asarray(value) for key, value in results.items()})
    """
)


@pytest.mark.slow
def test_losses_run_and_agree_under_jax(data, segmentation, tmp_path):
    student, teacher, masks = data
    labels, logits = segmentation
    np.savez(
        tmp_path / "inputs.npz",
        student=student,
        teacher=teacher,
        masks=masks,
        labels=labels,
        logits=logits,
    )
    subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, tmp_path / "inputs.npz", tmp_path / "out.npz"],
        env={**os.environ, "KERAS_BACKEND": "jax"},
        check=True,
        timeout=300,
    )
    jax_results = np.load(tmp_path / "out.npz")

    exact = reference_scl(student, teacher, masks)
    expected = {
        "relaxed_ce": reference_relaxed_cross_entropy(labels, logits, 3),
        "consistency": reference_consistency(student, teacher),
        "exact": exact,
        "pairs_all": exact,
        "pixels_all": exact,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(float(jax_results[name]), value, rtol=1e-5, err_msg=name)
    assert np.isfinite(jax_results["pairs_key"]) and jax_results["pairs_key"] != exact
    _, tf_gradient, _ = scl_gradients(student, teacher, masks)
    np.testing.assert_allclose(jax_results["gradient"], tf_gradient.numpy(), rtol=1e-4, atol=1e-9)
    assert np.all(jax_results["teacher_gradient"] == 0.0)
