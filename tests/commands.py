"""What the command-line tests share: the flags of a tiny training run and a runner for the
scripts of export/ (imported by the test modules; pytest puts tests/ on the path)."""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# scl_tf.train on the bundled CamVid sample in seconds a step: MobileNetV2 at output stride 16,
# 64x64 crops, one labeled and one unlabeled image, 8 CutMix boxes with SCL on the last 4.
TINY_TRAIN_FLAGS = [
    "--dataset=camvid",
    "--backbone=mobilenetv2",
    "--output_stride=16",
    "--crop_size=64x64",
    "--labeled_batch_size=1",
    "--unlabeled_batch_size=1",
    "--cutmix_boxes=8",
    "--scl_boxes=4",
    "--strategy=default",
]


def run_export_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """Runs export/`name` with `args` from the repository root; its output is captured."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "export", name), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
    )
