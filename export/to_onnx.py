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

After converting, ONNX Runtime and TensorFlow run on the same random images and --parity_dir
frames; the parity line is printed and the model is written only if it passes (fp32: max
|delta probability| <= 1e-4; fp16: argmax agreement >= 99.9%). Exit status 1 otherwise.
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

    from scl_tf.export import convert, parity, serving

    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    try:
        config = flags_lib.export_config(flags.FLAGS)
        frames = parity.parity_frames(config.parity_dir, config.parity_frames)
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
    print(report.line())
    if not report.passed:
        print(report.details())
        sys.exit(f"error: parity check failed; {config.output} not written")
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
        f"wrote {config.output}: {model.info.backbone}, {'fp16' if config.fp16 else 'fp32'}, "
        f"opset {config.opset}, {size}, outputs {', '.join(o.name for o in proto.graph.output)}"
    )


if __name__ == "__main__":
    flags_lib.define_to_onnx_flags()
    app.run(main)
