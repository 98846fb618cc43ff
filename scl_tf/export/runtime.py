"""ONNX Runtime for exported models: execution providers, metadata, IOBinding (no TF).

Sessions are opened by `scl_tf.runs.onnx_session`, with the providers chosen here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort

from scl_tf.export.metadata import ExportInfo, from_onnx_props

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
CUDNN_CONV_ALGO_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
INPUT_NAME = "images"


class ProviderError(RuntimeError):
    """The requested execution provider cannot run here; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """Execution provider of a session and the options that matter on GPU.

    Attributes:
      provider: "cpu", "cuda" or "tensorrt" (TensorRT falls back to CUDA, then CPU, for nodes
        it cannot take).
      device_id: GPU index (cuda, tensorrt).
      cudnn_conv_algo_search: cuda: "EXHAUSTIVE" (benchmark every algorithm once per shape),
        "HEURISTIC" or "DEFAULT".
      trt_fp16: tensorrt: build float16 engines.
      trt_engine_cache: tensorrt: folder caching built engines across sessions; None = off.
      spinning: the session's CPU threads spin between calls (ORT's default, the lowest latency
        of one session called in a loop). Off where several runtimes take turns on the same
        cores (a side-by-side benchmark): spinning threads then charge one model's wait to the
        next (issue 28: int8 at 0.50x fp32 with spinning sessions, 0.42x without, demo model).
    """

    provider: str = "cpu"
    device_id: int = 0
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    trt_fp16: bool = False
    trt_engine_cache: str | None = None
    spinning: bool = True

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ValueError(
                f"--provider: expected one of {', '.join(PROVIDERS)}, got {self.provider!r}"
            )
        if self.cudnn_conv_algo_search not in CUDNN_CONV_ALGO_SEARCHES:
            raise ValueError(
                f"--cudnn_conv_algo_search: expected one of "
                f"{', '.join(CUDNN_CONV_ALGO_SEARCHES)}, "
                f"got {self.cudnn_conv_algo_search!r}"
            )
        if self.device_id < 0:
            raise ValueError(f"--device_id: must be >= 0, got {self.device_id}")
        if self.provider != "tensorrt" and (self.trt_fp16 or self.trt_engine_cache):
            raise ValueError(
                f"--trt_engine_cache / TensorRT fp16: only with "
                f"--provider=tensorrt, not {self.provider}"
            )

    @property
    def device(self) -> str:
        """OrtValue device type of the inputs and outputs: "cpu" or "cuda"."""
        return "cpu" if self.provider == "cpu" else "cuda"


def execution_providers(
    options: RuntimeOptions, available: list[str]
) -> list[tuple[str, dict[str, str]]]:
    """(name, options) of the providers to ask for, preferred first, ending with the CPU.

    Args:
      available: `onnxruntime.get_available_providers()`.

    Raises:
      ProviderError: the provider is not in this onnxruntime build.
    """
    wanted = PROVIDERS[options.provider]
    if wanted not in available:
        raise ProviderError(
            f"--provider={options.provider}: this onnxruntime offers only "
            f"{', '.join(available)} (the GPU providers need onnxruntime-gpu "
            "instead of onnxruntime)"
        )
    cuda = (
        "CUDAExecutionProvider",
        {
            "device_id": str(options.device_id),
            "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        },
    )
    cpu = ("CPUExecutionProvider", {})
    if options.provider == "cpu":
        return [cpu]
    if options.provider == "cuda":
        return [cuda, cpu]
    tensorrt = {
        "device_id": str(options.device_id),
        "trt_fp16_enable": str(options.trt_fp16),
        "trt_engine_cache_enable": str(options.trt_engine_cache is not None),
    }
    if options.trt_engine_cache is not None:
        tensorrt["trt_engine_cache_path"] = options.trt_engine_cache
    providers = [("TensorrtExecutionProvider", tensorrt)]
    # Nodes TensorRT does not take run on CUDA if this build has it, else on the CPU.
    if cuda[0] in available:
        providers.append(cuda)
    return providers + [cpu]


def model_info(session: ort.InferenceSession, source: str) -> ExportInfo:
    """The ExportInfo stored in the session's model by export/to_onnx.py."""
    return from_onnx_props(session.get_modelmeta().custom_metadata_map, source)


def static_input_size(session: ort.InferenceSession) -> tuple[int, int] | None:
    """(H, W) the model's input is fixed to, or None when both are dynamic."""
    height, width = session.get_inputs()[0].shape[1:3]
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    return None


def check_input_size(
    session: ort.InferenceSession, size: tuple[int, int], flag: str, source: str
) -> None:
    """Raises ValueError naming `flag` when a static-size model cannot take `size` (H, W)."""
    fixed = static_input_size(session)
    if fixed is not None and tuple(size) != fixed:
        raise ValueError(
            f"{flag}: {size[0]}x{size[1]} does not fit {source}, exported for "
            f"{fixed[0]}x{fixed[1]} only (export with --input_size=dynamic for "
            "any size)"
        )


def run(session: ort.InferenceSession, images: np.ndarray) -> dict[str, np.ndarray]:
    """{output name: array} of the model on float32 images [B, H, W, 3] in [0, 255]."""
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: images})))


class BoundRunner:
    """Runs a session repeatedly on one input through IOBinding.

    The input is copied to the provider's device once; outputs are allocated on the device
    and left there, so timing a call counts no host copies.

    Args:
      session: an InferenceSession.
      images: float32 [B, H, W, 3].
      options: the session's RuntimeOptions (device and device id).
    """

    def __init__(self, session: ort.InferenceSession, images: np.ndarray, options: RuntimeOptions):
        self._session = session
        self._binding = session.io_binding()
        self._input = ort.OrtValue.ortvalue_from_numpy(images, options.device, options.device_id)
        self._binding.bind_ortvalue_input(INPUT_NAME, self._input)
        for output in session.get_outputs():
            self._binding.bind_output(output.name, options.device, options.device_id)

    def __call__(self) -> None:
        self._session.run_with_iobinding(self._binding)

    def outputs(self) -> dict[str, np.ndarray]:
        """{output name: host array} of the last call."""
        names = [output.name for output in self._session.get_outputs()]
        return dict(zip(names, self._binding.copy_outputs_to_cpu()))
