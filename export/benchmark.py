"""Latency of an exported model in ONNX Runtime, side by side with its TensorFlow SavedModel.

    python export/benchmark.py --model=model.onnx --saved_model=SAVED_MODEL \
        --size=512x1024 --batch=1 --iters=30 --output=benchmarks/bench_export.json
    python export/benchmark.py --model=model.onnx --provider=tensorrt --fp16 \
        --trt_engine_cache=/tmp/trt_cache      # on a GPU machine (onnxruntime-gpu)

Both runtimes get the same random float32 batch [--batch, H, W, 3], made once; session
creation, TensorRT engine builds and --warmup calls are not timed. ONNX Runtime runs through
IOBinding: the input is copied to the device once and outputs stay there, so no host copies
are timed on GPU providers. The SavedModel runs the signature with the ONNX model's outputs
(serving_logits: logits and labels; serving_default if the ONNX model has probabilities).
--models adds more exports timed in the same rounds, e.g. int8 beside fp32:

    python export/benchmark.py --model=model.onnx --size=360x480 \
        --models=model_int8.onnx,model.tflite,model_int8.tflite --output=bench.json

.onnx files run like --model; .tflite files run with LiteRT (ai-edge-litert) where installed,
else tf.lite (the record names which), one thread per CPU, input set once and outputs left in
the interpreter. The runtimes alternate call by call (ONNX Runtime's threads do not spin between
calls, or they would slow the runtime whose turn it is); a ratio is the median of the per-call
ratios. Prints latency p50/p90/p99 and images/s; --output adds the record to a JSON list
(replacing the record of the same model, provider, precision, batch and size).
"""

import os
import platform
import sys

from absl import app, flags

from scl_tf import (
    config,
    runs,
)
from scl_tf import flags as flags_lib
from scl_tf.export import bench, parity, runtime

FLAGS = flags.FLAGS


def open_session(options: runtime.RuntimeOptions):
    """The ONNX Runtime session of --model; converted to fp16 in memory for --fp16 off TensorRT."""
    session = runs.onnx_session(FLAGS.model, options)
    if FLAGS.fp16 and options.provider != "tensorrt":
        from scl_tf.export.onnx_model import fp16_model_bytes

        if runtime.model_info(session, FLAGS.model).precision == "int8":
            raise ValueError("--fp16: --model is an int8 model (float16 converts float32 ones)")
        session = runs.onnx_session(fp16_model_bytes(FLAGS.model), options)
    return session


def tensorflow_call(images, onnx_outputs):
    """(signature name, call) of --saved_model with the ONNX model's outputs."""
    from scl_tf.export import serving

    tf_model = serving.load_saved_model(FLAGS.saved_model)
    signature = (
        serving.SIGNATURE_FLOAT if "probabilities" in onnx_outputs else serving.SIGNATURE_LOGITS
    )
    return signature, serving.signature_runner(tf_model, signature, images)


def other_call(path: str, images, options: runtime.RuntimeOptions):
    """(call, its JSON record: runtime, precision, file size) of one of --models."""
    if path.endswith(".tflite"):
        from scl_tf.export import tflite

        interpreter = runs.tflite_interpreter(path, flag="--models")
        with open(path, "rb") as source:
            info = tflite.read_info(source.read(), path)
        call = tflite.bound_runner(interpreter, images)
        what = f"{runs.tflite_runtime()}, {os.cpu_count()} threads"
    elif path.endswith(".onnx"):
        session = runs.onnx_session(path, options, flag="--models")
        info = runtime.model_info(session, path)
        runtime.check_input_size(session, images.shape[1:3], "--size", path)
        call = runtime.BoundRunner(session, images, options)
        what = f"onnxruntime {session.get_providers()[0]}, IOBinding"
    else:
        raise ValueError(f"--models: {path} is neither an .onnx nor a .tflite file")
    precision = info.precision if info is not None else "unknown"
    return call, {
        "model": path,
        "runs": what,
        "precision": precision,
        "file_bytes": os.path.getsize(path),
    }


def print_table(record: dict) -> None:
    print(
        f"{record['backbone']} {record['size'][0]}x{record['size'][1]} batch "
        f"{record['batch']} {record['precision']} ({record['machine']})"
    )
    print(f"{'runtime':<28}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'images/s':>10}")
    for name in ("onnxruntime", "tensorflow"):
        if name in record:
            stats = record[name]
            print(
                f"{name + ' (' + stats['runs'] + ')':<28}{stats['p50_ms']:>10.1f}"
                f"{stats['p90_ms']:>10.1f}{stats['p99_ms']:>10.1f}{stats['images_per_s']:>10.2f}"
            )
    for other in record.get("models", []):
        print(
            f"{other['precision'] + ' ' + os.path.basename(other['model']):<28}"
            f"{other['p50_ms']:>10.1f}{other['p90_ms']:>10.1f}{other['p99_ms']:>10.1f}"
            f"{other['images_per_s']:>10.2f}  x{other['ratio_to_model']:.2f} ({other['runs']})"
        )
    if "ratio_onnxruntime_to_tensorflow" in record:
        print(f"ONNX Runtime / TensorFlow latency: {record['ratio_onnxruntime_to_tensorflow']:.2f}")


def main(argv):
    del argv
    import onnxruntime as ort

    if not FLAGS.model:
        sys.exit("error: --model: required (an .onnx file of export/to_onnx.py)")
    try:
        bench.check_counts(FLAGS.batch, FLAGS.iters, FLAGS.warmup)
        size = config.parse_size("size", FLAGS.size)
        options = runtime.RuntimeOptions(
            FLAGS.provider,
            FLAGS.device_id,
            FLAGS.cudnn_conv_algo_search,
            trt_fp16=FLAGS.fp16 and FLAGS.provider == "tensorrt",
            trt_engine_cache=FLAGS.trt_engine_cache,
            spinning=False,  # the runtimes take turns on the same cores
        )
        session = open_session(options)
        info = runtime.model_info(session, FLAGS.model)
        runtime.check_input_size(session, size, "--size", FLAGS.model)
    except (ValueError, FileNotFoundError, runtime.ProviderError) as error:
        sys.exit(f"error: {error}")
    images = parity.random_images(FLAGS.batch, size, seed=0)
    calls = {"onnxruntime": runtime.BoundRunner(session, images, options)}
    others = {}
    for path in FLAGS.models:
        try:
            calls[path], others[path] = other_call(path, images, options)
        except (ValueError, runtime.ProviderError) as error:  # ModelError is a ValueError
            sys.exit(f"error: {error}")
    signature = None
    if FLAGS.saved_model:
        try:
            signature, calls["tensorflow"] = tensorflow_call(images, info.outputs)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"error: --saved_model: {error}")
    load_start = os.getloadavg()
    times = bench.time_side_by_side(calls, FLAGS.iters, FLAGS.warmup)
    record = {
        "model": FLAGS.model,
        "backbone": info.backbone,
        "output_stride": info.output_stride,
        "num_classes": info.num_classes,
        "provider": FLAGS.provider,
        "precision": "fp16" if FLAGS.fp16 else info.precision,
        "onnx_input_size": "dynamic" if info.input_size is None else list(info.input_size),
        "batch": FLAGS.batch,
        "size": list(size),
        "iters": FLAGS.iters,
        "warmup": FLAGS.warmup,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_start_end": [load_start, os.getloadavg()],
        "onnxruntime": {
            "runs": f"{session.get_providers()[0]}, IOBinding",
            "version": ort.__version__,
            "outputs": list(info.outputs),
            **vars(bench.summarize(times["onnxruntime"], FLAGS.batch)),
        },
    }
    if signature is not None:
        import tensorflow as tf

        record["tensorflow"] = {
            "runs": f"SavedModel {signature}",
            "version": tf.__version__,
            "saved_model": FLAGS.saved_model,
            **vars(bench.summarize(times["tensorflow"], FLAGS.batch)),
        }
        record["ratio_onnxruntime_to_tensorflow"] = bench.paired_ratio(
            times["onnxruntime"], times["tensorflow"]
        )
    if others:
        record["models"] = [
            {
                **others[path],
                **vars(bench.summarize(times[path], FLAGS.batch)),
                "ratio_to_model": bench.paired_ratio(times[path], times["onnxruntime"]),
            }
            for path in others
        ]
    print_table(record)
    if FLAGS.output:
        bench.update_json(FLAGS.output, record)
        print(f"record added to {FLAGS.output}")


if __name__ == "__main__":
    flags_lib.define_benchmark_flags()
    app.run(main)
