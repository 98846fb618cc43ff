"""Latency of repeated calls, measured side by side, and the JSON record of a benchmark (no TF)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of one call on a batch, in milliseconds, and the throughput it implies."""

    batch: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    images_per_s: float


def check_counts(batch: int, iters: int, warmup: int) -> None:
    """Raises ValueError naming --batch, --iters or --warmup when out of range."""
    for flag, value, low in (("batch", batch, 1), ("iters", iters, 1), ("warmup", warmup, 0)):
        if value < low:
            raise ValueError(f"--{flag}: must be >= {low}, got {value}")


def summarize(seconds, batch: int) -> LatencyStats:
    """LatencyStats of per-call times in seconds [N] of calls on `batch` images."""
    milliseconds = 1000.0 * np.asarray(seconds, np.float64)
    p50, p90, p99 = np.percentile(milliseconds, (50, 90, 99))
    return LatencyStats(
        batch=batch,
        iters=len(milliseconds),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(milliseconds.mean()),
        images_per_s=float(1000.0 * batch / milliseconds.mean()),
    )


def time_side_by_side(
    calls: Mapping[str, Callable[[], object]], iters: int, warmup: int
) -> dict[str, list[float]]:
    """Per-call seconds of each call, alternating between them.

    Each of `warmup` rounds and `iters` timed rounds calls every function once in turn, so a
    change in the machine's load (shared CPUs) affects all of them alike.

    Returns:
      {name: [iters] seconds}.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for _ in range(iters):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def record_key(record: dict) -> tuple:
    """What makes two benchmark records the same measurement (the newer one replaces)."""
    return (
        record["model"],
        record["provider"],
        record["precision"],
        record["batch"],
        tuple(record["size"]),
    )  # the model path tells static and dynamic exports apart


def update_json(path: str, record: dict) -> list[dict]:
    """Adds `record` to the JSON list at `path` (replacing one with the same key); returns it."""
    records = []
    if os.path.isfile(path):
        with open(path) as source:
            records = json.load(source)
    records = [old for old in records if record_key(old) != record_key(record)] + [record]
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w") as out:
        json.dump(records, out, indent=2)
        out.write("\n")
    return records


def paired_ratio(numerator, denominator) -> float:
    """Median over rounds of the per-round time ratio (rounds of `time_side_by_side`)."""
    return float(np.median(np.asarray(numerator) / np.asarray(denominator)))
