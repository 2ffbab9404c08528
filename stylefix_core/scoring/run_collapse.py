"""Collapse across a run: many different inputs that came out as the same picture.

No single-image score can see a generator that maps every input to nearly the
same output; it shows only when outputs are compared across the job. Each
report row carries a perceptual hash of its styled image (before any
per-image correction, which would hide the collapse); a hash shared by at
least ``MIN_SOURCES`` different sources is a collapse, and every row with that
hash is marked. Only (hash, source) pairs need to meet for the count, so a
job never has to hold its report rows together to find a collapse. A source
is the input's own perceptual hash in style mode (so duplicate inputs styled
alike are not a collapse) and the key in qa mode (there the inputs *are*
generated images, and different catalog entries that are one picture mean
the generator upstream collapsed).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

REASON = "run_collapse"
MIN_SOURCES = 4
# Levels of each channel of the mean colour that the hash keeps.
COLOUR_LEVELS = 4
SHAPE_DIGITS = 16  # the hash's grey-picture part, before its colour


def average_hash(pixels: np.ndarray, size: int = 8) -> str:
    """The 64-bit average hash of an (H, W, 3) uint8 image's grey picture and
    its mean colour in COLOUR_LEVELS levels a channel, as 18 hex digits.

    Robust to small pixel changes (it sees an 8x8 area-averaged grey image),
    which is what lets "nearly the same output" fall into one group. The grey
    picture alone is a silhouette: a catalog's colour variants of one product
    shared it, and four of them read as a collapse; their mean colours differ.
    """
    image = Image.fromarray(pixels)
    grey = np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX), np.float32)
    bits = (grey > grey.mean()).flatten()
    shape = int("".join("1" if b else "0" for b in bits), 2)
    # the mean of the 8x8 area averages, not of every pixel: this runs twice
    # per image on the job's CPU, and a pass over a large image's pixels cost
    # more than the grey hash itself (at 512 px: 5.8 ms with it, 1.3 ms so,
    # 0.7 ms for the grey hash alone; best of 5, 2 threads)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), np.float64)
    mean = small.reshape(-1, 3).mean(0)
    levels = np.minimum(mean * COLOUR_LEVELS // 256, COLOUR_LEVELS - 1).astype(int)
    colour = int(levels[0] * COLOUR_LEVELS**2 + levels[1] * COLOUR_LEVELS + levels[2])
    return f"{shape:0{size * size // 4}x}{colour:02x}"


def is_collapse(distinct_sources: int, min_sources: int = MIN_SOURCES) -> bool:
    """Whether a styled hash shared by this many different sources is a collapse."""
    return distinct_sources >= min_sources


def mark(row: dict) -> dict:
    """The report row, flagged as part of a collapse."""
    reasons = list(row["reasons"])
    if REASON not in reasons:
        reasons.append(REASON)
    return {**row, "reasons": reasons, "is_anomaly": True, "run_collapse": True}
