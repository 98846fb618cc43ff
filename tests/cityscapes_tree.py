"""Builds tiny Cityscapes-format trees (real PNG files) for tests."""

from __future__ import annotations

import pathlib

import numpy as np
from cityscapesscripts.helpers.labels import labels as cs_labels
from PIL import Image

LABEL_IDS = np.array([lab.id for lab in cs_labels if lab.id >= 0], np.uint8)
ID_TO_TRAIN = {
    lab.id: (lab.trainId if 0 <= lab.trainId < 255 else 255) for lab in cs_labels if lab.id >= 0
}


def random_label_ids(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """uint8 [H, W] labelIds made of random rectangles over every Cityscapes id."""
    label = np.full((height, width), rng.choice(LABEL_IDS), np.uint8)
    for _ in range(12):
        y0, x0 = rng.integers(0, height - 4), rng.integers(0, width - 4)
        y1, x1 = rng.integers(y0 + 2, height + 1), rng.integers(x0 + 2, width + 1)
        label[y0:y1, x0:x1] = rng.choice(LABEL_IDS)
    return label


def make_cityscapes_tree(
    root: pathlib.Path,
    splits=(("train", ("aachen", "bremen"), 3), ("val", ("frankfurt",), 2)),
    height: int = 32,
    width: int = 64,
    extra_images: int = 0,
    seed: int = 0,
) -> pathlib.Path:
    """Writes leftImg8bit/ and gtFine/ (labelIds, labelTrainIds, color, instanceIds uint16)
    for each (split, cities, frames per city), and `extra_images` train_extra images."""
    rng = np.random.default_rng(seed)
    for split, cities, frames in splits:
        for city in cities:
            image_dir = root / "leftImg8bit" / split / city
            label_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            for frame in range(frames):
                stem = f"{city}_{frame:06d}_000019"
                image = rng.integers(0, 256, (height, width, 3), np.uint8)
                label = random_label_ids(rng, height, width)
                train_ids = np.vectorize(ID_TO_TRAIN.get)(label).astype(np.uint8)
                Image.fromarray(image).save(image_dir / f"{stem}_leftImg8bit.png")
                Image.fromarray(label).save(label_dir / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(train_ids).save(label_dir / f"{stem}_gtFine_labelTrainIds.png")
                Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(
                    label_dir / f"{stem}_gtFine_color.png"
                )
                Image.fromarray(label.astype(np.uint16)).save(
                    label_dir / f"{stem}_gtFine_instanceIds.png"
                )
    for frame in range(extra_images):
        extra_dir = root / "leftImg8bit" / "train_extra" / "augsburg"
        extra_dir.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (height, width, 3), np.uint8)
        Image.fromarray(image).save(extra_dir / f"augsburg_{frame:06d}_000019_leftImg8bit.png")
    return root
