"""scl-tf: semi-supervised semantic segmentation with the structured consistency loss.

Importing the package readies Keras for it: TensorFlow starts quietly, and the custom layers of
the models are registered, so `keras.saving.load_model("model.keras")` works after
`import scl_tf`, on the TensorFlow and the JAX backend alike. Where Keras is not installed (an
ONNX Runtime-only deployment) the package imports without it.
"""

import contextlib
import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up lines (CUDA probes on a CPU machine, oneDNN notices, written twice,
# some before its log level applies) read as failures to users. Unless TF_CPP_MIN_LOG_LEVEL asks
# for them (0, 1 or 2), they are silenced: level 3, and standard error closed while TensorFlow
# loads. (Level 3 is also what this sets, so subprocesses inherit the quiet.)
_QUIET = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") == "3"
if _QUIET:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


@contextlib.contextmanager
def _stderr_closed(active: bool):
    """Sends file descriptor 2 to /dev/null while the block runs (C++ writes bypass Python)."""
    if not active:
        yield
        return
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_stderr():
    """A block in which TensorFlow's C++ code writes nothing to standard error, unless
    TF_CPP_MIN_LOG_LEVEL asks for its lines: for calls that print whatever the log level, such
    as the TFLite converter's "fully_quantize: ..." line."""
    return _stderr_closed(_QUIET)


try:
    with _stderr_closed(_QUIET):
        import keras as _keras  # noqa: F401
except ImportError:  # an ONNX Runtime-only install: nothing of Keras to register
    pass
else:
    from scl_tf.models import layers as _layers  # noqa: F401  (registers the custom layers)
