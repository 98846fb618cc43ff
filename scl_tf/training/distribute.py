"""Choosing the tf.distribute strategy of a run."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from scl_tf.config import ConfigError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def _workers_in_tf_config() -> int:
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    except ValueError as error:
        raise ConfigError(f"TF_CONFIG: not JSON ({error})") from None
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def select_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy named by --strategy.

    auto: multi_worker when TF_CONFIG names several workers, mirrored when several GPUs are
    visible, else default (one device). multi_worker reads the cluster from TF_CONFIG.

    Raises:
      ConfigError: an unknown name, or multi_worker without a cluster in TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy: expected one of {STRATEGIES}, got {name!r}")
    if name == "auto":
        if _workers_in_tf_config() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        if _workers_in_tf_config() < 1:
            raise ConfigError(
                "--strategy=multi_worker: the TF_CONFIG environment variable names no cluster "
                '(set it to {"cluster": {"worker": [...]}, "task": {...}} on every worker)'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, logs and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
