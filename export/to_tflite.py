"""Convert a trained model to TensorFlow Lite (fp32, fp16 or int8) and check it against
TensorFlow.

    python export/to_tflite.py --source=runs/demo --output=runs/demo/model.tflite
    python export/to_tflite.py --source=runs/demo --output=runs/demo/model_int8.tflite \
        --precision=int8 --calibration=data/camvid_mini/train --calibration_count=100

--source: a model dir of scl_tf.train (its EMA teacher by default; --checkpoint and
--eval_weights choose others) or a SavedModel of export/to_saved_model.py.

The file takes `images` float32 RGB [1, H, W, 3] in [0, 255] at the fixed --input_size
(default 360x480, CamVid's frames) and outputs `logits` float32 [1, H, W, C], `labels` int32
[1, H, W] train ids and, for Cityscapes, `label_ids`, under the signature serving_default, in
every precision: fp16 stores float16 weights, int8 is full-integer inside with float32 input
and outputs, calibrated on --calibration_count frames of --calibration (a folder or glob;
unlabeled frames do). Class names, palette, input convention and outputs are in its metadata
entry "scl_tf". `python -m scl_tf.predict` / `scl_tf.evaluate --model=model.tflite` run it with
LiteRT (ai-edge-litert) where installed, else tf.lite.

After converting, the file and TensorFlow run on the same random images and --parity_frames
frames of --parity_dir, and the file is written only if it passes: fp32 as ONNX files (max
|delta probability| <= 1e-4), fp16 and int8 when their labels equal TensorFlow's on at least
--min_fp16_agreement / --min_agreement of the frames' pixels. Exit status 1 otherwise.
"""

import os
import sys

from absl import app, flags, logging  # noqa: E402

from scl_tf import config as config_lib  # noqa: E402
from scl_tf import flags as flags_lib  # noqa: E402
from scl_tf import runs  # noqa: E402


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the result
    from scl_tf.export import calibration, parity, serving, tflite

    try:
        config = flags_lib.tflite_config(flags.FLAGS)
        frames = parity.parity_frames(config.parity_dir, config.parity_frames)
        int8 = config.precision == "int8"
        quantization = config.quantization
        calibration_frames = (
            calibration.calibration_frames(
                quantization.calibration, quantization.calibration_count, config.input_size
            )
            if int8
            else None
        )
        model = serving.load_source(config.source, config.checkpoint, config.eval_weights)
    except (config_lib.ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    except runs.ModelError as error:
        sys.exit(f"error: --source: {error}")
    try:
        flatbuffer, report = tflite.export_tflite(
            model,
            config.input_size,
            config.precision,
            frames,
            calibration_frames,
            quantization.min_agreement,
            config.min_fp16_agreement,
        )
    except config_lib.ConfigError as error:  # an unreadable calibration frame
        sys.exit(f"error: {error}")
    bar = {"int8": "--min_agreement", "fp16": "--min_fp16_agreement"}.get(
        config.precision, "parity check"
    )
    parity.exit_unless_passed(
        report, f"{config.precision} below the {bar}; {config.output} not written"
    )
    folder = os.path.dirname(config.output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(config.output, "wb") as out:
        out.write(flatbuffer)
    height, width = config.input_size
    print(
        f"wrote {config.output}: {model.info.backbone}, {config.precision}, {height}x{width}, "
        f"{len(flatbuffer) / 2**20:.1f} MiB, checked with {runs.tflite_runtime()}"
    )


if __name__ == "__main__":
    flags_lib.define_to_tflite_flags()
    app.run(main)
