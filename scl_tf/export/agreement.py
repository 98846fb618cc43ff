"""The bar an int8 or fp16 model must pass: argmax agreement with its float32 original (no TF).

Quantization and float16 move probabilities by far more than parity's 1e-4, so an int8 or
fp16 model is judged by what a user sees: the share of pixels whose label is the float32
model's, on real frames (`parity.parity_cases`' frames of --parity_dir). Its random images are
compared too and reported, not judged: calibrated on real frames, an int8 network clips the
activations of uniform noise, and noise leaves near-tied logits that any rounding flips.

How many frames: labels flip where a frame's top two logits nearly tie, so agreement varies
from frame to frame (int8 of the CamVid study's Lite0: 97.9% to 99.4% over its 101 val
frames) and the pixels of one frame move together. The share over N frames is only as stable as
the frames are many, hence the --parity_frames default (BENCHMARKS.md, "How many frames judge
a quantized model").
"""

from __future__ import annotations

import dataclasses

from scl_tf.export import parity
from scl_tf.export.parity import ParityCase, ParityReport


def split_cases(
    input_size: tuple[int, int] | None, frames: list[str]
) -> tuple[list[ParityCase], list[ParityCase]]:
    """(random cases, frame cases) of `parity.parity_cases(input_size, frames)`, whose random
    images come first."""
    cases = parity.parity_cases(input_size, frames)
    count = random_count(input_size)
    return cases[:count], cases[count:]


def random_count(input_size: tuple[int, int] | None) -> int:
    """How many of `parity.parity_cases(input_size, ...)` are random images (they come first)."""
    return len(parity.parity_cases(input_size, []))


@dataclasses.dataclass(frozen=True)
class AgreementReport:
    """An int8 or fp16 model against its float32 original.

    Attributes:
      frames: the comparison on real frames, which is judged.
      noise: the comparison on random images, reported only.
      min_agreement: the share of the frames' pixels whose labels must agree.
      reference: what the model was compared with, e.g. "ONNX fp32".
      precision: "int8" or "fp16".
      flag: the flag that sets `min_agreement`, named in the verdict.
    """

    frames: ParityReport
    noise: ParityReport
    min_agreement: float
    reference: str
    precision: str = "int8"
    flag: str = "--min_agreement"

    @property
    def argmax_agreement(self) -> float:
        """Share of the frames' pixels whose labels agree."""
        return self.frames.argmax_agreement

    @property
    def frame_agreements(self) -> list[float]:
        """Each frame's share of agreeing pixels."""
        return [case.agreeing / case.pixels for case in self.frames.cases]

    @property
    def passed(self) -> bool:
        return self.argmax_agreement >= self.min_agreement

    def line(self) -> str:
        """One line: the agreement on frames (and its range over them) and on noise, the bar
        and the verdict."""
        verdict = "PASS" if self.passed else "FAIL"
        per_frame = self.frame_agreements
        return (
            f"argmax agreement {self.precision} vs {self.reference} on {len(per_frame)} "
            f"frame(s) ({self.frames.pixels} pixels): {100 * self.argmax_agreement:.3f}% "
            f"(frames {100 * min(per_frame):.2f}-{100 * max(per_frame):.2f}%) "
            f"[>= {100 * self.min_agreement:g}% ({self.flag}): {verdict}]; on random images "
            f"{100 * self.noise.argmax_agreement:.3f}% (not judged)"
        )

    def details(self) -> str:
        """One line per input: its name, max |dprob| and agreement."""
        return "\n".join(report.details() for report in (self.frames, self.noise))


def judge(
    report: ParityReport,
    input_size: tuple[int, int] | None,
    min_agreement: float,
    reference: str,
    precision: str,
    flag: str,
) -> AgreementReport:
    """The AgreementReport of a parity comparison on `parity.parity_cases(input_size, frames)`
    (e.g. `convert.export_onnx`'s fp16 report): its random images reported, its frames judged.

    Raises:
      ValueError: naming --parity_dir, when the report holds no frame.
    """
    count = random_count(input_size)
    if len(report.cases) <= count:
        raise ValueError(f"--parity_dir: {precision} is judged on real frames; none compared")
    return AgreementReport(
        frames=ParityReport(report.precision, report.cases[count:]),
        noise=ParityReport(report.precision, report.cases[:count]),
        min_agreement=min_agreement,
        reference=reference,
        precision=precision,
        flag=flag,
    )


def check_agreement(
    reference: parity.Predictor,
    exported: parity.Predictor,
    input_size: tuple[int, int] | None,
    frames: list[str],
    min_agreement: float,
    reference_name: str,
    precision: str = "int8",
    flag: str = "--min_agreement",
) -> AgreementReport:
    """Runs both predictors on `parity.parity_cases(input_size, frames)` and judges the frames.

    Args:
      reference, exported: images float32 [B, H, W, 3] -> (probabilities [B, H, W, C],
        labels [B, H, W]), as `parity.check_parity` takes them.
      frames: image files, at least one.
      precision, flag: what is judged ("int8", "fp16") and the flag of its bar.
    """
    cases = parity.parity_cases(input_size, frames)
    report = parity.check_parity(reference, exported, cases, precision)
    return judge(report, input_size, min_agreement, reference_name, precision, flag)
