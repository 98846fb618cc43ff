"""Parameters, FLOPs and CPU latency of the segmentation models, beside keras-hub's DeepLabV3+.

    python benchmarks/bench_models.py            # writes benchmarks/bench_models.json

Per model: parameters; FLOPs of one forward pass at --flops-size (TensorFlow profiler on the
traced inference graph, multiplies and adds counted separately; checked on a single
convolution first); median wall time of a forward pass (inference mode) and of forward +
backward (training mode, gradients of the mean squared output w.r.t. all trainable weights;
the loss is the same cheap one for every model) at --size, batch 1, in `tf.function` graphs
(no XLA), after one warm-up call each.

keras-hub's DeepLabV3Plus (DeepLabV3Backbone + DeepLabV3ImageSegmenter on a ResNet-50
ResNetBackbone built from config: nothing is downloaded) has no dilated backbone: its output
stride is set by the pyramid level its ASPP reads, P5 (32) or P4 (16; P4 leaves conv5 out).
Our ResNet-50 model runs at the same output strides, with the paper's head and with keras-hub's
lighter one (one 1x1 decoder convolution instead of two 3x3), and the backbones alone are
compared at output stride 32 too; at 32 the keras-hub-headed model is the same architecture as
keras-hub's. The models of a comparison are timed alternately, call by call, and
their ratio is the median over rounds of the per-round ratio, so that the load of a shared
machine affects both sides of a ratio alike.

The two mobile backbones, MobileNetV2 and EfficientNet-Lite0, are compared the same way, side
by side at --output-stride (with the paper's head and with keras-hub's):
    python benchmarks/bench_models.py --groups mobile --output benchmarks/bench_models_mobile.json
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import time

__import__("scl_tf")  # first: TensorFlow then starts without its C++ lines (scl_tf/__init__.py)

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from scl_tf.models import build_model  # noqa: E402

NUM_CLASSES = 19  # Cityscapes
# keras-hub's DeepLabV3Plus head: one 1x1 convolution after the decoder's concatenation (the
# paper's DeepLabV3+ has two 3x3). keras-hub then upsamples its 256 channels and classifies at
# full resolution; we classify at stride 4 and upsample the logits: the same function (a 1x1
# convolution commutes with bilinear resizing), with less work.
KERAS_HUB_HEAD = {"decoder_convs": 1, "decoder_kernel_size": 1}
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def keras_hub_resnet50():
    """keras-hub's ResNet-50 v1 (`resnet_50_imagenet` architecture, stride on the 3x3 conv)."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        use_pre_activation=False,
    )


def keras_hub_deeplabv3plus(output_stride):
    """keras-hub DeepLabV3+ on ResNet-50 at output stride 16 (ASPP on P4) or 32 (on P5)."""
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=keras_hub_resnet50(),
        spatial_pyramid_pooling_key={16: "P4", 32: "P5"}[output_stride],
        upsampling_size=output_stride // 4,
        dilation_rates=[rate * 16 // output_stride for rate in (6, 12, 18)],
        low_level_feature_key="P2",
        projection_filters=48,
    )
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=NUM_CLASSES)


def our_resnet50_backbone():
    """Our undilated ResNet-50 feature extractor, up to its stride-32 output."""
    backbone = build_model("resnet50", NUM_CLASSES, output_stride=32).get_layer("backbone")
    return keras.Model(backbone.input, backbone.outputs[1])


def count_flops(model, height, width):
    """FLOPs of one inference forward pass on a [1, height, width, 3] input (TF profiler)."""
    forward = tf.function(lambda images: model(images, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec([1, height, width, 3])).graph
    # An op whose shape the profiler cannot infer counts 0 FLOPs: refuse to under-count.
    for op in graph.get_operations():
        if op.type.startswith(("Conv2D", "DepthwiseConv2d")) and not all(
            output.shape.is_fully_defined() for output in op.outputs
        ):
            raise RuntimeError(f"{model.name}: {op.name} has an unknown shape; FLOPs incomplete")
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def check_flop_counter():
    """The profiler counts a 3x3 convolution as 2 * outputs * 3 * 3 * input channels."""
    inputs = keras.Input((10, 12, 3))
    conv = keras.Model(inputs, keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs))
    expected = 2 * (10 * 12 * 16) * (3 * 3 * 3)
    counted = count_flops(conv, 10, 12)
    if counted != expected:
        raise RuntimeError(f"FLOP counter gives {counted} for a conv of {expected} FLOPs")


def timed_steps(model, height, width):
    """(forward, forward + backward) callables on a fixed random image, traced once."""
    images = tf.constant(
        np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)), tf.float32
    )

    @tf.function
    def forward():
        return model(images, training=False)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(images, training=True)))
        # keras-hub's P4 model keeps conv5's unused weights: their gradient is None.
        return [g for g in tape.gradient(loss, model.trainable_variables) if g is not None]

    return forward, forward_backward


def median_times(steps, repeats, budget_s):
    """Alternates the calls in `steps` ({name: fn}); {name: [seconds, ...]}.

    One warm-up call each (tracing), then rounds until `repeats` rounds or, after at least 3,
    until `budget_s` seconds have been spent.
    """

    def run(step):
        tf.nest.map_structure(lambda tensor: tensor.numpy(), step())  # waits for the result

    for step in steps.values():
        run(step)
    times = {name: [] for name in steps}
    start = time.perf_counter()
    for round_ in range(1, repeats + 1):
        for name, step in steps.items():
            tic = time.perf_counter()
            run(step)
            times[name].append(time.perf_counter() - tic)
        if round_ >= 3 and time.perf_counter() - start > budget_s:
            break
    return times


def measure_group(builders, args):
    """Builds and measures models side by side: {label: record}."""
    models = {label: build() for label, build in builders.items()}
    steps, records = {}, {}
    for label, model in models.items():
        forward, forward_backward = timed_steps(model, *args.size)
        steps[(label, "forward")] = forward
        steps[(label, "forward_backward")] = forward_backward
        gflops = count_flops(model, *args.flops_size) / 1e9
        records[label] = {
            "parameters": model.count_params(),
            f"gflops_{args.flops_size[0]}x{args.flops_size[1]}": round(gflops, 1),
        }
        print(f"  {label}: {records[label]}", flush=True)
    for mode in ("forward", "forward_backward"):
        times = median_times(
            {label: steps[(label, mode)] for label in models}, args.repeats, args.budget_s
        )
        for label, seconds in times.items():
            records[label][f"{mode}_s"] = round(statistics.median(seconds), 3)
            records[label][f"{mode}_all_s"] = [round(t, 4) for t in seconds]
        print(f"  {mode}: {times}", flush=True)
    keras.backend.clear_session()
    return records


def per_round_ratios(ours, theirs):
    """{mode: median over rounds of ours / theirs}: both ran under the same load in a round."""
    return {
        mode: round(
            statistics.median(
                a / b for a, b in zip(ours[f"{mode}_all_s"], theirs[f"{mode}_all_s"], strict=True)
            ),
            3,
        )
        for mode in ("forward", "forward_backward")
    }


def print_table(results, args):
    flops_key = f"gflops_{args.flops_size[0]}x{args.flops_size[1]}"
    print(
        f"\n| model | params (M) | GFLOPs {args.flops_size[0]}x{args.flops_size[1]} | "
        f"forward (s) | forward+backward (s) |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, r in results["models"].items():
        print(
            f"| {label} | {r['parameters'] / 1e6:.1f} | {r[flops_key]:,.0f} | "
            f"{r['forward_s']:.2f} | {r['forward_backward_s']:.2f} |"
        )
    for key, other in (
        ("ratios_vs_keras_hub", "keras-hub"),
        ("ratios_vs_mobilenetv2", "MobileNetV2"),
    ):
        for label, ratio in results[key].items():
            print(
                f"{label} / {other}: forward {ratio['forward']:.2f}, "
                f"forward+backward {ratio['forward_backward']:.2f}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    parser.add_argument("--flops-size", type=int, nargs=2, default=(1024, 2048), metavar=("H", "W"))
    parser.add_argument(
        "--backbones", nargs="+", default=["mobilenetv2", "resnet50", "resnet101", "wrn38"]
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        default=8,
        help="output stride of the per-backbone rows (paper: 8)",
    )
    parser.add_argument(
        "--compare-strides",
        type=int,
        nargs="*",
        default=[32, 16],
        help="output strides at which ResNet-50 is compared with keras-hub",
    )
    parser.add_argument(
        "--groups",
        nargs="+",
        default=["keras-hub", "backbones"],
        choices=["keras-hub", "backbones", "mobile"],
        help="keras-hub: ResNet-50 against keras-hub's; backbones: each of --backbones alone; "
        "mobile: EfficientNet-Lite0 beside MobileNetV2",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=120.0,
        help="stop repeating a measurement after this long (>= 3 repeats)",
    )
    parser.add_argument(
        "--output", type=pathlib.Path, default=REPO_ROOT / "benchmarks" / "bench_models.json"
    )
    args = parser.parse_args()

    check_flop_counter()
    results = {
        "command": " ".join(["python benchmarks/bench_models.py", *sys.argv[1:]]),
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "output"},
            "batch": 1,
            "num_classes": NUM_CLASSES,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_hub": keras_hub.__version__,
            "load_average_start": os.getloadavg(),
        },
        "models": {},
        "ratios_vs_keras_hub": {},
        "ratios_vs_mobilenetv2": {},
    }
    if "mobile" in args.groups:
        for head, extra in (("", {}), (", keras-hub's head", KERAS_HUB_HEAD)):
            builders = {
                f"ours {backbone} OS{args.output_stride}{head}": functools.partial(
                    build_model, backbone, NUM_CLASSES, args.output_stride, **extra
                )
                for backbone in ("efficientnet_lite0", "mobilenetv2")
            }
            print(f"mobile backbones{head}", flush=True)
            records = measure_group(builders, args)
            results["models"].update(records)
            lite0, mobilenet = records
            results["ratios_vs_mobilenetv2"][lite0] = per_round_ratios(
                records[lite0], records[mobilenet]
            )
    comparisons = {}
    if "keras-hub" in args.groups:
        comparisons["backbone OS32"] = {
            "ours resnet50 backbone OS32": our_resnet50_backbone,
            "keras-hub resnet50 backbone": keras_hub_resnet50,
        }
    for output_stride in args.compare_strides if "keras-hub" in args.groups else ():
        paper_head = functools.partial(build_model, "resnet50", NUM_CLASSES, output_stride)
        comparisons[f"OS{output_stride}"] = {
            f"ours resnet50 OS{output_stride}": paper_head,
            f"ours resnet50 OS{output_stride}, keras-hub's head": functools.partial(
                paper_head, **KERAS_HUB_HEAD
            ),
            f"keras-hub resnet50 OS{output_stride}": functools.partial(
                keras_hub_deeplabv3plus, output_stride
            ),
        }
    for title, builders in comparisons.items():
        print(title, flush=True)
        records = measure_group(builders, args)
        results["models"].update(records)
        *ours, theirs = records
        for label in ours:
            ratios = per_round_ratios(records[label], records[theirs])
            results["ratios_vs_keras_hub"][label] = ratios
    for backbone in args.backbones if "backbones" in args.groups else ():
        label = f"ours {backbone} OS{args.output_stride}"
        print(label, flush=True)
        builder = functools.partial(build_model, backbone, NUM_CLASSES, args.output_stride)
        results["models"].update(measure_group({label: builder}, args))
    results["machine"]["load_average_end"] = os.getloadavg()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, args)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
