"""Pixel-wise consistency loss, eq. (4) of the paper."""

from keras import ops


def consistency_loss(student_probs, teacher_probs):
    """Mean over pixels of the squared L2 distance between class-probability vectors.

    ``L_c = 1 / (B H W) * sum_{b, i} |p^s_{b,i} - p^t_{b,i}|^2``. The teacher is a target only:
    it receives no gradient.

    Args:
        student_probs: float [B, H, W, C], softmax output of the student.
        teacher_probs: float [B, H, W, C], softmax output of the teacher.

    Returns:
        float32 scalar.

    Raises:
        ValueError: the two shapes differ.
    """
    if tuple(student_probs.shape) != tuple(teacher_probs.shape):
        raise ValueError(
            f"`teacher_probs` shape {tuple(teacher_probs.shape)} does not match "
            f"`student_probs` shape {tuple(student_probs.shape)}."
        )
    student = ops.cast(student_probs, "float32")
    teacher = ops.stop_gradient(ops.cast(teacher_probs, "float32"))
    return ops.mean(ops.sum(ops.square(student - teacher), axis=-1))
