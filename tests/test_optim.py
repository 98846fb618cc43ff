"""Coupled (PyTorch) vs decoupled (Keras) SGD weight decay, and the polynomial schedule."""

import keras
import numpy as np
import pytest

from scl_tf.training import optim


def run(optimizer, steps, w0, target):
    """Minimises 0.5 |w - target|^2 for `steps` steps; returns the weights after each."""
    variable = keras.Variable(np.array(w0, np.float32))
    optimizer.build([variable])
    history = []
    for _ in range(steps):
        gradient = variable.numpy() - target
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
        history.append(variable.numpy().copy())
    return history


def pytorch_sgd(steps, w0, target, lrs, momentum, weight_decay):
    """torch.optim.SGD's update, written out: d = g + wd w; buf = mu buf + d; w -= lr buf."""
    w = np.array(w0, np.float64)
    buf = np.zeros_like(w)
    history = []
    for step in range(steps):
        d = (w - target) + weight_decay * w
        buf = momentum * buf + d if step else d
        w = w - lrs[step] * buf
        history.append(w.copy())
    return history


def test_coupled_matches_pytorch_sgd_at_constant_lr():
    w0, target = [1.0, -2.0, 0.5], np.array([0.3, 0.1, -0.2])
    ours = run(optim.CoupledSGD(l2=0.05, learning_rate=0.1, momentum=0.9), 5, w0, target)
    reference = pytorch_sgd(5, w0, target, [0.1] * 5, 0.9, 0.05)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


def test_polynomial_schedule_reaches_zero_at_the_end():
    optimizer = optim.build_optimizer(0.002, total_steps=10, power=1.0, weight_decay=1e-3)
    assert isinstance(optimizer, optim.CoupledSGD) and optimizer.l2 == 1e-3
    variable = keras.Variable(np.zeros(2, np.float32))
    optimizer.build([variable])
    for step in range(11):
        assert float(optimizer.learning_rate) == pytest.approx(0.002 * (1 - step / 10))
        optimizer.apply([keras.ops.ones(2)], [variable])


def test_decoupled_mode_is_keras_weight_decay():
    w0, target, lr, wd = np.array([1.0, -1.0]), np.zeros(2), 0.1, 0.1
    coupled = run(optim.build_optimizer(lr, 10**6, weight_decay=wd), 1, w0, target)
    decoupled = run(
        optim.build_optimizer(lr, 10**6, weight_decay=wd, weight_decay_mode="decoupled"),
        1,
        w0,
        target,
    )
    # Keras shrinks w by lr * wd, then takes the plain step with the gradient at w0.
    np.testing.assert_allclose(decoupled[0], w0 * (1 - lr * wd) - lr * (w0 - target), rtol=1e-5)
    np.testing.assert_allclose(coupled[0], w0 - lr * ((w0 - target) + wd * w0), rtol=1e-5)


def test_bad_mode_and_mixed_arguments():
    with pytest.raises(ValueError, match="--weight_decay_mode"):
        optim.build_optimizer(0.1, 10, weight_decay_mode="l2")
    with pytest.raises(ValueError, match="l2="):
        optim.CoupledSGD(weight_decay=0.1)


def test_config_round_trip():
    optimizer = optim.CoupledSGD(l2=0.01, learning_rate=0.5, momentum=0.8)
    clone = optim.CoupledSGD.from_config(optimizer.get_config())
    assert clone.l2 == 0.01 and clone.momentum == pytest.approx(0.8)
