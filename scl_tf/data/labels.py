"""Class names, colour palettes and label-value mappings of the supported datasets.

Every dataset maps the values stored in its label files to train ids `0 .. C-1`, with
`IGNORE_LABEL` for pixels that are not scored. The mapping is a 256-entry table (label PNGs are
8-bit) in which values the dataset does not define hold `UNDEFINED`, so a stray value in a label
file is caught instead of silently training on it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

IGNORE_LABEL = 255
UNDEFINED = -1
NUM_LABEL_VALUES = 256


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How one dataset's label files map to train ids, and how to show them.

    Attributes:
      name: dataset name, e.g. "cityscapes".
      class_names: C names, indexed by train id.
      palette: uint8 [C, 3] RGB colour of each train id.
      value_to_train_id: int32 [256]: train id of each stored label value, IGNORE_LABEL for
        values that are not scored, UNDEFINED for values the dataset does not define.
      train_id_to_value: int32 [C] or None: the stored value of each train id (Cityscapes
        labelIds for benchmark submissions); None where predictions are written as train ids.
    """

    name: str
    class_names: tuple[str, ...]
    palette: np.ndarray
    value_to_train_id: np.ndarray
    train_id_to_value: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def defined_values(self) -> np.ndarray:
        """int32 [K]: the label values this dataset defines."""
        return np.flatnonzero(self.value_to_train_id != UNDEFINED).astype(np.int32)


def _table(pairs: dict[int, int]) -> np.ndarray:
    """int32 [256] lookup table from {stored value: train id}, UNDEFINED elsewhere."""
    table = np.full(NUM_LABEL_VALUES, UNDEFINED, np.int32)
    for value, train_id in pairs.items():
        table[value] = train_id
    return table


# How Cityscapes label files store classes: label ids (mapped to train ids here) or train ids.
CITYSCAPES_LABEL_FORMATS = ("labelIds", "trainIds")


def cityscapes(label_format: str = CITYSCAPES_LABEL_FORMATS[0]) -> LabelSpec:
    """The 19 Cityscapes train classes, from cityscapesscripts' label definitions.

    Args:
      label_format: "labelIds" (`*_gtFine_labelIds.png`, ids 0-33 mapped to train ids) or
        "trainIds" (`*_gtFine_labelTrainIds.png`, already 0-18 and 255).
    """
    from cityscapesscripts.helpers.labels import labels as cs_labels

    scored = sorted(
        (lab for lab in cs_labels if 0 <= lab.trainId < IGNORE_LABEL), key=lambda lab: lab.trainId
    )
    names = tuple(lab.name for lab in scored)
    palette = np.array([lab.color for lab in scored], np.uint8)
    if label_format == "labelIds":
        table = _table(
            {
                lab.id: lab.trainId if 0 <= lab.trainId < IGNORE_LABEL else IGNORE_LABEL
                for lab in cs_labels
                if lab.id >= 0
            }
        )
    elif label_format == "trainIds":
        table = _table({**{i: i for i in range(len(names))}, IGNORE_LABEL: IGNORE_LABEL})
    else:
        raise ValueError(
            f"--cityscapes_label_format: expected one of {CITYSCAPES_LABEL_FORMATS}, got "
            f"{label_format!r}"
        )
    train_id_to_value = np.array([lab.id for lab in scored], np.int32)
    return LabelSpec("cityscapes", names, palette, table, train_id_to_value)


CAMVID_CLASS_NAMES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
# SegNet-Tutorial's Scripts/test_segmentation_camvid.py colours, in class order.
CAMVID_PALETTE = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)
CAMVID_VOID = 11


def camvid() -> LabelSpec:
    """CamVid in the SegNet version: values 0-10 are the classes, 11 is void (ignored)."""
    table = _table({**{i: i for i in range(len(CAMVID_CLASS_NAMES))}, CAMVID_VOID: IGNORE_LABEL})
    return LabelSpec("camvid", CAMVID_CLASS_NAMES, np.array(CAMVID_PALETTE, np.uint8), table)


def folder(
    num_classes: int,
    ignore_value: int = IGNORE_LABEL,
    id_mapping: dict[int, int] | None = None,
    class_names: tuple[str, ...] | None = None,
) -> LabelSpec:
    """A user's own masks.

    Args:
      num_classes: C.
      ignore_value: the stored value of unlabelled pixels.
      id_mapping: {stored value: train id (or 255)}; None means values 0..C-1 are the train ids.
      class_names: C names; "class_0", ... when None.
    """
    if num_classes < 1 or num_classes > IGNORE_LABEL:
        raise ValueError(f"--num_classes: must be in 1..{IGNORE_LABEL}, got {num_classes}")
    if id_mapping is None:
        id_mapping = {i: i for i in range(num_classes)}
    for value, train_id in id_mapping.items():
        if not 0 <= value < NUM_LABEL_VALUES:
            raise ValueError(f"--id_mapping: stored value {value} is not in 0..255")
        if not (0 <= train_id < num_classes or train_id == IGNORE_LABEL):
            raise ValueError(
                f"--id_mapping: train id {train_id} (for value {value}) is not in "
                f"0..{num_classes - 1} or {IGNORE_LABEL}"
            )
    table = _table({**id_mapping, ignore_value: IGNORE_LABEL})
    if class_names is None:
        class_names = tuple(f"class_{i}" for i in range(num_classes))
    if len(class_names) != num_classes:
        raise ValueError(f"--class_names: {len(class_names)} names for {num_classes} classes")
    return LabelSpec("folder", tuple(class_names), default_palette(num_classes), table)


def default_palette(num_classes: int) -> np.ndarray:
    """uint8 [C, 3]: the PASCAL VOC bit-interleaved colour map, distinct for C <= 256."""
    palette = np.zeros((num_classes, 3), np.uint8)
    for class_id in range(num_classes):
        value = class_id
        for shift in range(7, -1, -1):
            for channel in range(3):
                palette[class_id, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
    return palette
