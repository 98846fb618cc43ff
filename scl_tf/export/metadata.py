"""What an exported model is: its classes, colours, input convention and outputs.

One `ExportInfo` travels with every export: as `assets.extra/scl_tf.json` in a SavedModel and
as `metadata_props` (one key per field, JSON values) in an ONNX model, so a deployment reads
class names, palette and conventions from the model file itself.
"""

from __future__ import annotations

import dataclasses
import json

from scl_tf.data import labels as labels_lib

INPUT_CONVENTION = (
    "images: RGB [batch, height, width, 3] with values in [0, 255], float32 (the "
    "SavedModel's serving_uint8 signature takes uint8); the ImageNet "
    "normalisation is inside the model"
)
OUTPUT_DOCS = {
    "logits": "float32 [batch, height, width, C]; softmax over the last axis gives the "
    "probabilities",
    "probabilities": "float32 [batch, height, width, C]: softmax of the logits",
    "labels": "int32 [batch, height, width]: train ids 0..C-1 (argmax of the logits)",
    "label_ids": "int32 [batch, height, width]: Cityscapes labelIds of the predicted train ids",
}
PRECISIONS = ("fp32", "fp16", "int8")
WEIGHTS = ("ema", "student", "untrained")
# Extra ONNX metadata keys, for people reading the model (e.g. in Netron); not parsed back.
INPUT_KEY = "input"
OUTPUTS_DOC_KEY = "outputs_doc"


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """Description of an exported segmentation model.

    Attributes:
      dataset: "cityscapes", "camvid" or "folder".
      backbone: DeepLabV3+ backbone, e.g. "mobilenetv2".
      output_stride: input size / size of the backbone's last feature map.
      class_names: C names, indexed by train id.
      palette: C (r, g, b) colours, indexed by train id.
      label_ids: C dataset label values of the train ids (Cityscapes labelIds), or None.
      weights: "ema" (the teacher), "student" or "untrained".
      outputs: names of the model's outputs, keys of OUTPUT_DOCS.
      precision: "fp32", "fp16" or "int8" (weights and arithmetic; inputs and outputs stay
        float32).
      input_size: (H, W) the model is fixed to, or None for any size.
    """

    dataset: str
    backbone: str
    output_stride: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    label_ids: tuple[int, ...] | None
    weights: str
    outputs: tuple[str, ...] = ("probabilities", "labels")
    precision: str = "fp32"
    input_size: tuple[int, int] | None = None

    def __post_init__(self):
        if len(self.palette) != len(self.class_names):
            raise ValueError(
                f"ExportInfo: {len(self.palette)} colours for {len(self.class_names)} classes"
            )
        if self.label_ids is not None and len(self.label_ids) != len(self.class_names):
            raise ValueError(
                f"ExportInfo: {len(self.label_ids)} label ids for {len(self.class_names)} classes"
            )
        unknown = set(self.outputs) - set(OUTPUT_DOCS)
        if unknown:
            raise ValueError(f"ExportInfo: unknown outputs {sorted(unknown)}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"ExportInfo: precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if self.weights not in WEIGHTS:
            raise ValueError(f"ExportInfo: weights must be one of {WEIGHTS}, got {self.weights!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> ExportInfo:
        """Inverse of `to_dict`; lists become tuples."""
        names = {field.name for field in dataclasses.fields(cls)}
        missing = names - set(record)
        if missing:
            raise ValueError(f"scl_tf export metadata: missing {sorted(missing)}")
        values = {name: record[name] for name in names}
        values["class_names"] = tuple(values["class_names"])
        values["palette"] = tuple(tuple(int(c) for c in colour) for colour in values["palette"])
        values["outputs"] = tuple(values["outputs"])
        for name in ("label_ids", "input_size"):
            if values[name] is not None:
                values[name] = tuple(int(v) for v in values[name])
        return cls(**values)

    def describe_outputs(self) -> str:
        """One line per output: `name: dtype [shape]: meaning`."""
        return "\n".join(f"{name}: {OUTPUT_DOCS[name]}" for name in self.outputs)


def make_info(
    dataset: str, backbone: str, output_stride: int, class_names, weights: str, **overrides
) -> ExportInfo:
    """ExportInfo of a model trained on `dataset`, colours and label ids from its LabelSpec.

    Args:
      dataset: "cityscapes", "camvid" or "folder" (the PASCAL VOC colour map).
      class_names: C names (a run's config.json records them).
      overrides: other ExportInfo fields (outputs, precision, input_size).
    """
    spec = label_spec(dataset, tuple(class_names))
    label_ids = (
        None if spec.train_id_to_value is None else tuple(int(v) for v in spec.train_id_to_value)
    )
    return ExportInfo(
        dataset=dataset,
        backbone=backbone,
        output_stride=int(output_stride),
        class_names=tuple(class_names),
        palette=tuple(tuple(int(c) for c in colour) for colour in spec.palette),
        label_ids=label_ids,
        weights=weights,
        **overrides,
    )


def label_spec(dataset: str, class_names: tuple[str, ...]) -> labels_lib.LabelSpec:
    """The LabelSpec of a dataset; for "folder", of `class_names`.

    Raises:
      ValueError: an unknown dataset, or class names that do not match the dataset's.
    """
    if dataset == "cityscapes":
        spec = labels_lib.cityscapes()
    elif dataset == "camvid":
        spec = labels_lib.camvid()
    elif dataset == "folder":
        return labels_lib.folder(len(class_names), class_names=class_names)
    else:
        raise ValueError(f"--dataset: expected cityscapes, camvid or folder, got {dataset!r}")
    if spec.class_names != class_names:
        raise ValueError(
            f"{dataset}: the model's {len(class_names)} classes {class_names} are "
            f"not the dataset's {spec.class_names}"
        )
    return spec


def to_onnx_props(info: ExportInfo) -> dict[str, str]:
    """ONNX metadata_props: one key per field with a JSON value, plus readable conventions."""
    props = {name: json.dumps(value) for name, value in info.to_dict().items()}
    props[INPUT_KEY] = INPUT_CONVENTION
    props[OUTPUTS_DOC_KEY] = info.describe_outputs()
    return props


def from_onnx_props(props: dict[str, str], source: str) -> ExportInfo:
    """Inverse of `to_onnx_props`.

    Raises:
      ValueError: naming `source`, when the model was not exported by scl_tf.
    """
    names = [field.name for field in dataclasses.fields(ExportInfo)]
    missing = [name for name in names if name not in props]
    if missing:
        raise ValueError(
            f"{source}: no scl_tf metadata ({', '.join(missing)} missing); export "
            "it with export/to_onnx.py"
        )
    return ExportInfo.from_dict({name: json.loads(props[name]) for name in names})
