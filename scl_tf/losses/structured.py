"""Structured consistency loss (SCL), eq. (7)-(10) of the paper.

For every visible CutMix box ``n`` of every image the loss compares the cosine similarities
``a_ij = cos(p_i, p_j)`` of the student with those of the teacher over ordered pairs of the
box's visible pixels ``T_n`` (``i = j`` included, as in eq. 8)::

    L_n = 1 / |T_n|^2 * sum_{i, j in T_n} (a^s_ij - a^t_ij)^2

and returns ``sum_n L_n`` (eq. 10) averaged over the batch. An empty box contributes 0.
Given a ``confident`` mask m (a confidence gate on the teacher), only pairs of two confident
pixels count: ``L_n = 1 / |T_n|^2 * sum_{i, j in T_n} m_i m_j (a^s_ij - a^t_ij)^2``, still
over all ``|T_n|^2`` pairs, as the masked pixel-wise loss keeps its mean over all pixels.

Three modes, all XLA-compilable with static shapes:

* ``"exact"`` uses every pair without forming the ``|T_n| x |T_n|`` pair matrix. With ``S``,
  ``T`` the row-normalised student/teacher predictions of the box's pixels,
  ``sum_ij (s_i.s_j - t_i.t_j)^2 = |S^T S|^2 + |T^T T|^2 - 2 |S^T T|^2`` (Frobenius norms of
  C x C Gram matrices). The image is cut into a grid of small cells (up to 8 x 16 pixels,
  sides dividing H and W); each box's cells with visible pixels are read in chunks of 32, and
  a loop over the chunks adds up each box's Grams, one tall matrix product per chunk. A custom
  gradient goes over the same chunks to add each box's share to the gradient cell by cell, so
  that neither pass materialises anything the size of the image apart from the gradient
  itself. Cost: ``O(C^2)`` per pixel of the visited cells, i.e. the visible pixels plus the
  cells cut by box edges (a pixel visible in k masks is visited k times: the masks need not be
  disjoint), plus up to a chunk of padding per box. An image side without a divisor near 8 or
  16 (a prime, say) gives thin cells and a slow loop.
* ``"pairs"``: the paper's ``Drop(., Npair)`` (eq. 9). A box with at most ``num_pairs`` ordered
  pairs (``|T_n|^2 <= num_pairs``) uses all of them, i.e. equals ``"exact"``; a larger box
  averages ``(a^s_ij - a^t_ij)^2`` over ``num_pairs`` pairs ``(i, j)`` whose two pixels are
  drawn independently and uniformly from ``T_n`` (with replacement, so a pair may repeat and
  ``i = j`` occurs with probability ``1 / |T_n|``). The estimate is unbiased for ``L_n``.
* ``"pixels"``: the other reading of ``Npair``. A box with at most ``num_pairs`` visible pixels
  uses all of them (equals ``"exact"``); a larger box draws ``m = num_pairs`` pixels
  independently and uniformly from ``T_n`` and averages over the ``m (m - 1)`` ordered pairs of
  distinct draws ``k != l`` (a U-statistic: each such pair is a uniform pair of ``T_n``, so the
  estimate is unbiased for ``L_n``; the ``k = l`` pairs are left out because they are not).
  Its cost is that of ``"exact"`` on ``m`` pixels, independent of the box size.

The teacher never receives a gradient, and pixels outside every box never receive one either.

Compile the loss with XLA (``tf.function(jit_compile=True)``, or ``jax.jit``): ``"exact"`` also
runs in a plain TensorFlow graph or eagerly, with the same result, but there its backward pass
copies the gradient buffer once per chunk (forward + backward 0.034 s with XLA, 0.22 s without
at 512 x 1024).
Everything is computed in float32; the exact loss is a difference of Frobenius norms, which
agrees with the dense pair-matrix mean to about 1e-7 relative at 512 x 1024 (see
benchmarks/bench_losses.py).
"""

import math
from typing import NamedTuple

import keras
from keras import ops

MODES = ("exact", "pairs", "pixels")

# Keeps all-zero rows (e.g. padded pixels) at zero instead of NaN when normalising.
_NORM_EPSILON = 1e-12
# Exact mode visits the image in cells of up to this many rows x columns (divisors of H and
# W), _CHUNK_CELLS cells of one box per loop step.
_MAX_CELL_SHAPE = (8, 16)
_CHUNK_CELLS = 32
# Sampled modes find the k-th visible pixel of a box by a binary search over the visible
# counts of fixed chunks of the raster, then a scan inside one chunk of at most this size.
_MAX_SEARCH_CHUNK = 32
_INT32_MAX = 2**31 - 1


def structured_consistency_loss(
    student_probs, teacher_probs, box_masks, num_pairs=None, mode="exact", seed=None, confident=None
):
    """Structured consistency loss between student and teacher inside CutMix boxes.

    Args:
        student_probs: float [B, H, W, C], softmax output of the student. Any float dtype;
            computed in float32.
        teacher_probs: float [B, H, W, C], softmax output of the teacher. No gradient.
        box_masks: [B, Nbox, H, W], 0/1 values of any numeric or bool dtype: 1 where the pixel
            belongs to box n and no later box covers it. The masks of one image are normally
            disjoint; ``"exact"`` does not rely on it.
        num_pairs: ``Npair``, an int: pairs per box for ``"pairs"`` (>= 1), pixels per box for
            ``"pixels"`` (>= 2). Ignored by ``"exact"``.
        mode: ``"exact"``, ``"pairs"`` or ``"pixels"``, see the module docstring.
        seed: randomness of the sampled modes (ignored by ``"exact"``): an int (the same
            sample on every call), a ``keras.random.SeedGenerator`` (a new sample on every
            call, also inside a compiled train step, the generator's state advancing), under
            the JAX backend also a JAX PRNG key, or None (Keras' global generator; not usable
            inside ``jax.jit``). The sample is a deterministic function of the seed.
        confident: None, or [B, H, W] of 0/1 values: only pairs of two pixels with 1 count
            (the per-box mean still divides by all ``|T_n|^2`` pairs); sampled modes draw
            from all visible pixels as without it.

    Returns:
        float32 scalar: sum over boxes of the per-box mean, averaged over the batch.

    Raises:
        ValueError: unknown ``mode``, missing or too small ``num_pairs``, shapes that do not
            match.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    _check_shapes(student_probs, teacher_probs, box_masks, confident)
    student = ops.cast(student_probs, "float32")
    teacher = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    if confident is not None:
        confident = ops.stop_gradient(ops.cast(confident, "float32"))
    if mode == "exact":
        box_losses = _exact_box_losses(student, teacher, box_masks, confident)
    elif mode == "pairs":
        _check_num_pairs(num_pairs, mode, minimum=1)
        box_losses = _pair_sampled_box_losses(
            student, teacher, box_masks, num_pairs, seed, confident
        )
    else:
        _check_num_pairs(num_pairs, mode, minimum=2)
        box_losses = _pixel_sampled_box_losses(
            student, teacher, box_masks, num_pairs, seed, confident
        )
    return ops.sum(box_losses) / student.shape[0]


def _check_shapes(student_probs, teacher_probs, box_masks, confident):
    student_shape = tuple(student_probs.shape)
    if len(student_shape) != 4 or None in student_shape:
        raise ValueError(
            f"`student_probs` must have a static shape [B, H, W, C], got {student_shape}."
        )
    if tuple(teacher_probs.shape) != student_shape:
        raise ValueError(
            f"`teacher_probs` shape {tuple(teacher_probs.shape)} does not match "
            f"`student_probs` shape {student_shape}."
        )
    batch, height, width, _ = student_shape
    mask_shape = tuple(box_masks.shape)
    if (
        len(mask_shape) != 4
        or mask_shape[1] is None
        or (mask_shape[0], mask_shape[2], mask_shape[3]) != (batch, height, width)
    ):
        raise ValueError(
            f"`box_masks` must have shape [B, Nbox, H, W] = [{batch}, Nbox, {height}, {width}]"
            f" with a static Nbox, got {mask_shape}."
        )
    if confident is not None and tuple(confident.shape) != (batch, height, width):
        raise ValueError(
            f"`confident` must have shape [B, H, W] = [{batch}, {height}, {width}], got "
            f"{tuple(confident.shape)}."
        )


def _check_num_pairs(num_pairs, mode, minimum):
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < minimum:
        raise ValueError(
            f'`num_pairs` must be an int >= {minimum} for mode="{mode}", got {num_pairs!r}.'
        )


def _inverse_norms(probs):
    """[..., 1]: 1 / |probs| along the last axis, finite for all-zero rows."""
    return ops.rsqrt(ops.sum(ops.square(probs), axis=-1, keepdims=True) + _NORM_EPSILON)


def _normalise_rows(probs):
    return probs * _inverse_norms(probs)


def _pair_sums(student_gram, teacher_gram, cross_gram):
    """sum_ij (s_i.s_j - t_i.t_j)^2 from the Grams S^T S, T^T T, S^T T of shape [..., C, C]."""

    def frobenius_sq(matrix):
        return ops.sum(ops.square(matrix), axis=(-2, -1))

    return frobenius_sq(student_gram) + frobenius_sq(teacher_gram) - 2.0 * frobenius_sq(cross_gram)


def _visible_row_counts(box_masks):
    """float32 [B, Nbox, H]: visible pixels of each box in each image row (exact integers)."""
    # A float sum of the 0/1 masks: several times faster under XLA on CPU than an int one.
    return ops.sum(ops.cast(box_masks, "float32"), axis=3)


def _visible_counts(box_masks):
    """int32 [B, Nbox]: visible pixels of each box."""
    return ops.cast(ops.sum(_visible_row_counts(box_masks), axis=-1), "int32")


# --------------------------------------------------------------------------------------------
# Exact mode


def _exact_box_losses(student, teacher, box_masks, confident=None):
    """float32 [B, Nbox]: L_n over all ordered pairs, with a memory-lean custom gradient.

    With ``confident`` the rows read are those of the boxes' confident pixels (0/1 masks, so
    the Grams and the gradient of the masked rows are those of the pairs of two confident
    pixels), while the schedule and ``|T_n|`` come from the unmasked boxes.
    """
    batch, num_boxes = box_masks.shape[:2]
    classes = student.shape[-1]

    @ops.custom_gradient
    def box_losses(student, teacher, box_masks):
        schedule = _chunk_schedule(box_masks)
        if confident is not None:
            box_masks = ops.cast(box_masks, "float32") * confident[:, None]
        grams = _box_grams(student, teacher, box_masks, schedule)
        student_gram = grams[:, :classes, :classes]
        cross_gram = grams[:, :classes, classes:]
        teacher_gram = grams[:, classes:, classes:]
        counts = ops.cast(schedule.pixel_counts, "float32")
        inverse_pairs = ops.where(counts > 0, 1.0 / ops.maximum(counts, 1.0) ** 2, 0.0)
        losses = _pair_sums(student_gram, teacher_gram, cross_gram) * inverse_pairs

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # With S, T the box's normalised rows, A = S^T S and D = S^T T:
            # dL_n/dS = 4 / |T_n|^2 (S A - T D^T), i.e. [S, T] @ [A; -D^T] row by row.
            scale = 4.0 * ops.reshape(upstream, (-1,)) * inverse_pairs
            pullback = ops.concatenate(
                [student_gram, -ops.transpose(cross_gram, (0, 2, 1))], axis=1
            ) * ops.reshape(scale, (-1, 1, 1))
            gradient = _pull_back(student, teacher, box_masks, schedule, pullback)
            return gradient, None, None

        return ops.reshape(losses, (batch, num_boxes)), grad

    return box_losses(student, teacher, box_masks)


class _ChunkSchedule(NamedTuple):
    """Which cells the loops of exact mode read, in chunks of one box's cells.

    The image is cut into cells of ``_cell_shape`` pixels. A box *visits* the cells where it
    has visible pixels; its visits, in raster order, are split into chunks of
    ``_CHUNK_CELLS``, the last one padded by repeating its last visit. Boxes are numbered
    flat (b * Nbox + n), and their chunks follow each other in that order.

    pixel_counts: int32 [B * Nbox], visible pixels per box.
    visit_counts: int32 [B * Nbox], cells visited per box.
    visit_starts: int32 [B * Nbox], visits of the boxes before each box.
    chunk_starts: int32 [B * Nbox], chunks of the boxes before each box.
    chunk_ends: int32 [B * Nbox], chunk_starts plus the box's own chunks.
    visited_cells: int32 [B * Nbox * cells per image], the visits' cells (index in the image),
        box after box: entry ``visit_starts[k] + i`` is box k's i-th visit. Entries past the
        last visit are meaningless.
    num_chunks: int32 scalar, chunks of all boxes.
    """

    pixel_counts: object
    visit_counts: object
    visit_starts: object
    chunk_starts: object
    chunk_ends: object
    visited_cells: object
    num_chunks: object


def _cell_shape(height, width):
    """(h, w): the largest divisors of H and W up to _MAX_CELL_SHAPE."""

    def largest_divisor(size, limit):
        return max(d for d in range(1, min(size, limit) + 1) if size % d == 0)

    return largest_divisor(height, _MAX_CELL_SHAPE[0]), largest_divisor(width, _MAX_CELL_SHAPE[1])


def _chunk_schedule(box_masks):
    """The _ChunkSchedule of ``box_masks`` [B, Nbox, H, W], computed once for both loops."""
    batch, num_boxes, height, width = box_masks.shape
    cell_h, cell_w = _cell_shape(height, width)
    grid_h, grid_w = height // cell_h, width // cell_w
    # Visible pixels per cell row segment, as a product with ones: XLA on CPU fuses a plain sum
    # here into the next one and runs both several times slower.
    segments = ops.reshape(ops.cast(box_masks, "float32"), (-1, cell_w))
    segment_counts = ops.matmul(segments, ops.ones((cell_w, 1), "float32"))
    segment_counts = ops.reshape(segment_counts, (batch * num_boxes, grid_h, cell_h, grid_w))
    cell_counts = ops.reshape(ops.sum(segment_counts, axis=2), (batch * num_boxes, -1))
    visited = ops.cast(cell_counts > 0, "int32")
    visit_counts = ops.sum(visited, axis=1)
    chunk_counts = (visit_counts + _CHUNK_CELLS - 1) // _CHUNK_CELLS
    chunk_ends = ops.cumsum(chunk_counts)
    flat_visited = ops.reshape(visited, (-1,))
    entry = _search_right(
        ops.cumsum(flat_visited), ops.arange(flat_visited.shape[0], dtype="int32")
    )
    return _ChunkSchedule(
        pixel_counts=ops.cast(ops.sum(cell_counts, axis=1), "int32"),
        visit_counts=visit_counts,
        visit_starts=ops.cumsum(visit_counts) - visit_counts,
        chunk_starts=chunk_ends - chunk_counts,
        chunk_ends=chunk_ends,
        visited_cells=entry % (grid_h * grid_w),
        num_chunks=chunk_ends[-1],
    )


def _read_chunk(chunk, student, teacher, box_masks, schedule, mask_repeats):
    """The normalised prediction rows of chunk number ``chunk``.

    Args:
        mask_repeats: whether the padding visits (repeats of the chunk's last visit) read as
            invisible, so that they add nothing to a sum over the rows.

    Returns:
        box: int32 scalar, flat box index b * Nbox + n.
        image_rows: int32 [K * h], per visit its cell's rows in the image viewed as
            [B * H * (W / w), w * C] (cell by cell, then row by row).
        rows: [K * h * w, 2C], per pixel [s_i, t_i] normalised, zero where not visible in the
            box.
        student_inverse_norm: [K * h * w, 1], 1 / |p^s_i|.
    """
    _, num_boxes, height, width = box_masks.shape
    cell_h, cell_w = _cell_shape(height, width)
    grid_w = width // cell_w
    classes = student.shape[-1]
    pixels = _CHUNK_CELLS * cell_h * cell_w
    # Gathers, not slices: TensorFlow's XLA bridge makes every input that decides where a
    # slice starts a compile-time constant (recompiling for every new masks).
    box = _search_right(schedule.chunk_ends, ops.reshape(chunk, (1,)))[0]
    visit_count = ops.take(schedule.visit_counts, box)
    visit = (chunk - ops.take(schedule.chunk_starts, box)) * _CHUNK_CELLS + ops.arange(
        _CHUNK_CELLS, dtype="int32"
    )
    repeat = visit >= visit_count
    visit = ops.minimum(visit, visit_count - 1)
    cell = ops.take(schedule.visited_cells, ops.take(schedule.visit_starts, box) + visit)
    cell_rows = (cell // grid_w * cell_h)[:, None] + ops.arange(cell_h, dtype="int32")
    cell_column = (cell % grid_w)[:, None]
    image_rows = ops.reshape((box // num_boxes * height + cell_rows) * grid_w + cell_column, (-1,))
    mask_rows = ops.reshape((box * height + cell_rows) * grid_w + cell_column, (-1,))

    def chunk_of(values, channels, rows):
        values = ops.take(ops.reshape(values, (-1, cell_w * channels)), rows, axis=0)
        return ops.reshape(values, (pixels, channels))

    visible = ops.cast(chunk_of(box_masks, 1, mask_rows), "float32")
    if mask_repeats:
        visible = visible * ops.repeat(1.0 - ops.cast(repeat, "float32"), cell_h * cell_w)[:, None]
    student_rows = chunk_of(student, classes, image_rows)
    teacher_rows = chunk_of(teacher, classes, image_rows)
    student_inverse_norm = _inverse_norms(student_rows)
    # Folding the mask into the per-row scale is measurably faster than masking the rows.
    rows = ops.concatenate(
        [
            student_rows * (student_inverse_norm * visible),
            teacher_rows * (_inverse_norms(teacher_rows) * visible),
        ],
        axis=1,
    )
    return box, image_rows, rows, student_inverse_norm


def _box_grams(student, teacher, box_masks, schedule):
    """float32 [B * Nbox, 2C, 2C]: Gram matrix of [S, T] over each box's visible pixels."""
    classes = student.shape[-1]
    num_flat_boxes = box_masks.shape[0] * box_masks.shape[1]

    def accumulate(chunk, grams):
        box, _, rows, _ = _read_chunk(
            chunk, student, teacher, box_masks, schedule, mask_repeats=True
        )
        gram = ops.matmul(ops.transpose(rows), rows)
        return ops.slice_update(grams, (box, 0, 0), (ops.take(grams, box, 0) + gram)[None])

    initial = ops.zeros((num_flat_boxes, 2 * classes, 2 * classes), "float32")
    return ops.fori_loop(0, schedule.num_chunks, accumulate, initial)


def _pull_back(student, teacher, box_masks, schedule, pullback):
    """Gradient [B, H, W, C] w.r.t. the unnormalised student from dL/dS = [S, T] @ pullback.

    ``pullback``: [B * Nbox, 2C, C], per box the matrix taking a normalised row [s_i, t_i] to
    dL/ds_i.
    """
    _, height, width, classes = student.shape
    _, cell_w = _cell_shape(height, width)

    def accumulate(chunk, gradient):
        # The padding visits repeat the chunk's last visit, unmasked: they compute the same
        # update of the same cell, so the scatter's duplicate writes agree.
        box, image_rows, rows, inverse_norm = _read_chunk(
            chunk, student, teacher, box_masks, schedule, mask_repeats=False
        )
        row_grad = ops.matmul(rows, ops.take(pullback, box, 0))
        # Through s = p / |p|: dL/dp = (dL/ds - s (s . dL/ds)) / |p|.
        student_rows = rows[:, :classes]
        radial = ops.sum(student_rows * row_grad, axis=-1, keepdims=True)
        box_gradient = (row_grad - student_rows * radial) * inverse_norm
        # A box visits a cell once, so a chunk's cells are distinct apart from the repeats;
        # cells visited by several boxes add up over the chunks.
        updated = ops.take(gradient, image_rows, axis=0) + ops.reshape(
            box_gradient, (-1, cell_w * classes)
        )
        return ops.scatter_update(gradient, image_rows[:, None], updated)

    initial = ops.zeros((student.shape[0] * height * width // cell_w, cell_w * classes))
    gradient = ops.fori_loop(0, schedule.num_chunks, accumulate, initial)
    return ops.reshape(gradient, student.shape)


# --------------------------------------------------------------------------------------------
# Sampled modes


def _pair_sampled_box_losses(student, teacher, box_masks, num_pairs, seed, confident=None):
    """float32 [B, Nbox]: L_n over all pairs, or over num_pairs uniform random pairs."""
    batch, num_boxes = box_masks.shape[:2]
    counts = _visible_counts(box_masks)[..., None]
    safe_counts = ops.maximum(counts, 1)
    slot = ops.arange(num_pairs, dtype="int32")
    # |T_n|^2 <= num_pairs, compared without squaring large counts (int32 overflow).
    use_all = counts <= math.isqrt(num_pairs)
    draws = _uniform_ranks((batch, num_boxes, num_pairs, 2), counts[..., None], seed)
    first = ops.where(use_all, slot // safe_counts, draws[..., 0])
    second = ops.where(use_all, slot % safe_counts, draws[..., 1])
    all_pairs = ops.minimum(counts, math.isqrt(num_pairs) + 1) ** 2
    valid = ops.cast(ops.where(use_all, slot < all_pairs, counts > 0), "float32")

    pixels = _visible_pixel_indices(box_masks, ops.concatenate([first, second], axis=-1))

    def similarities(probs):
        rows = _normalise_rows(_gather_pixels(probs, pixels))
        return ops.sum(rows[:, :, :num_pairs] * rows[:, :, num_pairs:], axis=-1)

    squared = ops.square(similarities(student) - similarities(teacher)) * valid
    if confident is not None:
        pair_confident = ops.reshape(
            ops.take(ops.reshape(confident, (-1,)), ops.reshape(pixels, (-1,))), pixels.shape
        )
        squared = squared * pair_confident[..., :num_pairs] * pair_confident[..., num_pairs:]
    return ops.sum(squared, axis=-1) / ops.maximum(ops.sum(valid, axis=-1), 1.0)


def _pixel_sampled_box_losses(student, teacher, box_masks, num_pixels, seed, confident=None):
    """float32 [B, Nbox]: L_n over all pixels, or the U-statistic over num_pixels draws."""
    batch, num_boxes = box_masks.shape[:2]
    counts = _visible_counts(box_masks)
    slot = ops.arange(num_pixels, dtype="int32")
    use_all = (counts <= num_pixels)[..., None]
    draws = _uniform_ranks((batch, num_boxes, num_pixels), counts[..., None], seed)
    ranks = ops.where(use_all, slot, draws)
    valid = ops.where(use_all, slot < counts[..., None], (counts > 0)[..., None])
    valid = ops.cast(valid, "float32")[..., None]

    pixels = _visible_pixel_indices(box_masks, ranks)
    if confident is not None:  # a drawn pixel that is not confident adds no pair
        valid = valid * _gather_pixels(confident[..., None], pixels)
    student_rows = _normalise_rows(_gather_pixels(student, pixels)) * valid
    teacher_rows = _normalise_rows(_gather_pixels(teacher, pixels)) * valid

    def gram(left, right):
        return ops.einsum("bnkc,bnkd->bncd", left, right)

    pair_sums = _pair_sums(
        gram(student_rows, student_rows),
        gram(teacher_rows, teacher_rows),
        gram(student_rows, teacher_rows),
    )
    # (a^s_kk - a^t_kk)^2: the k = l terms that the U-statistic leaves out.
    diagonal = ops.sum(
        ops.square(
            ops.sum(ops.square(student_rows), axis=-1) - ops.sum(ops.square(teacher_rows), axis=-1)
        ),
        axis=-1,
    )
    counts = ops.cast(counts, "float32")
    all_pixels = pair_sums / ops.maximum(counts, 1.0) ** 2
    distinct_draws = (pair_sums - diagonal) / float(num_pixels * (num_pixels - 1))
    return ops.where(use_all[..., 0], all_pixels, distinct_draws)


def _uniform_ranks(shape, counts, seed):
    """int32 ``shape``: independent draws, uniform in [0, counts) (counts broadcast to shape).

    A uniform int32 modulo the count: its bias, below count / 2^31, is negligible.
    Meaningless (0) where the count is 0.
    """
    draws = keras.random.randint(shape, 0, _INT32_MAX, dtype="int32", seed=seed)
    return draws % ops.maximum(counts, 1)


def _gather_pixels(probs, pixels):
    """[B, H, W, C] rows at flat pixel indices ``pixels`` [B, Nbox, K] -> [B, Nbox, K, C]."""
    flat_probs = ops.reshape(probs, (-1, probs.shape[-1]))
    rows = ops.take(flat_probs, ops.reshape(pixels, (-1,)), axis=0)
    return ops.reshape(rows, (*pixels.shape, probs.shape[-1]))


def _visible_pixel_indices(box_masks, ranks):
    """Where the ``ranks``-th visible pixel (raster order, from 0) of each box is.

    Args:
        box_masks: [B, Nbox, H, W].
        ranks: int32 [B, Nbox, K], each below its box's visible count (any value for an empty
            box, whose results are meaningless).

    Returns:
        int32 [B, Nbox, K]: flat indices into the B * H * W pixels of the batch.
    """
    _, num_boxes, height, width = box_masks.shape
    pixels_per_image = height * width
    chunk = math.gcd(pixels_per_image, _MAX_SEARCH_CHUNK)
    chunks_per_box = pixels_per_image // chunk
    chunks = ops.reshape(box_masks, (-1, chunk))
    chunk_counts = ops.cast(ops.sum(ops.cast(chunks, "float32"), axis=-1), "int32")
    # Visible pixels in all boxes up to and including each chunk, boxes concatenated.
    chunk_ends = ops.cumsum(chunk_counts)
    box_ends = ops.reshape(chunk_ends, (-1, chunks_per_box))[:, -1]
    box_counts = ops.sum(ops.reshape(chunk_counts, (-1, chunks_per_box)), axis=-1)
    box_starts = ops.reshape(box_ends - box_counts, (-1, num_boxes, 1))
    targets = ops.reshape(box_starts + ranks, (-1,))
    chunk_index = _search_right(chunk_ends, targets)
    within = targets - (ops.take(chunk_ends, chunk_index) - ops.take(chunk_counts, chunk_index))
    visible = ops.cast(ops.take(chunks, chunk_index, axis=0), "float32")
    # Running count inside the chunk as a product with a triangle of ones: XLA on CPU runs a
    # short cumsum as a quadratic window sum, many times slower.
    running_count = ops.matmul(visible, ops.triu(ops.ones((chunk, chunk), "float32")))
    position = ops.sum(ops.cast(running_count <= ops.cast(within, "float32")[:, None], "int32"), -1)
    # Only an empty box's rank can run past its chunk; keep its (unused) index in range.
    position = ops.minimum(position, chunk - 1)
    image = chunk_index // (num_boxes * chunks_per_box)
    pixel = image * pixels_per_image + (chunk_index % chunks_per_box) * chunk + position
    return ops.reshape(pixel, ranks.shape)


def _search_right(sorted_values, targets):
    """First index i with sorted_values[i] > target, clipped to the last index.

    A fixed-depth binary search: ``keras.ops.searchsorted`` compiles under XLA to a
    [targets x values] comparison, far too large here.
    """
    size = sorted_values.shape[0]
    low = ops.zeros_like(targets)
    high = ops.full_like(targets, size - 1)
    for _ in range(max(1, math.ceil(math.log2(size)))):
        middle = (low + high) // 2
        right = ops.take(sorted_values, middle) <= targets
        low = ops.where(right, middle + 1, low)
        high = ops.where(right, high, middle)
    return ops.minimum(low, size - 1)
