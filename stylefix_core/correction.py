"""Correction of flagged images: the learned residual plus classical fixes.

Every candidate is re-scored and the best is kept only if it scores lower than
the image it replaces, so correction can never make the report worse. The
classical fixes each undo one diagnosed fault and are tried only on images
flagged for that fault (``ANSWERS``, ``MAY_EXPLAIN``): smoothing a sharp image or
recolouring a blurred one can lower its score without fixing anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum

import torch
import torch.nn.functional as F

from stylefix_core import colour
from stylefix_core.inject import gaussian_blur
from stylefix_core.scoring.scorer import REASONS, ScoreBatch, Scorer

# A correction must lower the score by at least this much (in calibrated z
# units) to be kept: a near-identity output that shaves off a rounding error
# is not a correction.
MIN_IMPROVEMENT = 0.1
# A correction that leaves the image flagged must lower its score by at least
# this much from where it started. On the quality benchmark the corrections
# that changed nothing (PSNR within 0.13 dB) lowered still-flagged scores by
# 0.1-0.4; every one that repaired something by 1.9 or more.
MIN_PARTIAL_IMPROVEMENT = 1.0
# A correction must change the image visibly: its PSNR against the image it
# replaces must lie below this many dB, the bar under which the quality
# benchmark counts an injection as damage at all (see ``changed_visibly``).
VISIBLE_CHANGE_DB = 40.0


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


def denoise(x: torch.Tensor) -> torch.Tensor:
    """A 3x3 median (removes impulse noise without smearing it) then a light Gaussian.

    On the quality benchmark's noisy photographs this raised PSNR by about 9 dB
    (measured against other strengths and orders in docs/quality.md).
    """
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    windows = padded.unfold(2, 3, 1).unfold(3, 3, 1)
    median = windows.reshape(*windows.shape[:4], 9).median(dim=-1).values
    return gaussian_blur(median, 0.8).clamp(0.0, 1.0)


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
    """Smooth, but keep every pixel within half a level step of its value.

    A posterised channel kept only every n-th 8-bit level: the true value lay
    within half that step of what is left, so a blur clamped to that interval
    can fill the bands in without leaving what the image could have been.
    The step is read off the channel's histogram: its range over the levels
    it uses, one level on a natural image, where the clamp leaves nothing to
    see. Measured on 80 posterised patches of the quality benchmark: +0.3 dB
    against the clean originals, and 59 % of the flagged ones cleared, where
    the denoiser lost 3.3 dB and cleared 42 %.
    """
    levels = (x.float().clamp(0.0, 1.0) * 255.0).round().flatten(2)
    counts = torch.zeros(*levels.shape[:2], 256, device=x.device)
    counts.scatter_add_(2, levels.long(), torch.ones_like(levels))
    used = (counts > 0).sum(-1)
    span = levels.amax(-1) - levels.amin(-1)
    half_step = (span / (used - 1).clamp(min=1)).clamp(min=1.0) / (2.0 * 255.0)
    half_step = half_step[..., None, None].to(x.dtype)
    return torch.minimum(
        torch.maximum(gaussian_blur(x, DEQUANTISE_SIGMA), x - half_step), x + half_step
    )


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
    clean originals: +10.6 dB, where the [1, 2, 1] / 4 filter this replaces
    (zero response at period 2, a blur everywhere) gained +4.4 dB and the
    denoiser +1.6 dB; a clean patch came out at 41.8 dB (the filter: 34.8),
    before the boundary jumps were set apart (``_smooth_component``).
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
    real content (a clean coffee patch came out at 35.9 dB). This component
    carries those jumps and no pattern; the notch works on the rest (the
    same patch then comes out at 58.9 dB, and checkerboard patches gain
    0.8 dB more).
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


# Candidate name -> the detectors whose reason it answers directly: it is tried
# on an image that carries one of them. Candidates not named (the learned
# residual) are tried on every flagged image but, answering no reason in
# particular, kept only if the image is no longer flagged afterwards: on the
# quality benchmark the residual kept on still-flagged JPEG images lowered
# their blocking score by 2-6 and their PSNR by 0.4-0.6 dB.
ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": ("colour",),
    "colour+residual": ("colour",),
    "denoise": ("noise", "colour_noise"),
    "checkerboard": ("checkerboard", "colour_noise"),
    "deblur": ("blur",),
    "dequantise": ("quantisation",),
}
# Candidate name -> detectors whose reason it may explain: a colour cast shows
# in the reference embedding (the whole image is unlike the reference set) more
# often than in the colour moments. Tried on such an image too, but kept only
# if the image is no longer flagged afterwards: recolouring a collapsed image
# also lowers its distance to the references, without repairing anything
# (on the quality benchmark it cost collapsed images 4 dB). The nearest
# references' colours (``reference_colour``) are not such a reason: a collapsed
# image's narrow colour spread sets it off as often as a cast does, and
# recolouring on its account took collapsed images from -1.4 to -3.6 dB.
MAY_EXPLAIN: dict[str, tuple[str, ...]] = {
    "colour": ("embedding",),
    "colour+residual": ("embedding",),
}
# Candidate name -> the detector that must drop by MIN_PARTIAL_IMPROVEMENT for
# the fix to be kept, whatever it was tried for. Moving the colours to the
# references' makes a cast's colour moments typical (z down by 1.4 to 7.5 on
# the quality benchmark's casts and hue shifts); a collapsed image's stay
# atypical (its luma spread is what collapsed), though its embedding distance
# falls under the threshold all the same. Nor does a blue sky that JPEG or
# banding left a little off in its colour moments become more like the
# nearest references when it is recoloured towards the reference set's
# average, pink: on one split of the quality benchmark, before qa mode aimed
# colour fixes at the nearest references' colours, that cost two such patches
# 12 and 7 dB, while no colour cast lost its fix to the rule. That was
# measured in qa mode; in style mode the colour fix aims at the content's
# colours moved by the style, and a cast the references' colours barely see
# (``reference_colour`` already low) cannot drop a whole unit and is left.
WITNESSES: dict[str, str] = {
    "colour": "reference_colour",
    "colour+residual": "reference_colour",
}

# Candidate name -> faults it may bring out while it repairs another: sharpening
# amplifies noise and steps as readily as lost detail (see ``brings_out``).
BRINGS_OUT: dict[str, tuple[str, ...]] = {
    "deblur": ("noise", "colour_noise", "blocking", "checkerboard"),
}


class Eligibility(Enum):
    NO = "no"
    YES = "yes"
    IF_IT_CLEARS = "only if the result is no longer flagged"


def eligibility(candidate: str, reasons: Sequence[str]) -> Eligibility:
    """Whether a candidate may be tried on an image with these reasons, and on what terms."""
    if candidate not in ANSWERS:
        return Eligibility.IF_IT_CLEARS
    if any(REASONS[d] in reasons for d in ANSWERS[candidate]):
        return Eligibility.YES
    if any(REASONS[d] in reasons for d in MAY_EXPLAIN.get(candidate, ())):
        return Eligibility.IF_IT_CLEARS
    return Eligibility.NO


Candidate = Callable[[torch.Tensor, torch.nn.Module, torch.Tensor], torch.Tensor]

# Candidates with the learned residual in them.
LEARNED = frozenset({"residual", "colour+residual"})

CANDIDATES: dict[str, Candidate] = {
    "residual": lambda x, corrector, target: corrector(x).float(),
    "colour": lambda x, corrector, target: colour_transfer(x.float(), target),
    "colour+residual": lambda x, corrector, target: corrector(
        colour_transfer(x.float(), target)
    ).float(),
    "denoise": lambda x, corrector, target: denoise(x.float()),
    "checkerboard": lambda x, corrector, target: remove_checkerboard(x.float()),
    "deblur": lambda x, corrector, target: deblur(x.float()),
    "dequantise": lambda x, corrector, target: dequantise(x.float()),
}
"""The alternatives tried on flagged images, each ``(images, corrector, colour targets) -> images``."""


def choose_corrections(
    y: torch.Tensor,
    target: torch.Tensor,
    before: ScoreBatch,
    scorer: Scorer,
    corrector: torch.nn.Module,
    candidates: Sequence[str] = tuple(CANDIDATES),
    aim_at_neighbours: bool = False,
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Try each eligible candidate on the flagged images of ``y``.

    Colour fixes aim at ``target``, the colour detector's own target, or with
    ``aim_at_neighbours`` (qa mode, where that target is the reference set's
    average) at the colours of each image's nearest references
    (``Scorer.nearest_reference_colours``); rescoring always uses ``target``.

    Returns the images (corrected where a candidate was kept), the kept
    candidate's name per image ("" for none) and the scores after. A candidate
    is a fix only if it changes the image visibly (``changed_visibly``),
    lowers the score by ``MIN_IMPROVEMENT`` and passes ``worth_keeping``: a
    candidate with a witness must make it drop; an ``IF_IT_CLEARS``
    candidate must leave the image unflagged; any other must leave it
    unflagged, or remove the faults it answers and leave it just over the
    threshold, or lower its score by ``MIN_PARTIAL_IMPROVEMENT``; and a
    sharpening fix must not bring out other faults (``brings_out``). Of the
    fixes, the one ``preference`` puts first is kept.
    """
    best, after = y.clone(), before.score.clone()
    names = [""] * y.shape[0]
    rank: dict[int, tuple[bool, float]] = {}
    flagged = (before.score > before.threshold).nonzero().flatten().tolist()
    reasons = {i: before.reasons(i) for i in flagged}
    aim = target.clone()
    if aim_at_neighbours and flagged:
        aim[flagged] = scorer.nearest_reference_colours(y[flagged]).to(aim)
    for name in candidates:
        terms = {i: eligibility(name, reasons[i]) for i in flagged}
        eligible = [i for i in flagged if terms[i] is not Eligibility.NO]
        if not eligible:
            continue
        idx = torch.tensor(eligible, device=y.device)
        candidate = CANDIDATES[name](y[idx], corrector, aim[idx])
        rescored = scorer(candidate, target[idx])
        visible = changed_visibly(y[idx], candidate).tolist()
        change = ((candidate.float() - y[idx].float()) ** 2).mean(dim=(1, 2, 3)).tolist()
        for j, i in enumerate(eligible):
            score, start = float(rescored.score[j]), float(before.score[i])
            fixed = terms[i] is Eligibility.YES and answered_faults_gone(name, rescored, j)
            shown = witness_dropped(name, before, i, rescored, j)
            harmed = brings_out(name, before, i, rescored, j)
            key = preference(score, before.threshold, change[j])
            if (
                visible[j]
                and not harmed
                and worth_keeping(score, start, before.threshold, terms[i], fixed, shown)
                and (i not in rank or key < rank[i])
            ):
                rank[i] = key
                best[i], after[i], names[i] = candidate[j], rescored.score[j], name
    return best, names, after


def changed_visibly(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N,) whether each image of ``after`` differs visibly from ``before``: PSNR
    below ``VISIBLE_CHANGE_DB`` on the 8-bit levels the output is written as.

    A change no one can see repairs nothing anyone could see, yet it can move
    a score: the learned residual cleared flags with changes of 45 to 50 dB,
    lowering the blocking z of a JPEG patch from 10.5 to 0.7 while its PSNR
    against the clean original fell by 0.7 dB. Such an image is left as it
    was and stays flagged, rather than reported as corrected.
    """
    levels = [(t.float().clamp(0.0, 1.0) * 255.0).round() for t in (before, after)]
    mse = ((levels[1] - levels[0]) ** 2).mean(dim=(1, 2, 3))
    return mse > 255.0**2 * 10.0 ** (-VISIBLE_CHANGE_DB / 10.0)


def witness_dropped(
    candidate: str, before: ScoreBatch, index: int, after: ScoreBatch, after_index: int
) -> bool:
    """Whether the candidate's witness detector fell by a whole unit (True if it has none)."""
    witness = WITNESSES.get(candidate)
    if witness is None or witness not in before.z:
        return True
    drop = float(before.z[witness][index]) - float(after.z[witness][after_index])
    return drop >= MIN_PARTIAL_IMPROVEMENT


def brings_out(
    candidate: str, before: ScoreBatch, index: int, after: ScoreBatch, after_index: int
) -> bool:
    """Whether a sharpening fix raised a fault it may bring out (``BRINGS_OUT``)
    by a whole unit to within a unit of the threshold.

    Sharpening an image that only reads as blurred (a dark, flat patch) brings
    out its noise and steps on the 8x8 grid instead of lost detail: on the
    quality benchmark the deblurring filter took such a patch's blocking z
    from 0.0 to 3.3 and its SSIM from 0.69 to 0.57, while on blurred patches
    it left those detectors low.
    """
    floor = before.threshold - MIN_PARTIAL_IMPROVEMENT
    for d in BRINGS_OUT.get(candidate, ()):
        if d not in before.z:
            continue
        start, end = float(before.z[d][index]), float(after.z[d][after_index])
        if end > floor and end - start >= MIN_PARTIAL_IMPROVEMENT:
            return True
    return False


def answered_faults_gone(candidate: str, after: ScoreBatch, index: int) -> bool:
    """Whether every detector the candidate answers is at or below the threshold now.

    Only for classical fixes: a candidate with the learned residual in it
    (``LEARNED``) must clear the flag, as the residual alone must.
    """
    answered = [d for d in ANSWERS[candidate] if d in after.z]
    if candidate in LEARNED or not answered:
        return False
    return all(float(after.z[d][index]) <= after.threshold for d in answered)


def worth_keeping(
    score: float,
    start: float,
    threshold: float,
    terms: Eligibility,
    answered_gone: bool = False,
    witness_dropped: bool = True,
) -> bool:
    """Whether a candidate scoring ``score`` is a fix for an image that started
    at ``start``.

    A fix that removed the faults it answers but leaves the image just over
    the threshold (by less than ``MIN_PARTIAL_IMPROVEMENT``) for another
    detector is still a fix: denoising a smooth noisy sky takes its noise
    away and leaves its colour spread a little narrower than most
    references'. ``answered_gone`` says it removed them. A candidate with a
    witness detector (``WITNESSES``) must have made it drop
    (``witness_dropped``), and an ``IF_IT_CLEARS`` one must clear the flag.
    """
    if score >= start - MIN_IMPROVEMENT or not witness_dropped:
        return False
    if terms is Eligibility.IF_IT_CLEARS:
        return score <= threshold
    just_over = score <= threshold + MIN_PARTIAL_IMPROVEMENT
    return (
        score <= threshold
        or (answered_gone and just_over)
        or score <= start - MIN_PARTIAL_IMPROVEMENT
    )


def preference(score: float, threshold: float, change: float) -> tuple[bool, float]:
    """Which of several fixes to keep: the lowest key wins. One that clears
    the flag beats one that does not, and among those alike the one that
    changes the image least (``change``, its mean squared difference).

    Not the lowest score: smoothing lowers most detectors at once, so the
    harshest fix scored best. On the quality benchmark the denoiser won over
    the checkerboard filter on textured checkerboard patches, at up to -12 dB
    against the clean original where the filter alone lost far less.
    """
    return (score > threshold, change)
