"""The quality benchmark's data: reference and test patches of real photos,
with anomalies injected into copies of the test patches."""

from __future__ import annotations

import io
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylefix_core import inject
from stylefix_core.correction import VISIBLE_CHANGE_DB
from stylefix_core.device import to_pixels
from stylefix_core.evaluation.metrics import psnr
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.imaging import encode_image
from stylefix_core.training.data import to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    patch: int = 64
    seed: int = 0
    reference_fraction: float = 0.6
    per_kind: int = 80
    severity: tuple[float, float] = (0.4, 1.0)
    kinds: tuple[str, ...] = tuple(inject.INJECTORS)
    # An injection is a test anomaly only if it is visible: below this PSNR
    # against its clean patch. Banding leaves a patch with no smooth gradient
    # untouched, and texture loss one with no texture; above about 40 dB the
    # change is a level or two of rounding that no one would call damage. The
    # job holds its corrections to the same bar.
    visible_below_db: float = VISIBLE_CHANGE_DB


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
    # Per kind, how many injections were passed over as invisible.
    invisible: dict[str, int]


def build_eval_set(cfg: EvalConfig) -> EvalSet:
    """Patches split at random (seeded) into reference and test; every clean
    test patch is a negative. Each kind is injected into the test patches in
    one fixed order, passing over the injections that leave a patch visibly
    unchanged, until ``per_kind`` are damaged (or the test patches run out,
    which is logged): the kinds share most of their patches, and no kind is
    judged on damage that is not there."""
    patches = grid_patches(load_photos(), cfg.patch)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(patches))
    cut = int(len(patches) * cfg.reference_fraction)
    reference = [patches[i][1] for i in order[:cut]]
    held = [patches[i] for i in order[cut:]]
    test = [TestImage(f"clean/{name}", "clean", 0.0, img, img) for name, img in held]
    invisible = {}
    for k, kind in enumerate(cfg.kinds):
        damaged, invisible[kind] = _visibly_damaged(held, kind, k, cfg)
        test += damaged
    return EvalSet(reference, test, invisible)


def _visibly_damaged(
    held: list[tuple[str, np.ndarray]], kind: str, index: int, cfg: EvalConfig
) -> tuple[list[TestImage], int]:
    """Up to ``per_kind`` visible injections of ``kind``, and how many were invisible."""
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + index)
    severities = np.random.default_rng([cfg.seed, index])
    damaged, passed_over = [], 0
    for name, img in held:
        if len(damaged) == cfg.per_kind:
            break
        severity = float(severities.uniform(*cfg.severity))
        pixels = to_pixels(inject.get_injector(kind)(to_tensor(img), severity, generator)[None])[0]
        if psnr(pixels, img) >= cfg.visible_below_db:
            passed_over += 1
            continue
        damaged.append(TestImage(f"{kind}/{name}", kind, severity, pixels, img))
    if len(damaged) < cfg.per_kind:
        log.warning(
            "%s: only %d of %d test patches visibly damaged (%d passed over)",
            kind,
            len(damaged),
            cfg.per_kind,
            passed_over,
        )
    return damaged, passed_over


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
