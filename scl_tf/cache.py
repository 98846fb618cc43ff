"""The user cache folder of scl_tf (converted ImageNet weights, class-uniform indexes)."""

import os


def user_cache_dir() -> str:
    """`$XDG_CACHE_HOME/scl_tf`, by default `~/.cache/scl_tf` (not created here)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(root, "scl_tf")
