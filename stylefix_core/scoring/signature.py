"""An image's statistical signature: the vector the damage classifier reads.

Each single statistic in ``features`` answers one fault, and the anomaly score
takes the largest of their z-scores, so a fault that moves several statistics
a little each (a collapse lowers contrast, smooths texture and narrows the
colours) is flagged by none. The signature puts them side by side with the
natural-scene statistics of normalised luma (how peaked and how correlated
its local contrast is at two scales, what blur, sharpening, noise and
smoothing change first) and the colour moments, so that a classifier trained
on reference images and damaged copies of them can weigh them together.

Input: RGB float tensors in [0, 1], shape (N, 3, H, W). Output: (N, SIGNATURE_DIM)
float32. Pure tensor code, like ``features``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from stylefix_core.colour import colour_stats, luma, to_opponent
from stylefix_core.inject import gaussian_blur
from stylefix_core.scoring import features

# The local window of contrast normalisation, as in BRISQUE and NIQE (7x7, sigma 7/6).
_WINDOW_SIGMA = 7.0 / 6.0
# The scorer's statistics, by detector name; their order is the signature's.
STATISTICS = {
    "texture": features.texture_loss,
    "blur": features.blur,
    "noise": features.noise_level,
    "colour_noise": features.colour_noise_level,
    "checkerboard": features.checkerboard,
    "blocking": features.blocking,
    "quantisation": features.quantisation,
    "collapse": features.collapse,
    "corner_darkness": features.corner_darkness,  # in the signature only (see there)
    "contours": features.contours,  # in the signature only, not a detector of its own
}
_PER_SCALE = 9  # see _normalised_luma_statistics
SIGNATURE_DIM = 2 * _PER_SCALE + 4 + 6 + len(STATISTICS)


def signature(x: torch.Tensor, computed: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """(N, 3, H, W) -> (N, SIGNATURE_DIM): natural-scene, chroma, colour and fault statistics.

    ``computed`` holds statistics the caller already has for ``x``, by name in
    ``STATISTICS`` (the scorer's raw values): they are most of the cost.
    """
    computed = computed or {}
    x = x.float()
    y = luma(x)
    half = F.avg_pool2d(y, 2) if min(y.shape[-2:]) >= 4 else y
    parts = [
        _normalised_luma_statistics(y),
        _normalised_luma_statistics(half),
        _chroma_statistics(x),
        colour_stats(x),
        torch.stack(
            [computed[name] if name in computed else f(x) for name, f in STATISTICS.items()],
            dim=1,
        ),
    ]
    return torch.cat(parts, dim=1)


def _contrast_normalised(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-subtracted, contrast-normalised luma and the local contrast it was divided by."""
    mean = gaussian_blur(y, _WINDOW_SIGMA)
    variance = (gaussian_blur(y * y, _WINDOW_SIGMA) - mean * mean).clamp(min=0.0)
    sigma = variance.sqrt()
    return (y - mean) / (sigma + 1.0 / 255.0), sigma


def _normalised_luma_statistics(y: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 9): shape, energy and neighbour correlations of normalised
    luma, and the level and spread of local contrast.

    Blur makes the normalised coefficients more peaked and neighbours more
    alike; noise makes them Gaussian and unrelated; sharpening and smoothing
    move the local contrast. The 3-pixel border, where padding fakes
    structure, is left out where the image is large enough to have an interior.
    """
    m, sigma = _contrast_normalised(y)
    if min(m.shape[-2:]) > 8:
        m, sigma = m[..., 3:-3, 3:-3], sigma[..., 3:-3, 3:-3]
    flat = m.flatten(1)
    energy = (flat**2).mean(1)
    magnitude = flat.abs().mean(1)
    kurtosis = (flat**4).mean(1) / (energy**2 + 1e-8)
    correlations = [
        _correlation(m[..., :, 1:], m[..., :, :-1]),
        _correlation(m[..., 1:, :], m[..., :-1, :]),
        _correlation(m[..., 1:, 1:], m[..., :-1, :-1]),
        _correlation(m[..., 1:, :-1], m[..., :-1, 1:]),
    ]
    contrast = sigma.flatten(1)
    return torch.stack(
        [
            torch.log(magnitude**2 / (energy + 1e-8) + 1e-4),
            torch.log(kurtosis + 1e-4),
            torch.log(energy + 1e-6),
            *correlations,
            torch.log(contrast.mean(1) + 1e-4),
            torch.log(contrast.std(1, correction=0) + 1e-4) - torch.log(contrast.mean(1) + 1e-4),
        ],
        dim=1,
    )


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Normalised correlation of two equally shaped maps, (N,); zero where either is empty."""
    a, b = a.flatten(1), b.flatten(1)
    if a.shape[1] == 0:
        return torch.zeros(a.shape[0], device=a.device)
    scale = (a**2).mean(1).sqrt() * (b**2).mean(1).sqrt()
    return (a * b).mean(1) / (scale + 1e-6)


def _chroma_statistics(x: torch.Tensor) -> torch.Tensor:
    """(N, 4): level and spread of chroma magnitude, and the local contrast of each chroma axis.

    Desaturation lowers the first two while luma structure stays; colour
    bleeding and chroma smoothing lower the last two.
    """
    chroma = to_opponent(x)[:, 1:]
    magnitude = chroma.pow(2).sum(1).sqrt().flatten(1)
    local = [_contrast_normalised(chroma[:, c : c + 1])[1].flatten(1).mean(1) for c in (0, 1)]
    return torch.stack(
        [
            torch.log(magnitude.mean(1) + 1e-3),
            torch.log(magnitude.std(1, correction=0) + 1e-3),
            *[torch.log(v + 1e-4) for v in local],
        ],
        dim=1,
    )
