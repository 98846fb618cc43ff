"""Cross entropy with boundary label relaxation, eq. (2) of the paper."""

from keras import ops


def relaxed_cross_entropy(labels, logits, window=3, ignore_label=255):
    """Boundary-relaxed cross entropy: ``-log sum_{c in N_w(i)} P(c | i)``.

    ``N_w(i)`` is the set of labels found in the ``window x window`` neighbourhood of pixel i
    (clipped at the image border). Pixels labelled ``ignore_label`` add no class to any set and
    are left out of the mean. Computed from logits with log-sum-exp, so it is stable for any
    logit scale. With ``window=1`` this is sparse softmax cross entropy with an ignore label.

    Args:
        labels: int [B, H, W], class ids in [0, C) or ``ignore_label``.
        logits: float [B, H, W, C]; computed in float32.
        window: odd int >= 1, side of the neighbourhood.
        ignore_label: label id of pixels without a label.

    Returns:
        float32 scalar: mean over the non-ignored pixels of the batch, 0 if there are none.

    Raises:
        ValueError: ``window`` is not an odd positive int, or the shapes do not match.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"`window` must be an odd int >= 1, got {window!r}.")
    if tuple(labels.shape) != tuple(logits.shape[:-1]) or len(logits.shape) != 4:
        raise ValueError(
            f"`labels` must have shape [B, H, W] and `logits` [B, H, W, C]; got "
            f"{tuple(labels.shape)} and {tuple(logits.shape)}."
        )
    logits = ops.cast(logits, "float32")
    num_classes = logits.shape[-1]
    labelled = ops.not_equal(labels, ignore_label)
    one_hot = ops.one_hot(ops.where(labelled, labels, 0), num_classes, dtype="float32")
    one_hot = one_hot * ops.cast(labelled, "float32")[..., None]
    if window > 1:
        one_hot = ops.max_pool(one_hot, pool_size=window, strides=1, padding="same")
    # A labelled pixel always finds its own class; an ignored one may find none, so give it
    # every class (loss 0, masked out below) rather than an empty log-sum-exp.
    in_neighbourhood = ops.logical_or(one_hot > 0, ops.logical_not(labelled)[..., None])
    neighbourhood_logits = ops.where(in_neighbourhood, logits, float("-inf"))
    pixel_losses = ops.logsumexp(logits, axis=-1) - ops.logsumexp(neighbourhood_logits, axis=-1)
    weights = ops.cast(labelled, "float32")
    return ops.sum(pixel_losses * weights) / ops.maximum(ops.sum(weights), 1.0)
