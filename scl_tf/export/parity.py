"""Parity of an exported model with TensorFlow on the same random and real images (no TF).

Criteria (issue 7): in float32 the probabilities differ by at most 1e-4 anywhere; in float16
the argmax labels agree on at least 99.9% of the pixels of every input (random images
included: the record of export/check_backbones.py). The export commands judge fp16 and int8
models on real frames only, against a flag's bar (scl_tf.export.agreement). ONNX models export
logits, so their probabilities are the softmax of the ONNX Runtime logits, computed here in
float64.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable

import numpy as np

from scl_tf.data.datasets import list_images
from scl_tf.export.calibration import spread
from scl_tf.export.images import read_image

MAX_PROBABILITY_DELTA = 1e-4  # fp32
MIN_ARGMAX_AGREEMENT = 0.999  # fp16
# Size of the random batch of a dynamic-size model, and an odd size no stride divides.
RANDOM_SIZE = (192, 256)
ODD_SIZE = (97, 131)

# images float32 [B, H, W, 3] -> (probabilities float32 [B, H, W, C], labels int [B, H, W])
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class ParityCase:
    """One input of the parity check: a name and float32 images [B, H, W, 3] in [0, 255]."""

    name: str
    images: np.ndarray


def random_images(batch: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """float32 [batch, H, W, 3] of uniform integer values in [0, 255]."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, *size, 3)).astype(np.float32)


def parity_cases(
    input_size: tuple[int, int] | None, frames: list[str], seed: int = 0
) -> list[ParityCase]:
    """Random images and real frames to compare on.

    Args:
      input_size: (H, W) of a static-size model (frames are resized to it), or None: a random
        batch of 2 at RANDOM_SIZE, one at ODD_SIZE and the frames at their own sizes.
      frames: image files (e.g. the bundled data/camvid_mini/val frames).
    """
    size = input_size or RANDOM_SIZE
    cases = [ParityCase(f"random 2x{size[0]}x{size[1]}", random_images(2, size, seed))]
    if input_size is None:
        cases.append(
            ParityCase(
                f"random 1x{ODD_SIZE[0]}x{ODD_SIZE[1]}", random_images(1, ODD_SIZE, seed + 1)
            )
        )
    for path in frames:
        image = read_image(path, input_size).astype(np.float32)[None]
        cases.append(
            ParityCase(f"{os.path.basename(path)} {image.shape[1]}x{image.shape[2]}", image)
        )
    return cases


def parity_frames(folder: str | None, count: int) -> list[str]:
    """`count` images under `folder` (all if fewer), spread evenly over them sorted by path as
    the calibration frames are (none for an empty folder name or count 0).

    Raises:
      FileNotFoundError: naming --parity_dir, when the folder is missing or has no images.
    """
    if not folder or count == 0:
        return []
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"--parity_dir: no such folder: {folder} (pass "
            "--parity_dir='' to compare on random images only)"
        )
    frames = list_images(folder)
    if not frames:
        raise FileNotFoundError(f"--parity_dir: no PNG or JPEG images in {folder}")
    return spread(frames, count)


def softmax(logits: np.ndarray) -> np.ndarray:
    """float32 softmax over the last axis, computed in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """The comparison on one ParityCase."""

    name: str
    max_probability_delta: float  # max |p_onnx - p_tf| over its pixels and classes
    agreeing: int  # pixels whose labels agree
    pixels: int


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """The comparison of an exported model with TensorFlow over all cases.

    Attributes:
      precision: "fp32" or "fp16": which criterion applies.
      cases: per-input results.
    """

    precision: str
    cases: tuple[CaseResult, ...]

    @property
    def max_probability_delta(self) -> float:
        return max(case.max_probability_delta for case in self.cases)

    @property
    def pixels(self) -> int:
        return sum(case.pixels for case in self.cases)

    @property
    def argmax_agreement(self) -> float:
        """Share of all pixels whose labels agree."""
        return sum(case.agreeing for case in self.cases) / self.pixels

    @property
    def passed(self) -> bool:
        if self.precision == "fp16":
            return self.argmax_agreement >= MIN_ARGMAX_AGREEMENT
        return self.max_probability_delta <= MAX_PROBABILITY_DELTA

    def line(self) -> str:
        """One line: both figures, the criterion and the verdict."""
        if self.precision == "fp16":
            criterion = f"argmax agreement >= {100 * MIN_ARGMAX_AGREEMENT:.1f}%"
        else:
            criterion = f"max |dprob| <= {MAX_PROBABILITY_DELTA:.0e}"
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"parity {self.precision} vs TensorFlow on {len(self.cases)} inputs "
            f"({self.pixels} pixels): max |dprob| {self.max_probability_delta:.2e}, "
            f"argmax agreement {100 * self.argmax_agreement:.3f}% "
            f"[{criterion}: {verdict}]"
        )

    def details(self) -> str:
        """One line per input: its name, max |dprob| and agreement."""
        return "\n".join(
            f"  {case.name}: max |dprob| {case.max_probability_delta:.2e}, "
            f"argmax agreement {100 * case.agreeing / case.pixels:.3f}%"
            for case in self.cases
        )


def compare_case(
    name: str, reference: tuple[np.ndarray, np.ndarray], exported: tuple[np.ndarray, np.ndarray]
) -> CaseResult:
    """CaseResult of (probabilities [B, H, W, C], labels [B, H, W]) pairs of one input."""
    (ref_probs, ref_labels), (probs, labels) = reference, exported
    if probs.shape != ref_probs.shape:
        raise ValueError(
            f"parity on {name}: output shape {probs.shape}, TensorFlow's {ref_probs.shape}"
        )
    return CaseResult(
        name,
        float(np.abs(probs - ref_probs).max()),
        int((labels == ref_labels).sum()),
        int(ref_labels.size),
    )


def check_parity(
    reference: Predictor, exported: Predictor, cases: list[ParityCase], precision: str
) -> ParityReport:
    """Runs both predictors on every case and compares their probabilities and labels."""
    return ParityReport(
        precision,
        tuple(
            compare_case(case.name, reference(case.images), exported(case.images)) for case in cases
        ),
    )


def exit_unless_passed(report: ParityReport, refusal: str) -> None:
    """Prints the report's line; if it failed, its details too, then exits with `error: refusal`.

    `report` may be any report with `line()`, `details()` and `passed` (an AgreementReport too).
    """
    print(report.line())
    if not report.passed:
        print(report.details())
        sys.exit(f"error: {refusal}")
