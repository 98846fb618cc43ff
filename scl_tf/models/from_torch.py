"""Copies a PyTorch state dict into the layers of a Keras model, by name.

Layouts: convolution kernels OIHW -> HWIO, depthwise kernels [C, 1, kh, kw] -> [kh, kw, C, 1],
linear weights [out, in] -> [in, out]; biases as they are; BatchNorm `weight`, `bias`,
`running_mean`, `running_var` -> gamma, beta, moving mean, moving variance (epsilon and
momentum are the Keras layer's own, which the architecture sets to the original's).
"""

import keras
import numpy as np

_BN_PARAMS = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}


def _target(layer, param, value):
    """The (variable, value in Keras layout) of `layer` that PyTorch's `param` maps to, or None."""
    if isinstance(layer, keras.layers.DepthwiseConv2D) and param == "weight" and value.ndim == 4:
        return layer.kernel, np.transpose(value, (2, 3, 0, 1))
    if isinstance(layer, keras.layers.Conv2D) and param == "weight" and value.ndim == 4:
        return layer.kernel, np.transpose(value, (2, 3, 1, 0))
    if isinstance(layer, keras.layers.Dense) and param == "weight" and value.ndim == 2:
        return layer.kernel, value.T
    if isinstance(layer, keras.layers.BatchNormalization) and param in _BN_PARAMS:
        bn_variables = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
        return bn_variables[_BN_PARAMS[param]], value
    conv_or_dense = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    if isinstance(layer, conv_or_dense) and param == "bias" and layer.use_bias:
        return layer.bias, value
    return None


def assign_state_dict(model, state_dict, locate, skip=lambda key: False, what="conversion"):
    """Sets every weight of `model` from `state_dict`, or fails listing all that does not fit.

    Args:
        model: `keras.Model` whose layers carry the PyTorch modules' names (see `locate`).
        state_dict: {key: np.ndarray}, e.g. from `scl_tf.models.torch_file.read_state_dict`.
        locate: key -> (Keras layer name, PyTorch parameter name), e.g.
            `"_blocks.3._bn0.weight"` -> `("blocks_3_bn0", "weight")`.
        skip: key -> True for keys deliberately not converted (an ImageNet head the model
            lacks, BN `num_batches_tracked` counters).
        what: names the conversion in the error message.

    Returns:
        Sorted list of the skipped keys.

    Raises:
        ValueError listing every key that matches no weight (or a weight already set), every
        model weight left unset and every shape mismatch.
    """
    skipped, unmatched, mismatched, assigned = [], [], [], {}
    for key, value in state_dict.items():
        if skip(key):
            skipped.append(key)
            continue
        layer_name, param = locate(key)
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            unmatched.append(key)
            continue
        target = _target(layer, param, np.asarray(value, dtype="float32"))
        if target is None:
            unmatched.append(key)
            continue
        variable, converted = target
        if tuple(variable.shape) != converted.shape:
            mismatched.append(
                f"{key}: {value.shape} (as Keras {converted.shape}) for {variable.path} "
                f"{tuple(variable.shape)}"
            )
        elif variable.path in assigned:
            unmatched.append(f"{key} (duplicate of {assigned[variable.path]})")
        else:
            variable.assign(converted)
            assigned[variable.path] = key
    unset = [v.path for v in model.weights if v.path not in assigned]
    problems = [
        (f"{len(unmatched)} checkpoint tensors match no model weight", unmatched),
        (f"{len(unset)} model weights have no checkpoint tensor", unset),
        (f"{len(mismatched)} shape mismatches", mismatched),
    ]
    if unmatched or unset or mismatched:
        report = "\n".join(
            f"{title}:\n  " + "\n  ".join(items) for title, items in problems if items
        )
        raise ValueError(f"{what} failed.\n{report}")
    return sorted(skipped)
