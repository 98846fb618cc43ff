"""Segment one image with an exported ONNX model in ONNX Runtime and write its overlay.

    python export/predict_onnx.py --model=runs/demo/model.onnx \
        --image=data/camvid_mini/val/0016E5_07959.png --output=runs/demo/onnx_overlay.png

Needs onnxruntime, NumPy and Pillow only (no TensorFlow): the palette and class names come from
the model's metadata.
"""

import sys
import time

from absl import app, flags

from scl_tf import flags as flags_lib
from scl_tf import runs
from scl_tf.eval import overlay
from scl_tf.export import images, runtime

FLAGS = flags.FLAGS


def main(argv):
    del argv
    for flag in ("model", "image", "output"):
        if not getattr(FLAGS, flag):
            sys.exit(f"error: --{flag}: required")
    try:
        options = runtime.RuntimeOptions(
            FLAGS.provider, FLAGS.device_id, FLAGS.cudnn_conv_algo_search
        )
        session = runs.onnx_session(FLAGS.model, options)
        info = runtime.model_info(session, FLAGS.model)
        image = images.read_image(FLAGS.image)
        runtime.check_input_size(session, image.shape[:2], "--image", FLAGS.model)
    except (ValueError, FileNotFoundError, runtime.ProviderError) as error:
        sys.exit(f"error: {error}")
    start = time.perf_counter()
    labels = runtime.run(session, image[None].astype("float32"))["labels"][0]
    elapsed_ms = 1000 * (time.perf_counter() - start)
    picture = overlay.add_legend(
        overlay.blend(image, labels, info.palette), labels, info.class_names, info.palette
    )
    images.write_image(FLAGS.output, picture)
    print(
        f"{FLAGS.image} ({image.shape[0]}x{image.shape[1]}) segmented with onnxruntime "
        f"({session.get_providers()[0]}) in {elapsed_ms:.0f} ms: "
        f"{images.class_shares(labels, info.class_names)}"
    )
    print(f"overlay written to {FLAGS.output}")


if __name__ == "__main__":
    flags_lib.define_predict_onnx_flags()
    app.run(main)
