"""The built-in example style, drawn by code so the default bundle needs no download.

"riso" imitates a two-ink risograph print: a four-tone palette of navy, teal,
coral and paper cream, halftone dots in the mid-tones and paper grain. It is
distinctive enough that a generator visibly learns it and a discriminator can
tell it from plain photos or renders.
"""

from __future__ import annotations

import numpy as np

from stylefix_core.synthetic import make_asset

PALETTE = np.array(
    [[0.13, 0.16, 0.33], [0.10, 0.50, 0.52], [0.93, 0.42, 0.36], [0.96, 0.92, 0.82]],
    dtype=np.float32,
)


def make_riso_image(seed: int, size: int = 192) -> np.ndarray:
    """One (size, size, 3) uint8 style example."""
    rng = np.random.default_rng(seed)
    base = make_asset(rng, size, size).astype(np.float32) / 255.0
    lum = base @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dots = (np.sin(xx * 0.9) * np.sin(yy * 0.9) + 1.0) * 0.5  # halftone screen, period ~7 px
    shaded = np.clip(lum + (dots - 0.5) * 0.35, 0.0, 1.0)
    levels = np.minimum((shaded * 4).astype(np.int64), 3)
    out = PALETTE[levels]
    grain = rng.normal(0.0, 0.025, size=(size, size, 1)).astype(np.float32)
    return (np.clip(out + grain, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def make_style_images(name: str, count: int = 4, seed: int = 100) -> list[np.ndarray]:
    if name != "riso":
        raise ValueError(f"unknown built-in style {name!r}; give style images as a URL instead")
    return [make_riso_image(seed + i) for i in range(count)]
