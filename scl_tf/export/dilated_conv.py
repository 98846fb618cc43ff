"""A tf2onnx rewriter: dilated "same" convolutions of dynamic-size inputs as native ONNX Conv.

TensorFlow runs a dilated convolution as SpaceToBatchND -> Conv2D (or DepthwiseConv2dNative,
"VALID") -> BatchToSpaceND. tf2onnx folds that back into one dilated Conv when the paddings are
constants (a static input size) or amount to "VALID"; with "SAME" padding and a dynamic size
the paddings are computed from the input's shape, tf2onnx leaves the pattern as it is, and ONNX
Runtime pays for it (space-to-depth, transposes and layout reorders around every dilated
convolution: 20% of a MobileNetV2 DeepLabV3+ at output stride 16 on CPU).

At stride 1 the "SAME" padding of a k-tap kernel dilated by r is (k - 1) r in total, split
(total // 2, total - total // 2), whatever the input size; the rest of the computed padding
only rounds the padded size up to a multiple of the block, and BatchToSpaceND crops it off
again. So such a convolution is exactly a Conv with those explicit pads and dilations r.
"""

from __future__ import annotations

from tf2onnx.graph_matcher import GraphMatcher, OpTypePattern

_CONSTANT = "Const|ConstV2"
_PATTERN = OpTypePattern(
    "BatchToSpaceND",
    name="batch_to_space",
    inputs=[
        OpTypePattern(
            "DepthwiseConv2dNative|Conv2D",
            name="conv",
            inputs=[
                OpTypePattern(
                    "SpaceToBatchND",
                    name="space_to_batch",
                    inputs=[OpTypePattern("*"), OpTypePattern(_CONSTANT), OpTypePattern("*")],
                ),
                OpTypePattern("*"),
            ],
        ),
        OpTypePattern(_CONSTANT),
        OpTypePattern("*"),
    ],
)
# Ops through which TensorFlow assembles the [spatial, 2] paddings from their parts.
_ASSEMBLY_OPS = {"Concat", "ConcatV2", "Pack", "StridedSlice", "ExpandDims", "Identity"}


def same_pads(kernel_size: int, dilation: int) -> tuple[int, int]:
    """(before, after) "SAME" padding of a stride-1 kernel of `kernel_size` taps dilated by
    `dilation`."""
    total = (kernel_size - 1) * dilation
    return total // 2, total - total // 2


def _computed_end_pads(paddings):
    """The constant base of the computed end paddings, `base + FloorMod(...)`, or None when
    `paddings` is not assembled that way."""
    node = paddings
    while node.type in _ASSEMBLY_OPS:
        computed = [source for source in node.inputs if not source.is_const()]
        if not computed:
            return None
        node = computed[0]
    if node.type not in ("Add", "AddV2"):
        return None
    first, second = node.inputs
    base = second if first.type == "FloorMod" else first if second.type == "FloorMod" else None
    if base is None or not base.is_const():
        return None
    return [int(value) for value in base.get_tensor_value(as_list=False).reshape(-1)]


def _dilations_and_pads(graph, match) -> tuple[list[int], list[int]] | None:
    """(NHWC dilations [4], NHWC explicit paddings [8]) of the matched convolution, or None when
    the pattern is not a stride-1 "SAME" dilated convolution with a known kernel size."""
    space_to_batch = match.get_op("space_to_batch")
    conv = match.get_op("conv")
    blocks = space_to_batch.inputs[1].get_tensor_value(as_list=True)
    if blocks != match.get_op("batch_to_space").inputs[1].get_tensor_value(as_list=True):
        return None
    if (
        conv.get_attr_value("data_format", b"NHWC") != b"NHWC"
        or conv.get_attr_value("padding") != b"VALID"
        or any(stride != 1 for stride in conv.get_attr_value("strides"))
    ):
        return None
    kernel_shape = graph.get_shape(conv.input[1])
    if kernel_shape is None or len(blocks) != 2 or any(size <= 0 for size in kernel_shape[:2]):
        return None
    pads = [same_pads(size, block) for size, block in zip(kernel_shape[:2], blocks)]
    if space_to_batch.inputs[2].is_const() or _computed_end_pads(space_to_batch.inputs[2]) != [
        end for _, end in pads
    ]:
        return None
    return [1, *blocks, 1], [0, 0, *pads[0], *pads[1], 0, 0]


def rewrite_dynamic_same_dilations(graph, ops):
    """tf2onnx custom rewriter: SpaceToBatchND -> conv -> BatchToSpaceND of a dynamic-size
    "SAME" dilated convolution becomes the convolution itself, dilated with explicit pads."""
    for match in list(GraphMatcher(_PATTERN, allow_reorder=False).match_ops(ops)):
        found = _dilations_and_pads(graph, match)
        if found is None:
            continue
        dilations, pads = found
        space_to_batch, conv = match.get_op("space_to_batch"), match.get_op("conv")
        batch_to_space = match.get_op("batch_to_space")
        graph.replace_inputs(conv, [space_to_batch.input[0], conv.input[1]])
        graph.copy_shape(batch_to_space.output[0], conv.output[0])
        graph.replace_all_inputs(batch_to_space.output[0], conv.output[0])
        conv.set_attr("dilations", dilations)
        conv.set_attr("padding", "EXPLICIT")
        conv.set_attr("explicit_paddings", pads)
    return graph.get_nodes()
