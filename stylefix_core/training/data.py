"""Training images as tensors: random crops from a pool of decoded images, and
visibly damaged copies of them."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
import torch

from stylefix_core import inject
from stylefix_core.config import Limits
from stylefix_core.correction import changed_visibly
from stylefix_core.errors import StyleFixError
from stylefix_core.imaging import decode_image
from stylefix_core.io.shards import plan_shards, read_shard
from stylefix_core.records import ReadFailure

log = logging.getLogger(__name__)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0


class CropSampler:
    """Draws batches of random square crops, seeded, from images of any size.

    Images smaller than the crop are resized up first so every image can be used.
    """

    def __init__(self, images: Sequence[torch.Tensor], crop: int, seed: int):
        if not images:
            raise ValueError("no training images")
        self.images = [at_least(img, crop) for img in images]
        self.crop = crop
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int) -> torch.Tensor:
        picks = torch.randint(len(self.images), (size,), generator=self.generator).tolist()
        return torch.stack([self._crop(self.images[i]) for i in picks])

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        patch = random_window(image, self.crop, self.generator)
        if torch.rand(1, generator=self.generator) < 0.5:
            patch = patch.flip(-1)
        return patch


def random_window(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A ``size`` square of ``image`` (C, H, W, each side at least ``size``)
    at a random place: its top, then its left, drawn from ``generator``."""
    _, height, width = image.shape
    top = int(torch.randint(height - size + 1, (1,), generator=generator))
    left = int(torch.randint(width - size + 1, (1,), generator=generator))
    return image[:, top : top + size, left : left + size]


# Draws of an injection in all; the last is taken, visible or not.
VISIBLE_TRIES = 8


def visibly_damaged(
    image: torch.Tensor, generator: torch.Generator, severity_range: tuple[float, float]
) -> inject.Injection:
    """``image`` (3, H, W) damaged by a random training kind at a random
    severity, drawn again, kind and severity, until the damage is visible
    (``changed_visibly``, the bar the quality benchmark holds its test
    anomalies to). Returns the injection, so that a classifier can learn
    to name the kind as well.

    A damage classifier taught that an unchanged image is damaged learns to
    tell its own references from crops that look the same, by memorising
    them. A quarter of the pixel classifier's damaged crops of the quality
    benchmark's reference patches were invisible (banding where there is no
    gradient, texture loss where there is no texture, a mild blur); trained
    on them, new clean patches scored far above the held-out ones it was
    scaled on (90th percentile z 2.32 against 1.46) and 4.2 % of them were
    flagged. A kind that fails on one image is redrawn with the severity,
    not retried: retrying it taught banding and texture loss from the few
    patches that take them, and ranked anomalies worse (docs/training.md).
    Kinds that rarely fail so get a little more than their share.
    """
    injected = inject.Injection(image, "", 0.0)
    for _ in range(VISIBLE_TRIES):
        injected = inject.random_injection(image, generator, severity_range=severity_range)
        if bool(changed_visibly(image[None], injected.image[None])[0]):
            break
    return injected


def at_least(image: torch.Tensor, size: int) -> torch.Tensor:
    """The image resized up, keeping its aspect, where a side is under ``size``."""
    _, height, width = image.shape
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    return torch.nn.functional.interpolate(
        image[None], size=new, mode="bilinear", align_corners=False
    )[0]


def fingerprint(images: Sequence[torch.Tensor], extra: str = "") -> str:
    """SHA-256 over the exact training pixels (quantised) and settings."""
    digest = hashlib.sha256(extra.encode())
    for image in images:
        digest.update(str(tuple(image.shape)).encode())
        digest.update((image * 255).round().to(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def load_images(url: str, max_images: int = 0, limits: Limits | None = None) -> list[torch.Tensor]:
    """Decode every image of a shard URL, glob or folder, as training tensors.

    Reads through the same readers as the job, so any shard kind and any
    fsspec URL works; unreadable members are skipped with a warning (a
    training set is curated input, not a catalog that must be accounted for).
    """
    limits = limits or Limits()
    images: list[torch.Tensor] = []
    for spec in plan_shards(url, files_per_shard=1024).shards:
        for item in read_shard(spec, limits=limits):
            if isinstance(item, ReadFailure):
                log.warning("skipping %s: %s", item.source_uri, item.message)
                continue
            try:
                images.append(to_tensor(decode_image(item.data, limits)))
            except StyleFixError as exc:
                log.warning("skipping %s: %s", item.source_uri, exc)
            if max_images and len(images) >= max_images:
                return images
    if not images:
        raise ValueError(f"no decodable images at {url}")
    return images
