"""Real photographs available offline, shipped inside the scikit-image and
scikit-learn wheels (an ``eval`` extra), read as files so that neither heavy
library has to be imported."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

# (package, path inside it) of colour photographs of everyday scenes.
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{package} is not installed; install the 'eval' extra (pip install -e .[eval])"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def load_photos() -> dict[str, np.ndarray]:
    """Name -> (H, W, 3) uint8 RGB."""
    photos = {}
    for name, (package, relative) in PHOTOS.items():
        with Image.open(_package_dir(package) / relative) as image:
            photos[name] = np.asarray(image.convert("RGB"))
    return photos


def grid_patches(photos: dict[str, np.ndarray], size: int) -> list[tuple[str, np.ndarray]]:
    """Non-overlapping size x size patches of every photo, named photo/row-col."""
    patches = []
    for name, image in photos.items():
        for top in range(0, image.shape[0] - size + 1, size):
            for left in range(0, image.shape[1] - size + 1, size):
                patch = np.ascontiguousarray(image[top : top + size, left : left + size])
                patches.append((f"{name}-{top // size:02d}-{left // size:02d}", patch))
    return patches
