"""Generated input for the benchmark: WebDataset tar shards of synthetic assets.

The shards are what the job reads in production (tar members ``KEY.png``), so
the job pays for reading, decoding, encoding and writing exactly as it would.
A small pool of distinct assets is drawn once and repeated under distinct
keys: drawing 10,000 procedural assets would cost more than processing them,
and repeats change neither the work per image nor what streaming must prove.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stylefix_core.config import Limits
from stylefix_core.imaging import decode_image
from stylefix_core.synthetic import make_assets

POOL_SEED = 2026


@dataclass(frozen=True)
class BenchInput:
    """A folder of tar shards and what they hold."""

    folder: Path
    images: int
    size: int
    pool: tuple[bytes, ...]  # the distinct encoded PNGs, cycled over keys

    def decoded(self, n: int | None = None) -> list[np.ndarray]:
        """The first ``n`` images as the job decodes them (the ceiling's input)."""
        count = self.images if n is None else n
        pixels = [decode_image(data, Limits()) for data in self.pool]
        return [pixels[i % len(pixels)] for i in range(count)]


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG with fixed settings and no metadata: the same pixels give the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()


def asset_pool(size: int, distinct: int) -> tuple[bytes, ...]:
    """``distinct`` square assets of ``size`` px, encoded as PNG."""
    return tuple(encode_png(p) for p in make_assets(POOL_SEED, distinct, [(size, size)]))


def write_shards(
    folder: Path, images: int, size: int, per_shard: int = 64, distinct: int = 16
) -> BenchInput:
    """Write ``images`` images of ``size`` px into tar shards of ``per_shard`` each."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = asset_pool(size, min(distinct, images))
    for first in range(0, images, per_shard):
        keys = range(first, min(first + per_shard, images))
        _write_tar(folder / f"bench-{first // per_shard:05d}.tar", keys, pool)
    return BenchInput(folder=folder, images=images, size=size, pool=pool)


def _write_tar(path: Path, keys: range, pool: tuple[bytes, ...]) -> None:
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for index in keys:
            data = pool[index % len(pool)]
            info = tarfile.TarInfo(f"img-{index:07d}.png")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
