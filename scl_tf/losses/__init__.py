"""Losses of the semi-supervised recipe: pure functions written with keras.ops."""

from scl_tf.losses.consistency import consistency_loss
from scl_tf.losses.relaxed_ce import relaxed_cross_entropy
from scl_tf.losses.structured import structured_consistency_loss

__all__ = ["consistency_loss", "relaxed_cross_entropy", "structured_consistency_loss"]
