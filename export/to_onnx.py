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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from scl_tf import config  # noqa: E402

FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the result
    import onnx
    import tf2onnx

    from scl_tf.export import convert, parity, serving

    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    for flag in ("source", "output"):
        if not getattr(FLAGS, flag):
            sys.exit(f"error: --{flag}: required")
    eval_weights = FLAGS.eval_weights if FLAGS["eval_weights"].present else None
    try:
        convert.check_opset(FLAGS.opset)
        if FLAGS.parity_frames < 0:
            raise config.ConfigError(f"--parity_frames: must be >= 0, got {FLAGS.parity_frames}")
        frames = parity.parity_frames(FLAGS.parity_dir, FLAGS.parity_frames)
    except (config.ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    try:
        info = serving.source_info(FLAGS.source, eval_weights)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: --source: {error}")
    try:
        input_size = convert.parse_input_size(FLAGS.input_size, info.output_stride)
    except config.ConfigError as error:
        sys.exit(f"error: {error}")
    try:
        model = serving.load_source(FLAGS.source, FLAGS.checkpoint, eval_weights)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: --source: {error}")
    proto, report = convert.export_onnx(
        model,
        parity.parity_cases(input_size, frames),
        opset=FLAGS.opset,
        input_size=input_size,
        fp16=FLAGS.fp16,
        probabilities=FLAGS.onnx_probabilities,
    )
    print(report.line())
    if not report.passed:
        print(report.details())
        sys.exit(f"error: parity check failed; {FLAGS.output} not written")
    folder = os.path.dirname(FLAGS.output)
    if folder:
        os.makedirs(folder, exist_ok=True)
    onnx.save(proto, FLAGS.output)
    size = "any size" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    print(
        f"wrote {FLAGS.output}: {model.info.backbone}, {'fp16' if FLAGS.fp16 else 'fp32'}, "
        f"opset {FLAGS.opset}, {size}, outputs {', '.join(o.name for o in proto.graph.output)}"
    )


if __name__ == "__main__":
    app.run(main)
