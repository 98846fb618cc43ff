"""Train-id maps as pictures and files: label values, colour maps, overlays with a legend."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scl_tf.data.labels import UNDEFINED, LabelSpec

FORMATS = ("labelIds", "trainIds", "color", "overlay")
LEGEND_ROW = 20  # pixels per legend line
LEGEND_SWATCH = 12
LEGEND_GAP = 10


def label_values(spec: LabelSpec) -> np.ndarray:
    """int32 [C]: the value label files store for each train id (Cityscapes: labelIds; other
    datasets: the smallest value that maps to the train id)."""
    if spec.train_id_to_value is not None:
        return np.asarray(spec.train_id_to_value, np.int32)
    values = np.full(spec.num_classes, UNDEFINED, np.int32)
    for value in range(len(spec.value_to_train_id) - 1, -1, -1):
        train_id = spec.value_to_train_id[value]
        if 0 <= train_id < spec.num_classes:
            values[train_id] = value
    missing = np.flatnonzero(values == UNDEFINED)
    if missing.size:
        raise ValueError(f"{spec.name}: no label value for train id(s) {missing.tolist()}")
    return values


def colorize(train_ids: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """int [H, W] train ids -> uint8 [H, W, 3] RGB; ids outside the palette (ignore) black."""
    colors = np.concatenate([np.asarray(palette, np.uint8), np.zeros((1, 3), np.uint8)])
    index = np.where((train_ids >= 0) & (train_ids < len(palette)), train_ids, len(palette))
    return colors[index]


def blend(
    image: np.ndarray, train_ids: np.ndarray, palette: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """uint8 [H, W, 3]: the colour map laid over the image with opacity `alpha`."""
    mixed = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * colorize(
        train_ids, palette
    ).astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def add_legend(picture: np.ndarray, train_ids: np.ndarray, class_names, palette) -> np.ndarray:
    """uint8 [H + h, W, 3]: `picture` above a band naming the classes present in `train_ids`
    (most pixels first) beside their colours."""
    counts = np.bincount(
        train_ids[(train_ids >= 0) & (train_ids < len(class_names))].ravel(),
        minlength=len(class_names),
    )
    present = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    font = ImageFont.load_default()
    width = picture.shape[1]
    # Lay the entries out in lines first, to know the band's height.
    lines, line, used = [], [], LEGEND_GAP
    for class_id in present:
        entry = LEGEND_SWATCH + 4 + int(font.getlength(class_names[class_id])) + LEGEND_GAP
        if line and used + entry > width:
            lines.append(line)
            line, used = [], LEGEND_GAP
        line.append((class_id, used))
        used += entry
    lines.append(line)
    band = Image.new("RGB", (width, LEGEND_ROW * len(lines) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for row, entries in enumerate(lines):
        top = 4 + row * LEGEND_ROW
        for class_id, left in entries:
            draw.rectangle(
                [left, top, left + LEGEND_SWATCH, top + LEGEND_SWATCH],
                fill=tuple(int(c) for c in palette[class_id]),
                outline=(0, 0, 0),
            )
            draw.text(
                (left + LEGEND_SWATCH + 4, top), class_names[class_id], fill=(0, 0, 0), font=font
            )
    return np.concatenate([picture, np.asarray(band)], axis=0)


def render(
    train_ids: np.ndarray, image: np.ndarray, fmt: str, spec: LabelSpec, alpha: float = 0.5
) -> np.ndarray:
    """The picture written for one prediction.

    Args:
      train_ids: int [H, W] predicted train ids.
      image: uint8 [H, W, 3] the input (used by "overlay").
      fmt: "labelIds" (uint8 [H, W] label values), "trainIds" (uint8 [H, W]), "color"
        (uint8 [H, W, 3]) or "overlay" (uint8 [H + legend, W, 3]).
    """
    if fmt == "labelIds":
        return label_values(spec).astype(np.uint8)[train_ids]
    if fmt == "trainIds":
        return train_ids.astype(np.uint8)
    if fmt == "color":
        return colorize(train_ids, spec.palette)
    if fmt == "overlay":
        return add_legend(
            blend(image, train_ids, spec.palette, alpha), train_ids, spec.class_names, spec.palette
        )
    raise ValueError(f"--format: expected one of {FORMATS}, got {fmt!r}")
