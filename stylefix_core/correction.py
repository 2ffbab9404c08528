"""Correction of flagged images: learned residual plus classical colour transfer.

Every candidate is re-scored and the best is kept only if it scores lower than
the image it replaces, so correction can never make the report worse.
"""

from __future__ import annotations

import torch

from stylefix_core import colour


def colour_transfer(x: torch.Tensor, target_stats: torch.Tensor) -> torch.Tensor:
    """Move the two chroma channels' mean and spread to the target statistics.

    Luma is left alone: brightness and contrast are the picture's own, and
    a colour fix that relit the image would trade one fault for another.
    ``target_stats`` is (N, 6) as made by ``colour.colour_stats``. The
    spread is only ever shrunk or grown by at most 2x so that a near-flat
    image is not blown up into noise.
    """
    y = colour.to_opponent(x)
    chroma = y[:, 1:]
    mean = chroma.mean(dim=(2, 3), keepdim=True)
    std = chroma.std(dim=(2, 3), keepdim=True, correction=0) + 1e-3
    target_mean = target_stats[:, 1:3, None, None]
    target_std = torch.exp(target_stats[:, 4:6, None, None])
    gain = (target_std / std).clamp(0.5, 2.0)
    y = torch.cat([y[:, :1], (chroma - mean) * gain + target_mean], dim=1)
    return colour.from_opponent(y).clamp(0.0, 1.0)


COLOUR_CANDIDATES = ("colour", "colour+residual")


def correction_candidates(
    x: torch.Tensor, corrector: torch.nn.Module, target_stats: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The alternatives tried for a batch of flagged images, by name.

    The colour ones are only eligible for images flagged for colour (see
    COLOUR_CANDIDATES): recolouring a blurred image can lower its score
    without fixing anything."""
    colour = colour_transfer(x, target_stats)
    return {
        "residual": corrector(x).float(),
        "colour": colour,
        "colour+residual": corrector(colour).float(),
    }
