"""The bar an int8 model must pass: argmax agreement with its float32 original (no TF).

Quantization moves every probability by far more than parity's 1e-4, so an int8 model is
judged by what a user sees: the share of pixels whose label is the float32 model's, on real
frames (`parity.parity_cases`' frames of --parity_dir). Its random images are compared too and
reported, not judged: calibrated on real frames, an int8 network clips the activations of
uniform noise (a checkpoint of the CamVid study kept 97% of the labels of real frames and 92%
of noise's).
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
    count = len(parity.parity_cases(input_size, []))
    return cases[:count], cases[count:]


@dataclasses.dataclass(frozen=True)
class AgreementReport:
    """An int8 model against its float32 original.

    Attributes:
      frames: the comparison on real frames, which is judged.
      noise: the comparison on random images, reported only.
      min_agreement: the share of the frames' pixels whose labels must agree.
      reference: what the model was compared with, e.g. "ONNX fp32".
    """

    frames: ParityReport
    noise: ParityReport
    min_agreement: float
    reference: str

    @property
    def argmax_agreement(self) -> float:
        """Share of the frames' pixels whose labels agree."""
        return self.frames.argmax_agreement

    @property
    def passed(self) -> bool:
        return self.argmax_agreement >= self.min_agreement

    def line(self) -> str:
        """One line: the agreement on frames and on noise, the bar and the verdict."""
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"argmax agreement int8 vs {self.reference} on {len(self.frames.cases)} frame(s) "
            f"({self.frames.pixels} pixels): {100 * self.argmax_agreement:.3f}% "
            f"[>= {100 * self.min_agreement:.1f}% (--min_agreement): {verdict}]; on random "
            f"images {100 * self.noise.argmax_agreement:.3f}% (not judged)"
        )

    def details(self) -> str:
        """One line per input: its name, max |dprob| and agreement."""
        return "\n".join(report.details() for report in (self.frames, self.noise))


def check_agreement(
    reference: parity.Predictor,
    quantized: parity.Predictor,
    input_size: tuple[int, int] | None,
    frames: list[str],
    min_agreement: float,
    reference_name: str,
) -> AgreementReport:
    """Runs both predictors on `split_cases(input_size, frames)` and judges the frames.

    Args:
      reference, quantized: images float32 [B, H, W, 3] -> (probabilities [B, H, W, C],
        labels [B, H, W]), as `parity.check_parity` takes them.
      frames: image files, at least one.
    """
    noise, real = split_cases(input_size, frames)
    return AgreementReport(
        frames=parity.check_parity(reference, quantized, real, "int8"),
        noise=parity.check_parity(reference, quantized, noise, "int8"),
        min_agreement=min_agreement,
        reference=reference_name,
    )
