"""Convert a trained model to ONNX with tf2onnx and check it against TensorFlow.

    python export/to_onnx.py --source=runs/demo --output=runs/demo/model.onnx
    python export/to_onnx.py --source=SAVED_MODEL --output=model_fp16.onnx --fp16 \
        --input_size=512x1024

--source: a model dir of scl_tf.train (its EMA teacher by default; --checkpoint and
--eval_weights choose others) or a SavedModel of export/to_saved_model.py.

The ONNX model takes `images` float32 RGB [B, H, W, 3] in [0, 255] (any B; any H, W unless
--input_size fixes them) and outputs `logits` float32 [B, H, W, C], `labels` int32 [B, H, W]
train ids and, for Cityscapes, `label_ids`; --onnx_probabilities adds `probabilities`. Class
names, palette, input convention and outputs are in its metadata_props.

After converting, ONNX Runtime and TensorFlow run on the same random images and
--parity_frames frames of --parity_dir; the verdict is printed and the model is written only
if it passes (fp32: max |delta probability| <= 1e-4 everywhere; fp16: labels equal
TensorFlow's on at least --min_fp16_agreement of the frames' pixels). Exit status 1 otherwise.

--int8 then quantizes the checked float32 model with ONNX Runtime (static, QDQ, per-channel
int8 weights, uint8 activations, ranges by --calibration_method; scl_tf/export/quantize.py),
calibrated on --calibration_count frames of --calibration (a folder or glob; unlabeled frames
do):

    python export/to_onnx.py --source=runs/demo --output=runs/demo/model_int8.onnx --int8 \
        --calibration=data/camvid_mini/train

and writes it only if its labels equal the float32 model's on at least --min_agreement of the
frames' pixels.
"""

import os
import sys

from absl import app, flags, logging

from scl_tf import config as config_lib
from scl_tf import flags as flags_lib
from scl_tf import runs


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the result
    import onnx
    import tf2onnx

    from scl_tf.export import agreement, calibration, convert, onnx_model, parity, quantize, serving

    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    try:
        config = flags_lib.export_config(flags.FLAGS)
        frames = parity.parity_frames(config.parity_dir, config.parity_frames)
        quantization = config.quantization
        calibration_frames = (
            calibration.calibration_frames(
                quantization.calibration, quantization.calibration_count, config.input_size
            )
            if config.int8
            else None
        )
        info = serving.source_info(config.source, config.eval_weights)
        convert.check_input_size(config.input_size, info.output_stride)
        model = serving.load_source(config.source, config.checkpoint, config.eval_weights)
    except (config_lib.ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    except runs.ModelError as error:
        sys.exit(f"error: --source: {error}")
    proto, report = convert.export_onnx(
        model,
        parity.parity_cases(config.input_size, frames),
        opset=config.opset,
        input_size=config.input_size,
        fp16=config.fp16,
        probabilities=config.onnx_probabilities,
    )
    if config.fp16:
        report = agreement.judge(
            report,
            config.input_size,
            config.min_fp16_agreement,
            "TensorFlow fp32",
            "fp16",
            "--min_fp16_agreement",
        )
    parity.exit_unless_passed(report, f"parity check failed; {config.output} not written")
    if config.int8:
        try:
            proto, report = quantize.export_int8(
                proto,
                calibration_frames,
                frames,
                quantization.min_agreement,
                quantization.calibration_method,
            )
        except config_lib.ConfigError as error:  # an unreadable calibration frame
            sys.exit(f"error: {error}")
        parity.exit_unless_passed(
            report, f"int8 agreement below --min_agreement; {config.output} not written"
        )
    folder = os.path.dirname(config.output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    onnx.save(proto, config.output)
    size = (
        "any size"
        if config.input_size is None
        else f"{config.input_size[0]}x{config.input_size[1]}"
    )
    print(
        f"wrote {config.output}: {model.info.backbone}, "
        f"{onnx_model.read_info(proto, config.output).precision}, "
        f"opset {config.opset}, {size}, outputs {', '.join(o.name for o in proto.graph.output)}"
    )


if __name__ == "__main__":
    flags_lib.define_to_onnx_flags()
    app.run(main)
