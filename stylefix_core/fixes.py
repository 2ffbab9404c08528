"""Classical fixes, each undoing one fault a statistic diagnoses.

Pure image-to-image functions on NCHW batches in [0, 1]; which of them is
tried on which image, and which result is kept, is ``correction``'s business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylefix_core import colour
from stylefix_core.inject import gaussian_blur
from stylefix_core.scoring.features import FALLOFF_MIN_SIDE, centred_coordinates, fit_bowl


def colour_transfer(x: torch.Tensor, target_stats: torch.Tensor) -> torch.Tensor:
    """Move the two chroma channels' mean and spread to the target statistics.

    Luma is left alone: brightness and contrast are the picture's own, and
    a colour fix that relit the image would trade one fault for another.
    ``target_stats`` is (N, 6) as made by ``colour.colour_stats``. The
    spread is only ever shrunk or grown by at most 2x so that a near-flat
    image is not blown up into noise. In float32 under any autocast, as the
    statistics that aim it are.
    """
    with torch.autocast(x.device.type, enabled=False):
        y = colour.to_opponent(x.float())
        chroma = y[:, 1:]
        mean = chroma.mean(dim=(2, 3), keepdim=True)
        std = chroma.std(dim=(2, 3), keepdim=True, correction=0) + 1e-3
        target_mean = target_stats[:, 1:3, None, None].float()
        target_std = torch.exp(target_stats[:, 4:6, None, None].float())
        gain = (target_std / std).clamp(0.5, 2.0)
        y = torch.cat([y[:, :1], (chroma - mean) * gain + target_mean], dim=1)
        return colour.from_opponent(y).clamp(0.0, 1.0)


# The most ``resaturate`` multiplies the chroma by: a picture left with a tenth
# of its colour is brought back; below that what is left is mostly rounding,
# which a larger gain would blow up into coloured noise. On the quality
# benchmark's desaturated patches (splits 0-4, under the job's rules) a cap
# of 10 gained +1.4 to +3.0 dB per split, of 6 +1.4 to +2.8 dB, of 4 +1.0
# to +2.1 dB.
RESATURATE_MAX_GAIN = 10.0


def resaturate(x: torch.Tensor, aims: torch.Tensor) -> torch.Tensor:
    """Multiply the chroma until the picture is as colourful as the least
    colourful of the colours it could have.

    Desaturation pulls every pixel towards its own grey: the two chroma
    channels shrink by one factor, luma and hue stay. Multiplying them back
    undoes it, and cannot turn a hue into another as moving the chroma's
    mean (``colour_transfer``) can. ``aims`` (N, K, 6) are ``colour_stats``
    rows the picture could have: its nearest references' in qa mode. The
    least colourful of them is aimed at, not their average: a picture a
    little greyer than its neighbours' average lies within their spread,
    and only one greyer than every one of them has evidently lost colour.
    On the quality benchmark (splits 0-4, under the job's rules, the gain
    capped at 4) aiming at the average also coloured posterised and
    texture-lost patches, at -6.6 to -8.9 dB, and cost one desaturated
    patch 5.9 dB; aiming at the least colourful, none of those. Only ever
    adds colour (a gain from 1 to ``RESATURATE_MAX_GAIN``), in float32
    under any autocast. Tried in style mode too, aimed at the colours the
    style gives the content; the figures above are qa mode's.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        now = colour.colourfulness(colour.colour_stats(x))
        goal = colour.colourfulness(aims.float()).amin(dim=1)
        gain = (goal / now.clamp(min=1e-4)).clamp(1.0, RESATURATE_MAX_GAIN)[:, None, None, None]
        y = colour.to_opponent(x)
        return colour.from_opponent(torch.cat([y[:, :1], y[:, 1:] * gain], dim=1)).clamp(0.0, 1.0)


# The Gaussian that follows the median in ``denoise``: a light one, and a
# strong one for heavy noise. The job tries both and keeps the gentler where
# both fix the image (``correction.preference``). The light one alone left a
# heavily noisy patch blotchy enough that the pixel classifier read it as more
# damaged than the noise; see docs/quality.md for the strengths measured.
DENOISE_SIGMA = 0.8
STRONG_DENOISE_SIGMA = 1.6


def denoise(x: torch.Tensor, sigma: float = DENOISE_SIGMA) -> torch.Tensor:
    """A 3x3 median (removes impulse noise without smearing it) then a Gaussian.

    On the quality benchmark's noisy photographs the light Gaussian raised
    PSNR by about 9 dB (measured against other strengths and orders in
    docs/quality.md).
    """
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    windows = padded.unfold(2, 3, 1).unfold(3, 3, 1)
    median = windows.reshape(*windows.shape[:4], 9).median(dim=-1).values
    return gaussian_blur(median, sigma).clamp(0.0, 1.0)


# The blur that ``deblur`` undoes: a Gaussian point spread of this many pixels,
# sharpened back in this many steps. Chosen on the quality benchmark's blurred
# photographs (blur of 1.2 to 3 px) among 1.5-2.5 px and 3-8 steps under the
# job's keep rule (docs/quality.md): a wider guess rings on mild blur.
DEBLUR_SIGMA = 2.0
DEBLUR_STEPS = 8


def deblur(x: torch.Tensor) -> torch.Tensor:
    """Van Cittert deconvolution: each step adds back what blurring the estimate
    fails to reproduce of the input, so detail the blur removed returns."""
    estimate = x
    for _ in range(DEBLUR_STEPS):
        estimate = (estimate + x - gaussian_blur(estimate, DEBLUR_SIGMA)).clamp(0.0, 1.0)
    return estimate


DEQUANTISE_SIGMA = 1.0


def dequantise(x: torch.Tensor) -> torch.Tensor:
    """Smooth the plateaus and the single steps between them; leave pixels
    whose neighbourhood spans more than one level step, and keep every pixel
    within half a step of its value.

    A posterised channel kept only every n-th 8-bit level: the true value lay
    within half that step of what is left, so a blur clamped to that interval
    can fill the bands in without leaving what the image could have been.
    Where a pixel's 3x3 neighbourhood spans two steps or more, the levels
    kept real structure (texture, an edge), which the blur would take away
    by up to half a step; a false contour is one step between plateaus. The
    step is read off the channel's histogram: its range over the levels it
    uses, one level on a natural image, where the clamp leaves nothing to
    see. Measured on the posterised test patches of the quality benchmark
    (80 per split, splits 0 and 4): +1.25 and +1.16 dB against the clean
    originals, the worst -0.34 dB, where the blur everywhere gained +0.41 and
    +0.13 dB and cost 14 and 25 patches over 0.5 dB (down to -4.3 dB).
    """
    step = _level_step(x)
    smoothed = torch.minimum(
        torch.maximum(gaussian_blur(x, DEQUANTISE_SIGMA), x - step / 2), x + step / 2
    )
    spread = F.max_pool2d(x, 3, 1, 1) + F.max_pool2d(-x, 3, 1, 1)  # 3x3 max - min
    # At most one step: 8-bit rounding makes the steps a level uneven, two span 2.
    return torch.where(spread <= 1.5 * step, smoothed, x)


def _level_step(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, 1) spacing of the 8-bit levels each channel uses, at least one level."""
    levels = (x.float().clamp(0.0, 1.0) * 255.0).round().flatten(2)
    counts = torch.zeros(*levels.shape[:2], 256, device=x.device)
    counts.scatter_add_(2, levels.long(), torch.ones_like(levels))
    used = (counts > 0).sum(-1)
    span = levels.amax(-1) - levels.amin(-1)
    step = (span / (used - 1).clamp(min=1)).clamp(min=1.0) / 255.0
    return step[..., None, None].to(x.dtype)


# The lowest gain ``devignette`` divides out: a corner is brought up at most
# this many times over (1 / 0.3), so that a near-black one is not blown up
# into noise.
DEVIGNETTE_MIN_GAIN = 0.3


def devignette(x: torch.Tensor) -> torch.Tensor:
    """Divide out a fall-off from the centre: the bowl fitted to the log luma, as a gain.

    Vignetting multiplies the picture by a gain that falls towards the rim,
    which in log luma is a bowl added to the content. Of the curvatures
    fitted there (``features.fit_bowl``, beside a plane for the lighting),
    the shallower is the bowl's: a vignette curves the log luma both ways,
    while a ramp of light, curved in the log, or a bright stripe curves it
    one way. Only a fall-off is undone, not a rim brighter than the centre;
    the statistic that flags it reads the same shallower curvature. On the quality benchmark's dark-vignetted test patches (80
    per split, splits 0-2), applied to every one: +8.1, +6.7 and +5.9 dB
    against the clean originals, the worst +0.0, -3.0 and +0.0 dB. Taking
    the mean curvature as the bowl's gained a little more (+8.4, +7.2 and
    +7.3 dB) but brightened the dark side of a plain ramp of light.
    """
    if min(x.shape[-2:]) < FALLOFF_MIN_SIDE:
        return x.clone()
    curvature, _ = fit_bowl(torch.log(colour.luma(x.float())[:, 0] + 0.02))
    depth = curvature.amax(dim=1).clamp(max=0.0)[:, None, None, None]
    rows, cols = centred_coordinates(*x.shape[-2:], device=x.device)
    gain = torch.exp(depth * (rows**2 + cols**2) / 2.0).clamp(min=DEVIGNETTE_MIN_GAIN)
    return (x.float() / gain).clamp(0.0, 1.0).to(x.dtype)


# Up-sampling by a stride of 2, once or twice, leaves a pattern that repeats
# every 2 or 4 pixels: its energy sits at multiples of 1/4 cycle per pixel.
CHECKERBOARD_PERIODS = (2, 4)
# How far from such a frequency a coefficient counts as the pattern's, and the
# width of the ring around it that shows the image's own level there, in
# cycles per pixel (1.5 and 3 frequency bins of a 64 px image).
NOTCH_RADIUS = 1.5 / 64
NOTCH_RING = 3.0 / 64


def remove_checkerboard(x: torch.Tensor) -> torch.Tensor:
    """Notch the periodic pattern out of the spectrum, leaving texture be.

    Around each frequency where a pattern of period 2 or 4 puts its energy
    (``CHECKERBOARD_PERIODS``; not the mean), every Fourier coefficient that
    stands above the median magnitude of a ring around it is brought down to
    that median: a repeating pattern is a peak there, natural texture is not.
    Measured on 80 checkerboard patches of the quality benchmark, against the
    clean originals: +13.2 dB, where the [1, 2, 1] / 4 filter this replaces
    (zero response at period 2, a blur everywhere) gained +4.4 dB and the
    denoiser +1.6 dB; a clean patch comes out at 50.8 dB on average (the
    filter: 34.8 dB).
    """
    height, width = x.shape[-2:]
    # Contiguous: torch's CPU FFT has crashed the process on the strides of a
    # batch permuted from NHWC (``device.to_batch``) at some sizes.
    image = x.double().contiguous()
    smooth = _smooth_component(image)
    spectrum = torch.fft.fft2(image - smooth)
    magnitude = spectrum.abs()
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=x.device)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64, device=x.device)[None, :]
    radius = max(NOTCH_RADIUS, 0.75 / min(height, width))
    ring_edge = radius + max(NOTCH_RING, 2.0 / min(height, width))
    mean = (fy == 0) & (fx == 0)  # a small image's notch would reach it
    gain = torch.ones_like(magnitude)
    for py, px in _pattern_frequencies(CHECKERBOARD_PERIODS):
        distance = torch.hypot(_wrapped(fy - py), _wrapped(fx - px))
        notch = (distance <= radius) & ~mean
        ring = (distance > radius) & (distance <= ring_edge)
        if not notch.any() or not ring.any():
            continue
        level = magnitude[..., ring].median(-1).values[..., None, None]
        above = notch & (magnitude > level)
        gain = torch.where(above, level / magnitude.clamp_min(1e-12), gain)
    periodic = torch.fft.ifft2(spectrum * gain).real
    return (periodic + smooth).to(x.dtype).clamp(0.0, 1.0)


def _smooth_component(x: torch.Tensor) -> torch.Tensor:
    """The smooth part of Moisan's periodic-plus-smooth decomposition.

    The Fourier transform treats an image as if it tiled the plane, so the
    jumps between opposite borders spread energy along both frequency axes,
    where half of the pattern frequencies lie; notching them there cut into
    real content (a clean coffee patch came out at 35.9 dB, and checkerboard
    patches gained +10.6 dB). This component carries those jumps and no
    pattern; the notch works on the rest (58.9 dB and +13.2 dB).
    """
    height, width = x.shape[-2:]
    jumps = torch.zeros_like(x)
    rows, cols = x[..., -1, :] - x[..., 0, :], x[..., :, -1] - x[..., :, 0]
    jumps[..., 0, :] += rows
    jumps[..., -1, :] -= rows
    jumps[..., :, 0] += cols
    jumps[..., :, -1] -= cols
    q = torch.arange(height, dtype=x.dtype, device=x.device)[:, None]
    r = torch.arange(width, dtype=x.dtype, device=x.device)[None, :]
    laplacian = 2 * torch.cos(2 * math.pi * q / height) + 2 * torch.cos(2 * math.pi * r / width) - 4
    laplacian[0, 0] = 1.0
    smooth = torch.fft.fft2(jumps) / laplacian
    smooth[..., 0, 0] = 0.0
    return torch.fft.ifft2(smooth).real


def _pattern_frequencies(periods: Sequence[int]) -> list[tuple[float, float]]:
    """(fy, fx) in cycles per pixel where patterns of these periods have energy."""
    points = {(a / p, b / p) for p in periods for a in range(p) for b in range(p)}
    return sorted(points - {(0.0, 0.0)})


def _wrapped(frequency: torch.Tensor) -> torch.Tensor:
    """A frequency difference in cycles per pixel, wrapped into [-0.5, 0.5)."""
    return (frequency + 0.5) % 1.0 - 0.5
