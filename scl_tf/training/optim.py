"""The paper's optimiser: SGD with momentum, weight decay and a polynomial learning rate.

The recipe (Zhu et al. 2019, followed by the paper) comes from PyTorch, whose SGD weight decay is
an L2 term added to the gradient before momentum ("coupled"): d = g + wd * w. Keras 3's
`weight_decay` is decoupled (w -= lr * wd * w after the step) and, at momentum 0.9, about ten
times weaker for the same number. `CoupledSGD` reproduces the PyTorch form; the decoupled form is
Keras' own SGD.
"""

from __future__ import annotations

import keras

WEIGHT_DECAY_MODES = ("coupled", "decoupled")


@keras.saving.register_keras_serializable(package="scl_tf")
class CoupledSGD(keras.optimizers.SGD):
    """SGD whose weight decay is added to the gradient before momentum (PyTorch's SGD).

    Args:
      l2: coefficient of the L2 term: every variable's gradient gets + l2 * variable.
      **kwargs: keras.optimizers.SGD arguments (not `weight_decay`).
    """

    def __init__(self, l2: float = 0.0, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("CoupledSGD: use l2=, not weight_decay= (that one is decoupled)")
        super().__init__(**kwargs)
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = (
                keras.ops.cast(gradient, variable.dtype)
                + keras.ops.cast(self.l2, variable.dtype) * variable
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def build_optimizer(
    learning_rate: float,
    total_steps: int,
    power: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    weight_decay_mode: str = "coupled",
) -> keras.optimizers.Optimizer:
    """SGD with momentum and lr(t) = lr0 * (1 - t / total_steps) ** power.

    Args:
      weight_decay_mode: "coupled" (PyTorch's, the paper's) or "decoupled" (Keras').
    """
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ValueError(
            f"--weight_decay_mode: expected one of {WEIGHT_DECAY_MODES}, got {weight_decay_mode!r}"
        )
    schedule = keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=learning_rate,
        decay_steps=total_steps,
        end_learning_rate=0.0,
        power=power,
    )
    if weight_decay_mode == "coupled":
        return CoupledSGD(l2=weight_decay, learning_rate=schedule, momentum=momentum)
    return keras.optimizers.SGD(
        learning_rate=schedule, momentum=momentum, weight_decay=weight_decay
    )
