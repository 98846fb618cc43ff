"""Pixel-wise consistency loss, eq. (4) of the paper."""

from keras import ops

# How eq. 4's squared difference is reduced over the C classes: "sum" as the paper writes it,
# "mean" as PyTorch's mse_loss does (lambda_c 20 "mean" is lambda_c 20 / C "sum").
CLASS_REDUCTIONS = ("sum", "mean")


def consistency_loss(student_probs, teacher_probs, class_reduction="sum", confident=None):
    """Mean over pixels of the squared L2 distance between class-probability vectors.

    ``L_c = 1 / (B H W) * sum_{b, i} m_{b,i} |p^s_{b,i} - p^t_{b,i}|^2`` with ``m = 1`` unless
    ``confident`` is given, divided by C more for ``class_reduction="mean"``. The teacher is a
    target only: it receives no gradient.

    Args:
        student_probs: float [B, H, W, C], softmax output of the student.
        teacher_probs: float [B, H, W, C], softmax output of the teacher.
        class_reduction: "sum" (eq. 4 as written) or "mean" over the classes.
        confident: None, or float [B, H, W] of 0/1: only pixels with 1 count, and the mean
            still runs over all B H W pixels (FixMatch's masked mean), so a batch with few
            confident pixels weighs less.

    Returns:
        float32 scalar.

    Raises:
        ValueError: the shapes differ, or an unknown class_reduction.
    """
    if tuple(student_probs.shape) != tuple(teacher_probs.shape):
        raise ValueError(
            f"`teacher_probs` shape {tuple(teacher_probs.shape)} does not match "
            f"`student_probs` shape {tuple(student_probs.shape)}."
        )
    if class_reduction not in CLASS_REDUCTIONS:
        raise ValueError(
            f"`class_reduction` must be one of {CLASS_REDUCTIONS}, got {class_reduction!r}."
        )
    student = ops.cast(student_probs, "float32")
    teacher = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    reduce = ops.sum if class_reduction == "sum" else ops.mean
    per_pixel = reduce(ops.square(student - teacher), axis=-1)
    if confident is not None:
        per_pixel = per_pixel * ops.cast(confident, "float32")
    return ops.mean(per_pixel)
