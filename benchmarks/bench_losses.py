"""Time and memory of the losses at Cityscapes resolution, and exact SCL against a dense one.

    python benchmarks/bench_losses.py            # writes benchmarks/bench_losses.json

Every loss is measured forward + backward, compiled with XLA (`tf.function(jit_compile=True)`),
on batch 1 at --size (1024 x 2048), C = 19: the structured consistency loss in its three modes
(exact; pairs and pixels with --num-pairs), the consistency loss and the relaxed cross entropy
(w = 3). SCL and the consistency loss take softmax outputs and are differentiated w.r.t. them;
the cross entropy takes logits. The box masks are the visible masks of the last --scl-boxes of
--num-boxes CutMix boxes from `scl_tf.data.cutmix`.

Memory: each case runs in a fresh process, whose inputs are allocated first. TensorFlow keeps
the memory of a call for the next ones, so the growth of the process's peak RSS over the first
call (which also compiles) is what the step holds on to, plus the compiler's share; that share
is measured by running the same case at --tiny-size in another fresh process, and subtracted.
"peak extra" thus counts everything a call allocates (outputs, including the gradient, and
temporaries) and neither the inputs nor the compiler. As a cross-check that depends on no
allocator, the same forward + backward programs are compiled with JAX (KERAS_BACKEND=jax) and
XLA's own account of their temporaries + outputs is reported.

Comparisons, each timed alternately in one process so that the load of a shared machine
affects both sides alike: per round, each step is called once untimed (to find its own data in
the caches), then timed for a second (at least one call) and its median kept; the ratio is the
median of the per-round ratios:
- exact SCL against DeepLabV3+ ResNet-50 (output stride 8, `scl_tf.models.build_model`, in a
  `tf.function` graph without XLA: the fastest way to train it on CPU) forward + backward at
  --size, with the gradients of a cheap loss w.r.t. all trainable weights;
- exact SCL against a naive dense SCL at --dense-size: per box, the full pair matrices of its
  visible pixels as in Liu et al. (2019), one compiled call per box (the boxes' sizes differ).
  Their values and gradients are compared too, and their peak memory measured as above.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scl_tf.data.cutmix import cutmix_masks, sample_boxes  # noqa: E402
from scl_tf.losses import (  # noqa: E402
    consistency_loss,
    relaxed_cross_entropy,
    structured_consistency_loss,
)

NUM_CLASSES = 19  # Cityscapes
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LOSS_CASES = ("scl_exact", "scl_pairs", "scl_pixels", "consistency", "relaxed_ce")
MiB = 2**20


# ---------------------------------------------------------------------------------------------
# Inputs and steps (inside a case's process)


def make_inputs(height, width, args):
    """Softmax outputs, logits, labels and CutMix box masks for one image, all float32."""
    rng = np.random.default_rng(0)
    shape = (1, height, width, NUM_CLASSES)
    logits = tf.constant(2.0 * rng.standard_normal(shape, np.float32))
    teacher_logits = tf.constant(2.0 * rng.standard_normal(shape, np.float32))
    boxes = sample_boxes(tf.constant([1, 2]), height, width, args.num_boxes)
    _, box_masks = cutmix_masks(boxes, height, width, args.scl_boxes)
    return {
        "logits": logits,
        "student": tf.nn.softmax(logits),
        "teacher": tf.nn.softmax(teacher_logits),
        "labels": tf.constant(rng.integers(0, NUM_CLASSES, shape[:3]), tf.int32),
        "box_masks": box_masks[None],
    }


def loss_value(case, x, teacher, box_masks, labels, num_pairs):
    """The loss of `case` on its differentiated input `x` (probabilities, or logits for CE)."""
    if case == "relaxed_ce":
        return relaxed_cross_entropy(labels, x, window=3)
    if case == "consistency":
        return consistency_loss(x, teacher)
    mode = case.removeprefix("scl_")
    return structured_consistency_loss(x, teacher, box_masks, num_pairs, mode, seed=0)


def loss_arguments(case, inputs):
    """(x, teacher, box_masks, labels) for `loss_value`."""
    x = inputs["logits"] if case == "relaxed_ce" else inputs["student"]
    return x, inputs["teacher"], inputs["box_masks"], inputs["labels"]


def loss_step(case, inputs, num_pairs):
    """A compiled forward + backward of one loss: returns (loss, gradient w.r.t. its input).

    All inputs are arguments of the compiled function: captured tensors would be folded into
    it as constants.
    """

    @tf.function(jit_compile=True)
    def step(x, teacher, box_masks, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_value(case, x, teacher, box_masks, labels, num_pairs)
        return loss, tape.gradient(loss, x)

    arguments = loss_arguments(case, inputs)
    return lambda: step(*arguments)


def jax_xla_buffers(inputs, num_pairs):
    """{case: MiB}: temporaries + outputs of each loss's forward + backward XLA program.

    XLA's own account of the program compiled by JAX (KERAS_BACKEND=jax): exact, and
    independent of any allocator, but for JAX's XLA rather than TensorFlow's.
    """
    import jax

    buffers = {}
    for case in LOSS_CASES:
        arguments = [jax.numpy.asarray(t.numpy()) for t in loss_arguments(case, inputs)]
        step = jax.jit(
            jax.value_and_grad(
                lambda *arguments, case=case: loss_value(case, *arguments, num_pairs)
            )
        )
        analysis = step.lower(*arguments).compile().memory_analysis()
        total = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
        buffers[case] = round(total / MiB, 1)
    return buffers


def dense_box_steps(inputs):
    """Liu et al. (2019) style dense SCL: the pair matrices of each box, one call per box.

    Returns a step computing (loss, gradient w.r.t. the student) by summing per-box calls.
    """
    student, teacher = inputs["student"], inputs["teacher"]
    masks = inputs["box_masks"].numpy()[0]
    visible = [tf.constant(np.flatnonzero(mask), tf.int32) for mask in masks if mask.any()]

    @tf.function(jit_compile=True, reduce_retracing=False)
    def box_step(student, teacher, index):
        with tf.GradientTape() as tape:
            tape.watch(student)

            def unit_rows(probs):
                rows = tf.gather(tf.reshape(probs, (-1, NUM_CLASSES)), index)
                return rows / tf.norm(rows, axis=-1, keepdims=True)

            s, t = unit_rows(student), unit_rows(teacher)
            pairs = tf.matmul(s, s, transpose_b=True) - tf.matmul(t, t, transpose_b=True)
            loss = tf.reduce_mean(tf.square(pairs))
        return loss, tape.gradient(loss, student)

    def step():
        total, gradient = 0.0, tf.zeros_like(student)
        for index in visible:
            loss, box_gradient = box_step(student, teacher, index)
            total, gradient = total + loss, gradient + box_gradient
        return total, gradient

    return step


def model_step(height, width):
    """DeepLabV3+ ResNet-50 forward + backward; returns (step, description)."""
    try:
        from scl_tf.models import build_model
    except ImportError:
        model = plain_deeplabv3plus(height, width)
        description = (
            "plain DeepLabV3+ on keras.applications.ResNet50 (output stride 16, ASPP on "
            "conv4, low-level conv2), built in this script: scl_tf.models was not importable"
        )
    else:
        model = build_model("resnet50", num_classes=NUM_CLASSES, output_stride=8)
        description = 'scl_tf.models.build_model("resnet50", 19, output_stride=8)'
    images = tf.constant(
        np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)), tf.float32
    )

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(images, training=True)))
        return tape.gradient(loss, model.trainable_variables)

    return lambda: step(images), description


def plain_deeplabv3plus(height, width):
    """DeepLabV3+ (ASPP 6/12/18 + image pooling, 48-channel low-level decoder) on ResNet-50."""
    layers = keras.layers
    backbone = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(height, width, 3)
    )
    high = backbone.get_layer("conv4_block6_out").output
    low = backbone.get_layer("conv2_block3_out").output

    def conv(x, filters, size, rate=1):
        x = layers.Conv2D(filters, size, padding="same", dilation_rate=rate, use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization()(x))

    pooled = conv(layers.GlobalAveragePooling2D(keepdims=True)(high), 256, 1)
    pooled = layers.UpSampling2D((height // 16, width // 16))(pooled)
    branches = [conv(high, 256, 1), *(conv(high, 256, 3, rate) for rate in (6, 12, 18))]
    x = conv(layers.Concatenate()([*branches, pooled]), 256, 1)
    x = layers.UpSampling2D(4, interpolation="bilinear")(x)
    x = layers.Concatenate()([x, conv(low, 48, 1)])
    x = conv(conv(x, 256, 3), 256, 3)
    x = layers.Conv2D(NUM_CLASSES, 1)(x)
    return keras.Model(backbone.input, layers.UpSampling2D(4, interpolation="bilinear")(x))


# ---------------------------------------------------------------------------------------------
# Measuring (inside a case's process)


def rss_bytes(field):
    """VmRSS or VmHWM (peak) of this process, in bytes."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def finish(result):
    """Waits for a step's result (all of it, so that no work is left running)."""
    tf.nest.map_structure(lambda tensor: tensor.numpy(), result)


def measure(steps, rounds, round_s=1.0):
    """Peak memory of the first calls, then `rounds` rounds timing the steps alternately.

    TensorFlow keeps the memory of a call for the next ones, so the growth of the process
    during the first calls (which also compile) is the memory the steps hold on to. When there
    are several steps, each one's turn in a round starts with an untimed call, so that it meets
    its own data in the caches rather than the other step's, and times calls for `round_s`
    seconds (at least one), of which the round keeps the median.

    Returns ({name: [seconds per round, ...]}, peak extra bytes of the first calls).
    """
    baseline = rss_bytes("VmRSS")
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to now
    for step in steps.values():
        finish(step())
    peak_extra = rss_bytes("VmHWM") - baseline

    def timed(step):
        tic = time.perf_counter()
        finish(step())
        return time.perf_counter() - tic

    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            if len(steps) == 1:
                times[name].append(timed(step))
                continue
            finish(step())
            calls = [timed(step)]
            while sum(calls) < round_s:
                calls.append(timed(step))
            times[name].append(statistics.median(calls))
    return times, peak_extra


def run_case(case, args):
    """The measurements of one case, in this (fresh) process: a JSON-able dict."""
    at_dense_size = case in ("dense", "exact_at_dense_size", "dense_vs_exact")
    size = args.dense_size if at_dense_size else args.size
    inputs = make_inputs(*size, args)
    record = {"size": list(size)}
    if case == "jax_xla_buffers":
        record["xla_buffers_mib"] = jax_xla_buffers(inputs, args.num_pairs)
        return record
    exact = loss_step("scl_exact", inputs, args.num_pairs)
    if case in LOSS_CASES:
        steps = {case: loss_step(case, inputs, args.num_pairs)}
    elif case == "exact_at_dense_size":
        steps = {"scl_exact": exact}
    elif case == "dense":
        steps = {"dense": dense_box_steps(inputs)}
    elif case == "dense_vs_exact":
        steps = {"dense": dense_box_steps(inputs), "scl_exact": exact}
        (dense_loss, dense_grad), (exact_loss, exact_grad) = steps["dense"](), exact()
        record["loss_dense"] = float(dense_loss)
        record["loss_exact"] = float(exact_loss)
        record["loss_relative_difference"] = abs(float(exact_loss / dense_loss) - 1.0)
        record["gradient_max_abs_difference_over_max_abs"] = float(
            tf.reduce_max(tf.abs(exact_grad - dense_grad)) / tf.reduce_max(tf.abs(dense_grad))
        )
    elif case == "model_vs_exact":
        model, record["model"] = model_step(*size)
        steps = {"model": model, "scl_exact": exact}
    else:
        raise ValueError(f"unknown case {case!r}")
    if case.startswith("dense"):
        rounds = args.dense_rounds
    elif case == "model_vs_exact":
        rounds = args.model_rounds
    else:
        rounds = args.repeats
    times, peak_extra = measure(steps, rounds)
    record["times_s"] = {name: [round(t, 5) for t in seconds] for name, seconds in times.items()}
    record["median_s"] = {name: statistics.median(seconds) for name, seconds in times.items()}
    if len(steps) == 1:
        record["first_call_mib"] = round(peak_extra / MiB, 1)
    else:
        first, second = steps
        record["median_ratio"] = statistics.median(
            a / b for a, b in zip(times[first], times[second], strict=True)
        )
    return record


# ---------------------------------------------------------------------------------------------
# Orchestration


def run_in_subprocess(case, argv, backend="tensorflow"):
    command = [sys.executable, __file__, *argv, "--case", case]
    env = {**os.environ, "KERAS_BACKEND": backend}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def summarise(results):
    """Adds the memory ratio and the issue's targets (value, target, met) to `results`."""
    cases = results["cases"]
    comparison = cases["dense_vs_exact"]
    dense_memory = cases["dense"]["peak_extra_mib"]
    exact_memory = cases["exact_at_dense_size"]["peak_extra_mib"]
    results["dense_vs_exact_memory_ratio"] = dense_memory / exact_memory if exact_memory else None
    speedup = comparison["median_ratio"]
    difference = comparison["loss_relative_difference"]
    memory = cases["scl_exact"]["peak_extra_mib"]
    targets = {
        "exact_vs_dense_speedup": (speedup, ">= 100", speedup >= 100),
        "exact_vs_dense_loss_relative_difference": (difference, "<= 1e-5", difference <= 1e-5),
        "exact_extra_memory_mib": (memory, "< 256", memory < 256),
    }
    if "model_vs_exact" in cases:
        share = 1.0 / cases["model_vs_exact"]["median_ratio"]
        targets["exact_share_of_model_step"] = (share, "<= 0.02", share <= 0.02)
    results["targets"] = {
        name: {"value": value, "target": target, "met": met}
        for name, (value, target, met) in targets.items()
    }


def print_table(results):
    cases = results["cases"]
    height, width = results["settings"]["size"]
    print(f"\nForward + backward, XLA, batch 1, {height}x{width}, C={NUM_CLASSES}:\n")
    print(
        "| loss | time (ms) | peak extra memory (MiB) | first call, with compiler (MiB) "
        "| XLA buffers under JAX (MiB) |"
    )
    print("|---|---:|---:|---:|---:|")
    for case in LOSS_CASES:
        record = cases[case]
        time_ms = record["median_s"][case] * 1e3
        print(
            f"| {case} | {time_ms:.0f} | {record['peak_extra_mib']:.0f} | "
            f"{record['first_call_mib']:.0f} | {results['jax_xla_buffers_mib'][case]:.0f} |"
        )
    dense, exact = cases["dense"], cases["exact_at_dense_size"]
    comparison = cases["dense_vs_exact"]
    dense_h, dense_w = comparison["size"]
    print(f"\nDense (pair matrix per box) vs exact at {dense_h}x{dense_w}:")
    print(
        f"  time: dense {comparison['median_s']['dense']:.2f} s, exact "
        f"{comparison['median_s']['scl_exact'] * 1e3:.0f} ms, ratio "
        f"{comparison['median_ratio']:.0f}x"
    )
    ratio = results["dense_vs_exact_memory_ratio"]
    print(
        f"  memory: dense {dense['peak_extra_mib']:.0f} MiB, exact {exact['peak_extra_mib']:.0f}"
        f" MiB, ratio " + (f"{ratio:.0f}x" if ratio else "n/a")
    )
    print(
        f"  loss relative difference {comparison['loss_relative_difference']:.1e}, gradient "
        f"max |difference| / max |gradient| "
        f"{comparison['gradient_max_abs_difference_over_max_abs']:.1e}"
    )
    if "model_vs_exact" in cases:
        model = cases["model_vs_exact"]
        print(
            f"\n{model['model']} forward+backward: {model['median_s']['model']:.1f} s; exact SCL"
            f" {model['median_s']['scl_exact'] * 1e3:.0f} ms in the same rounds"
        )
    print("\nTargets:")
    for name, target in results["targets"].items():
        print(
            f"  {name}: {target['value']:.4g} (target {target['target']}): "
            f"{'met' if target['met'] else 'NOT met'}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), metavar=("H", "W"))
    parser.add_argument(
        "--dense-size",
        type=int,
        nargs=2,
        default=(512, 1024),
        metavar=("H", "W"),
        help="where the dense SCL is compared with the exact one (it must fit in memory)",
    )
    parser.add_argument(
        "--tiny-size",
        type=int,
        nargs=2,
        default=(64, 128),
        metavar=("H", "W"),
        help="where the compiler's share of a case's memory is measured",
    )
    parser.add_argument("--num-boxes", type=int, default=32, help="CutMix boxes N")
    parser.add_argument("--scl-boxes", type=int, default=16, help="boxes scored by SCL, Nbox")
    parser.add_argument("--num-pairs", type=int, default=9000, help="Npair of the sampled modes")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per loss")
    parser.add_argument("--dense-rounds", type=int, default=3)
    parser.add_argument("--model-rounds", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true", help="no DeepLabV3+ comparison")
    parser.add_argument(
        "--output", type=pathlib.Path, default=REPO_ROOT / "benchmarks" / "bench_losses.json"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: measure one case
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return

    argv = sys.argv[1:]
    results = {
        "command": " ".join(["python benchmarks/bench_losses.py", *argv]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "case")},
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "load_average_start": os.getloadavg(),
        },
        "memory_method": (
            "fresh process per case, inputs allocated first; peak RSS (VmHWM, reset through "
            "/proc/self/clear_refs) over the first call minus RSS before it "
            "(first_call_mib), less the same at --tiny-size (compiler_mib): peak_extra_mib"
        ),
        "cases": {},
    }
    cases = [*LOSS_CASES, "exact_at_dense_size", "dense", "dense_vs_exact"]
    if not args.skip_model:
        cases.append("model_vs_exact")
    tiny = [str(side) for side in args.tiny_size]
    tiny_argv = [*argv, "--size", *tiny, "--dense-size", *tiny, "--repeats", "1"]
    for case in cases:
        print(f"{case} ...", flush=True)
        record = results["cases"][case] = run_in_subprocess(case, argv)
        if "first_call_mib" in record:
            compiler = run_in_subprocess(case, [*tiny_argv, "--dense-rounds", "1"])
            record["compiler_mib"] = compiler["first_call_mib"]
            record["peak_extra_mib"] = record["first_call_mib"] - record["compiler_mib"]
        print(f"  {record['median_s']}", flush=True)
    print("XLA buffers under JAX ...", flush=True)
    results["jax_xla_buffers_mib"] = run_in_subprocess("jax_xla_buffers", argv, "jax")[
        "xla_buffers_mib"
    ]
    results["machine"]["load_average_end"] = os.getloadavg()
    summarise(results)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
