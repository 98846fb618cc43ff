"""TensorFlow against itself: the float32 floor under the parity check of export/to_onnx.py.

    python benchmarks/tf_kernel_noise.py --source=runs/parity/wrn38 \
        --output=benchmarks/tf_kernel_noise_wrn38.json

The parity check compares ONNX Runtime's probabilities with TensorFlow's and asks for at most
1e-4 of difference in float32. Two float32 implementations differ by their rounding alone, and
how much that moves the probabilities depends on the network and the input. This runs the
model of --source (a model dir of scl_tf.train or a SavedModel, as for to_onnx.py) on the same
inputs as to_onnx.py twice, in TensorFlow with its oneDNN kernels and with its plain ones
(TF_ENABLE_ONEDNN_OPTS=1 / 0, one child process each: TensorFlow reads the switch at import),
and prints and writes per input the max |delta probability| (softmax of the logits in float64,
as the parity check computes the ONNX side), the label agreement, and the largest |logit|.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from scl_tf.export import parity

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PARITY_DIR = os.path.join(REPO_ROOT, "data", "camvid_mini", "val")
KERNELS = {"onednn": "1", "plain": "0"}  # name -> TF_ENABLE_ONEDNN_OPTS


def write_logits(source: str, checkpoint: str, cases: list[parity.ParityCase], path: str) -> None:
    """Saves the logits float32 [B, H, W, C] of each case, in order, to the .npz at `path`."""
    import tensorflow as tf

    from scl_tf.export import serving

    signature = serving.load_source(source, checkpoint).signatures[serving.SIGNATURE_LOGITS]
    np.savez(
        path, *[signature(images=tf.constant(case.images))["logits"].numpy() for case in cases]
    )


def compare(
    cases: list[parity.ParityCase], onednn: list[np.ndarray], plain: list[np.ndarray]
) -> list[dict]:
    """Per case: the parity figures of the plain kernels' logits against oneDNN's."""
    records = []
    for case, reference, other in zip(cases, onednn, plain):
        result = parity.compare_case(
            case.name,
            (parity.softmax(reference), reference.argmax(-1)),
            (parity.softmax(other), other.argmax(-1)),
        )
        records.append({**vars(result), "max_abs_logit": float(np.abs(reference).max())})
    return records


def run_child(args: argparse.Namespace, kernels: str, path: str) -> None:
    """This script in a child process with TensorFlow's `kernels`, writing logits to `path`."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": KERNELS[kernels], "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        os.path.abspath(__file__),
        f"--source={args.source}",
        f"--checkpoint={args.checkpoint}",
        f"--parity_dir={args.parity_dir}",
        f"--parity_frames={args.parity_frames}",
        f"--logits_to={path}",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(
            f"error: TensorFlow with {kernels} kernels failed on --source="
            f"{args.source}:\n{result.stderr[-2000:]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        required=True,
        help="model dir of scl_tf.train or SavedModel of to_saved_model.py",
    )
    parser.add_argument("--checkpoint", default="final", choices=("final", "latest", "best"))
    parser.add_argument("--parity_dir", default=DEFAULT_PARITY_DIR)
    parser.add_argument("--parity_frames", type=int, default=2)
    parser.add_argument("--output", default="", help="JSON file to write (optional)")
    parser.add_argument("--logits_to", default="", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    try:
        cases = parity.parity_cases(None, parity.parity_frames(args.parity_dir, args.parity_frames))
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from error
    if args.logits_to:
        write_logits(args.source, args.checkpoint, cases, args.logits_to)
        return
    logits = {}
    with tempfile.TemporaryDirectory() as folder:
        for kernels in KERNELS:
            path = os.path.join(folder, f"{kernels}.npz")
            run_child(args, kernels, path)
            with np.load(path) as saved:
                logits[kernels] = [saved[f"arr_{index}"] for index in range(len(cases))]
    records = compare(cases, logits["onednn"], logits["plain"])
    for record in records:
        print(
            f"{record['name']}: max |dprob| {record['max_probability_delta']:.2e}, "
            f"argmax agreement {100 * record['agreeing'] / record['pixels']:.3f}%, "
            f"max |logit| {record['max_abs_logit']:.3g}"
        )
    if args.output:
        with open(args.output, "w") as out:
            json.dump(
                {
                    "command": " ".join(["python benchmarks/tf_kernel_noise.py", *sys.argv[1:]]),
                    "source": args.source,
                    "checkpoint": args.checkpoint,
                    "max_probability_delta": max(r["max_probability_delta"] for r in records),
                    "cases": records,
                },
                out,
                indent=2,
            )
            out.write("\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
