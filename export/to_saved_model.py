"""Export a trained model (the EMA teacher by default) as a TensorFlow SavedModel.

    python export/to_saved_model.py --model_dir=runs/demo --output=runs/demo/saved_model
    python export/to_saved_model.py --untrained --backbone=resnet50 --dataset=cityscapes \
        --output=/tmp/resnet50_saved_model          # random weights, for latency benchmarks

Signatures (images RGB [B, H, W, 3] in [0, 255], any B, H, W): serving_default (float32) and
serving_uint8 -> probabilities, labels (train ids) and, for Cityscapes, label_ids; and
serving_logits (float32) -> logits, labels (, label_ids), the graph export/to_onnx.py converts.
Class names, palette and conventions: OUTPUT/assets.extra/scl_tf.json.
"""

import sys

from absl import app, flags, logging

from scl_tf import flags as flags_lib
from scl_tf import runs

FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the result
    from scl_tf.export import serving

    if not FLAGS.output:
        sys.exit("error: --output: required (the SavedModel folder to write)")
    if FLAGS.untrained:
        if not FLAGS.dataset:
            sys.exit("error: --dataset: required with --untrained")
        try:
            model, info = serving.untrained_model(
                FLAGS.backbone, FLAGS.output_stride, FLAGS.dataset, FLAGS.num_classes
            )
        except ValueError as error:
            sys.exit(f"error: {error}")
    elif not FLAGS.model_dir:
        sys.exit("error: --model_dir: required (or --untrained)")
    else:
        try:
            model, info = serving.run_model(
                FLAGS.model_dir, FLAGS.checkpoint, flags_lib.explicit_eval_weights(FLAGS)
            )
        except runs.ModelError as error:
            sys.exit(f"error: --model_dir: {error}")
    served = serving.save_saved_model(model, info, FLAGS.output)
    print(
        f"wrote {FLAGS.output}: DeepLabV3+ {info.backbone} ({info.weights} weights), "
        f"{info.num_classes} {info.dataset} classes; signatures "
        f"{', '.join(served.signatures)}; outputs {', '.join(served.info.outputs)}"
    )


if __name__ == "__main__":
    flags_lib.define_to_saved_model_flags()
    app.run(main)
