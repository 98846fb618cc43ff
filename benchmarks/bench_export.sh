#!/usr/bin/env bash
# ONNX Runtime vs TensorFlow SavedModel latency on this CPU (issue 7): DeepLabV3+ MobileNetV2 and
# ResNet-50 (output stride 16, 19 classes, random weights: latency does not depend on them) at
# 512x1024 and 1024x2048, ONNX exported at dynamic size and at the benchmarked static size.
# Every line of export/benchmark.py times both runtimes alternately, call by call, in one process
# and adds a record to benchmarks/bench_export.json.
#   bash benchmarks/bench_export.sh [WORK_DIR]      (about 20 min on 2 free cores; converting ResNet-50 takes ~4.3 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${1:-/tmp/bench}
OUT=benchmarks/bench_export.json
mkdir -p "$WORK"
for backbone in mobilenetv2 resnet50; do
  saved="$WORK/${backbone}_os16_sm"
  [ -d "$saved" ] || "$PY" export/to_saved_model.py --untrained --backbone=$backbone \
      --output_stride=16 --dataset=cityscapes --output="$saved"
  [ -f "$WORK/${backbone}_os16.onnx" ] || "$PY" export/to_onnx.py --source="$saved" \
      --output="$WORK/${backbone}_os16.onnx" --parity_frames=1
  for size in 512x1024 1024x2048; do
    [ -f "$WORK/${backbone}_os16_$size.onnx" ] || "$PY" export/to_onnx.py --source="$saved" \
        --output="$WORK/${backbone}_os16_$size.onnx" --input_size=$size --parity_frames=1
    case $backbone-$size in  # calls timed per runtime, untimed warm-up calls
      mobilenetv2-512x1024) iters=20 warmup=2 ;; mobilenetv2-*) iters=10 warmup=1 ;;
      resnet50-512x1024) iters=10 warmup=1 ;; *) iters=6 warmup=1 ;;
    esac
    for onnx in "$WORK/${backbone}_os16.onnx" "$WORK/${backbone}_os16_$size.onnx"; do
      "$PY" export/benchmark.py --model="$onnx" --saved_model="$saved" --size=$size \
          --iters=$iters --warmup=$warmup --output=$OUT
    done
  done
done
