"""The quality benchmark's data: reference and test patches of real photos,
with anomalies injected into copies of the test patches."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylefix_core import inject
from stylefix_core.device import to_pixels
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.imaging import encode_image
from stylefix_core.training.data import to_tensor


@dataclass(frozen=True)
class EvalConfig:
    patch: int = 64
    seed: int = 0
    reference_fraction: float = 0.6
    per_kind: int = 40
    severity: tuple[float, float] = (0.4, 1.0)
    kinds: tuple[str, ...] = tuple(inject.INJECTORS)


@dataclass(frozen=True)
class TestImage:
    key: str
    kind: str  # "clean" or an injector name
    severity: float
    image: np.ndarray
    clean: np.ndarray


@dataclass(frozen=True)
class EvalSet:
    reference: list[np.ndarray]
    test: list[TestImage]


def build_eval_set(cfg: EvalConfig) -> EvalSet:
    """Patches split at random (seeded) into reference and test; every kind is
    injected into the same ``per_kind`` test patches so kinds are compared on
    equal content, and every clean test patch is a negative."""
    patches = grid_patches(load_photos(), cfg.patch)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(patches))
    cut = int(len(patches) * cfg.reference_fraction)
    reference = [patches[i][1] for i in order[:cut]]
    held = [patches[i] for i in order[cut:]]
    test = [TestImage(f"clean/{name}", "clean", 0.0, img, img) for name, img in held]
    for k, kind in enumerate(cfg.kinds):
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + k)
        for name, img in held[: cfg.per_kind]:
            severity = float(rng.uniform(*cfg.severity))
            damaged = inject.get_injector(kind)(to_tensor(img), severity, generator)
            test.append(
                TestImage(f"{kind}/{name}", kind, severity, to_pixels(damaged[None])[0], img)
            )
    return EvalSet(reference, test)


def write_tar(path: Path, items: list[tuple[str, np.ndarray]]) -> None:
    """A WebDataset-style shard of PNGs (lossless, so injected damage is exact)."""
    with tarfile.open(path, "w") as tar:
        for key, pixels in items:
            data = encode_image(pixels, "png")
            info = tarfile.TarInfo(f"{key}.png")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))


def write_test_shards(eval_set: EvalSet, folder: Path) -> None:
    """One shard per kind (and one of clean patches), keys ``KIND/PHOTO-ROW-COL``."""
    folder.mkdir(parents=True, exist_ok=True)
    by_kind: dict[str, list[tuple[str, np.ndarray]]] = {}
    for item in eval_set.test:
        by_kind.setdefault(item.kind, []).append((item.key, item.image))
    for kind, items in by_kind.items():
        write_tar(folder / f"{kind}.tar", items)
