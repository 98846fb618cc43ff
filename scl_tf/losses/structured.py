"""Structured consistency loss (SCL), eq. (7)-(10) of the paper.

For every visible CutMix box ``n`` of every image the loss compares the cosine similarities
``a_ij = cos(p_i, p_j)`` of the student with those of the teacher over ordered pairs of the
box's visible pixels ``T_n`` (``i = j`` included, as in eq. 8)::

    L_n = 1 / |T_n|^2 * sum_{i, j in T_n} (a^s_ij - a^t_ij)^2

and returns ``sum_n L_n`` (eq. 10) averaged over the batch. An empty box contributes 0.

Three modes, all XLA-compilable with static shapes:

* ``"exact"`` uses every pair without forming the ``|T_n| x |T_n|`` pair matrix. With ``S``,
  ``T`` the row-normalised student/teacher predictions of the box's pixels,
  ``sum_ij (s_i.s_j - t_i.t_j)^2 = |S^T S|^2 + |T^T T|^2 - 2 |S^T T|^2`` (Frobenius norms of
  C x C Gram matrices). The image is cut into a grid of small cells (up to 8 x 32 pixels,
  sides dividing H and W); a loop sums each box's Grams over the cells where it has visible
  pixels, and a custom gradient writes the gradient back cell by cell, so that neither pass
  materialises anything the size of the image apart from the gradient itself. Cost:
  ``O(C^2)`` per pixel of the visited cells, i.e. the visible pixels plus the cells cut by box
  edges (a pixel visible in k masks is visited k times: the masks need not be disjoint). An
  image side without a divisor near 8 or 32 (a prime, say) gives thin cells and a slow loop.
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
copies the gradient buffer once per cell (0.06 s with XLA, 3.4 s without at 512 x 1024).
Everything is computed in float32; the exact loss is a difference of Frobenius norms, which
agrees with the dense pair-matrix mean to about 1e-7 relative at 512 x 1024 (see
scripts/bench_losses.py).
"""

import math

import keras
from keras import ops

MODES = ("exact", "pairs", "pixels")

# Keeps all-zero rows (e.g. padded pixels) at zero instead of NaN when normalising.
_NORM_EPSILON = 1e-12
# Exact mode visits the image in cells of up to this many rows x columns (divisors of H and
# W). Timed on CPU at 512 x 1024 and 1024 x 2048: 8 x 32 and 16 x 32 tie, 8 x 16 and 16 x 64
# are 15-30% slower (more loop steps, or more work wasted at box edges).
_MAX_CELL_SHAPE = (8, 32)
# Sampled modes find the k-th visible pixel of a box by a binary search over the visible
# counts of fixed chunks of the raster, then a scan inside one chunk of at most this size.
_MAX_SEARCH_CHUNK = 32
_INT32_MAX = 2**31 - 1


def structured_consistency_loss(
    student_probs, teacher_probs, box_masks, num_pairs=None, mode="exact", seed=None
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

    Returns:
        float32 scalar: sum over boxes of the per-box mean, averaged over the batch.

    Raises:
        ValueError: unknown ``mode``, missing or too small ``num_pairs``, shapes that do not
            match.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    _check_shapes(student_probs, teacher_probs, box_masks)
    student = ops.cast(student_probs, "float32")
    teacher = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    if mode == "exact":
        box_losses = _exact_box_losses(student, teacher, box_masks)
    elif mode == "pairs":
        _check_num_pairs(num_pairs, mode, minimum=1)
        box_losses = _pair_sampled_box_losses(student, teacher, box_masks, num_pairs, seed)
    else:
        _check_num_pairs(num_pairs, mode, minimum=2)
        box_losses = _pixel_sampled_box_losses(student, teacher, box_masks, num_pairs, seed)
    return ops.sum(box_losses) / student.shape[0]


def _check_shapes(student_probs, teacher_probs, box_masks):
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


def _exact_box_losses(student, teacher, box_masks):
    """float32 [B, Nbox]: L_n over all ordered pairs, with a memory-lean custom gradient."""
    batch, num_boxes = box_masks.shape[:2]
    classes = student.shape[-1]

    @ops.custom_gradient
    def box_losses(student, teacher, box_masks):
        counts, visits, total = _box_cell_visits(box_masks)
        grams = _box_grams(student, teacher, box_masks, visits, total)
        student_gram = grams[:, :classes, :classes]
        cross_gram = grams[:, :classes, classes:]
        teacher_gram = grams[:, classes:, classes:]
        counts = ops.cast(counts, "float32")
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
            gradient = _pull_back(student, teacher, box_masks, visits, total, pullback)
            return gradient, None, None

        return ops.reshape(losses, (batch, num_boxes)), grad

    return box_losses(student, teacher, box_masks)


def _cell_shape(height, width):
    """(h, w): the largest divisors of H and W up to _MAX_CELL_SHAPE."""

    def largest_divisor(size, limit):
        return max(d for d in range(1, min(size, limit) + 1) if size % d == 0)

    return largest_divisor(height, _MAX_CELL_SHAPE[0]), largest_divisor(width, _MAX_CELL_SHAPE[1])


def _box_cell_visits(box_masks):
    """The (cell, box) pairs where a box has visible pixels, in the order the loops visit them.

    Cells cut every image into a grid of ``_cell_shape`` windows. Visits are ordered by image,
    then cell, then box, so that the visits of a cell follow each other.

    Args:
        box_masks: [B, Nbox, H, W].

    Returns:
        counts: int32 [B * Nbox], visible pixels per box (flat index b * Nbox + n).
        visits: int32 [max_visits, 5], per visit (flat box, image, cell's first row, cell's
            column index, 1 if it is the cell's first visit else 0). Only the first ``total``
            rows are visits; computed once so that the loops only read one row of it.
        total: int32 scalar, number of visits.
    """
    batch, num_boxes, height, width = box_masks.shape
    cell_h, cell_w = _cell_shape(height, width)
    grid_h, grid_w = height // cell_h, width // cell_w
    # Visible pixels per cell row segment, as a product with ones: XLA on CPU fuses a plain sum
    # here into the next one and runs both several times slower.
    segments = ops.reshape(ops.cast(box_masks, "float32"), (-1, cell_w))
    segment_counts = ops.matmul(segments, ops.ones((cell_w, 1), "float32"))
    segment_counts = ops.reshape(segment_counts, (batch, num_boxes, grid_h, cell_h, grid_w))
    cell_counts = ops.sum(segment_counts, axis=3)
    counts = ops.cast(ops.reshape(ops.sum(cell_counts, axis=(2, 3)), (-1,)), "int32")
    # [B, grid_h, grid_w, Nbox] flattened: image, then cell, then box.
    visited = ops.reshape(ops.transpose(cell_counts, (0, 2, 3, 1)) > 0, (-1,))
    visit_ends = ops.cumsum(ops.cast(visited, "int32"))
    entry = _search_right(visit_ends, ops.arange(visited.shape[0], dtype="int32"))
    box = entry % num_boxes
    cell = entry // num_boxes
    image = cell // (grid_h * grid_w)
    cell_in_image = cell % (grid_h * grid_w)
    first_of_cell = ops.concatenate([ops.ones((1,), "bool"), cell[1:] != cell[:-1]], axis=0)
    visits = ops.stack(
        [
            image * num_boxes + box,
            image,
            cell_in_image // grid_w * cell_h,
            cell_in_image % grid_w,
            ops.cast(first_of_cell, "int32"),
        ],
        axis=1,
    )
    return counts, visits, visit_ends[-1]


def _read_cell(visit, student, teacher, box_masks, visits):
    """The normalised prediction rows of a box in a cell, for visit number ``visit``.

    Returns:
        box: int32 scalar, flat box index b * Nbox + n.
        corner: (b, row, column, 0), the cell's start in [B, H, W, C].
        first_of_cell: bool scalar, whether this is the cell's first visit.
        rows: [h * w, 2C], per pixel [s_i, t_i] normalised, zero where not visible in the box.
        student_inverse_norm: [h * w, 1], 1 / |p^s_i|.
    """
    batch, num_boxes, height, width = box_masks.shape
    cell_h, cell_w = _cell_shape(height, width)
    grid_w = width // cell_w
    classes = student.shape[-1]
    # Gathers of the cell's rows, not slices: TensorFlow's XLA bridge makes every input that
    # decides where a slice starts a compile-time constant (recompiling for every new masks).
    box, image, row, column, first_of_cell = ops.unstack(ops.take(visits, visit, 0), 5)
    cell_rows = row + ops.arange(cell_h, dtype="int32")
    image_rows = (image * height + cell_rows) * grid_w + column
    mask_rows = (box * height + cell_rows) * grid_w + column

    def cell_of(values, channels):
        rows = ops.take(ops.reshape(values, (-1, cell_w * channels)), image_rows, axis=0)
        return ops.reshape(rows, (cell_h * cell_w, channels))

    visible = ops.take(ops.reshape(box_masks, (-1, cell_w)), mask_rows, axis=0)
    visible = ops.reshape(ops.cast(visible, "float32"), (cell_h * cell_w, 1))
    student_cell, teacher_cell = cell_of(student, classes), cell_of(teacher, classes)
    student_inverse_norm = _inverse_norms(student_cell)
    # Folding the mask into the per-row scale is measurably faster than masking the rows.
    rows = ops.concatenate(
        [
            student_cell * (student_inverse_norm * visible),
            teacher_cell * (_inverse_norms(teacher_cell) * visible),
        ],
        axis=1,
    )
    corner = (image, row, column * cell_w, 0)
    return box, corner, ops.cast(first_of_cell, "bool"), rows, student_inverse_norm


def _box_grams(student, teacher, box_masks, visits, total):
    """float32 [B * Nbox, 2C, 2C]: Gram matrix of [S, T] over each box's visible pixels."""
    classes = student.shape[-1]
    num_flat_boxes = box_masks.shape[0] * box_masks.shape[1]

    def accumulate(visit, grams):
        box, _, _, rows, _ = _read_cell(visit, student, teacher, box_masks, visits)
        gram = ops.matmul(ops.transpose(rows), rows)
        return ops.slice_update(grams, (box, 0, 0), (ops.take(grams, box, 0) + gram)[None])

    initial = ops.zeros((num_flat_boxes, 2 * classes, 2 * classes), "float32")
    return ops.fori_loop(0, total, accumulate, initial)


def _pull_back(student, teacher, box_masks, visits, total, pullback):
    """Gradient [B, H, W, C] w.r.t. the unnormalised student from dL/dS = [S, T] @ pullback.

    ``pullback``: [B * Nbox, 2C, C], per box the matrix taking a normalised row [s_i, t_i] to
    dL/ds_i.
    """
    _, height, width, classes = student.shape
    cell_h, cell_w = _cell_shape(height, width)

    def accumulate(visit, state):
        gradient, cell_gradient = state
        box, corner, first_of_cell, rows, inverse_norm = _read_cell(
            visit, student, teacher, box_masks, visits
        )
        row_grad = ops.matmul(rows, ops.take(pullback, box, 0))
        # Through s = p / |p|: dL/dp = (dL/ds - s (s . dL/ds)) / |p|.
        student_rows = rows[:, :classes]
        radial = ops.sum(student_rows * row_grad, axis=-1, keepdims=True)
        box_gradient = (row_grad - student_rows * radial) * inverse_norm
        # The visits of a cell are consecutive: the cell's sum over its boxes builds up here,
        # and its last write is the complete one, so the gradient buffer is only written.
        cell_gradient = ops.where(first_of_cell, 0.0, cell_gradient) + box_gradient
        update = ops.reshape(cell_gradient, (1, cell_h, cell_w, classes))
        return ops.slice_update(gradient, corner, update), cell_gradient

    initial = (ops.zeros_like(student), ops.zeros((cell_h * cell_w, classes), "float32"))
    return ops.fori_loop(0, total, accumulate, initial)[0]


# --------------------------------------------------------------------------------------------
# Sampled modes


def _pair_sampled_box_losses(student, teacher, box_masks, num_pairs, seed):
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
    return ops.sum(squared, axis=-1) / ops.maximum(ops.sum(valid, axis=-1), 1.0)


def _pixel_sampled_box_losses(student, teacher, box_masks, num_pixels, seed):
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
