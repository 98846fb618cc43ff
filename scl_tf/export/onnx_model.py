"""Edits of a converted ONNX model: clean-up, float16, dimension names and metadata (no TF)."""

from __future__ import annotations

import dataclasses

import onnx

from scl_tf.export.metadata import ExportInfo, from_onnx_props, to_onnx_props

# Names of the dynamic dimensions, by rank of the input / output: [B, H, W, 3], [B, H, W, C],
# [B, H, W].
_DIM_NAMES = ("batch", "height", "width")
_RESIZE_SIZES_INPUT = 3


def drop_resize_placeholders(model: onnx.ModelProto) -> onnx.ModelProto:
    """Removes the empty `roi` and `scales` inputs of Resize nodes that are given `sizes`.

    tf2onnx feeds them an empty constant. The float16 converter casts `scales`, after which
    ONNX Runtime no longer sees it as empty and rejects the node ("Either `sizes` or `scales`
    must be provided, but not both"); an omitted optional input (name "", opset >= 13) is
    unambiguous. Edits `model` in place and returns it.
    """
    for node in model.graph.node:
        if (
            node.op_type == "Resize"
            and len(node.input) > _RESIZE_SIZES_INPUT
            and node.input[_RESIZE_SIZES_INPUT]
        ):
            node.input[1] = ""
            node.input[2] = ""
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    return model


def name_dynamic_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """Names the unknown leading dims of inputs and outputs batch, height, width (in place)."""
    for value in list(model.graph.input) + list(model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, _DIM_NAMES):
            if not dim.HasField("dim_value"):
                dim.dim_param = name
    return model


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of `model`; inputs and outputs stay float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return convert_float_to_float16(drop_resize_placeholders(copy), keep_io_types=True)


def set_metadata(model: onnx.ModelProto, info: ExportInfo) -> onnx.ModelProto:
    """Stores `info` (and readable input/output conventions) as metadata_props, in place."""
    onnx.helper.set_model_props(model, to_onnx_props(info))
    model.doc_string = (
        f"DeepLabV3+ {info.backbone} ({info.weights} weights), "
        f"{info.num_classes} {info.dataset} classes, exported by scl_tf"
    )
    return model


def output_names(model: onnx.ModelProto) -> tuple[str, ...]:
    return tuple(output.name for output in model.graph.output)


def read_info(model: onnx.ModelProto, source: str) -> ExportInfo:
    """The ExportInfo stored by `set_metadata`; ValueError naming `source` if there is none."""
    return from_onnx_props({prop.key: prop.value for prop in model.metadata_props}, source)


def fp16_model_bytes(path: str) -> bytes:
    """The serialized float16 version of an exported .onnx file (unchanged if already fp16).

    Raises:
      FileNotFoundError: naming --model, when `path` does not exist.
    """
    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"--model: no such ONNX file: {path}") from None
    info = read_info(model, path)
    if info.precision != "fp16":
        model = set_metadata(to_fp16(model), dataclasses.replace(info, precision="fp16"))
    return model.SerializeToString()
