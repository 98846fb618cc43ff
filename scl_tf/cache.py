"""The user cache folder of scl_tf (converted ImageNet weights, what it learnt about datasets)."""

import hashlib
import os

# Where the caches of datasets go instead of the user cache (e.g. a folder shared by a team's
# machines that see the data at one path).
DATA_CACHE_ENV = "SCL_TF_DATA_CACHE"


def user_cache_dir() -> str:
    """`$XDG_CACHE_HOME/scl_tf`, by default `~/.cache/scl_tf` (not created here)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(root, "scl_tf")


def data_cache_dir(data_root: str) -> str:
    """The cache folder of one dataset (the files its preflight verified, its class-uniform
    index): `<base>/<folder name>-<hash of its absolute path>`, where base is
    `$SCL_TF_DATA_CACHE` if set, else `user_cache_dir()/data`. Never inside the dataset, which
    may be shared and read-only. Not created here."""
    path = os.path.abspath(data_root)
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    base = os.environ.get(DATA_CACHE_ENV) or os.path.join(user_cache_dir(), "data")
    name = os.path.basename(path.rstrip(os.sep)) or "root"
    return os.path.join(base, f"{name}-{digest}")
