"""Correction of flagged images: the learned residual plus classical fixes.

Every candidate is re-scored and the best is kept only if it scores lower than
the image it replaces, so correction can never make the report worse. The
classical fixes each undo one diagnosed fault and are tried only on images
flagged for that fault (``ANSWERS``, ``MAY_EXPLAIN``): smoothing a sharp image or
recolouring a blurred one can lower its score without fixing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import torch

from stylefix_core.fixes import (
    STRONG_DENOISE_SIGMA,
    colour_transfer,
    deblur,
    denoise,
    dequantise,
    devignette,
    remove_checkerboard,
    resaturate,
)
from stylefix_core.scoring.scorer import REASONS, ScoreBatch, Scorer, named_reason

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


# Candidate name -> the detectors whose reason it answers directly: it is tried
# on an image that carries one of them. A candidate named neither here nor in
# MAY_EXPLAIN (the learned residual) is tried on every flagged image but,
# answering no reason in particular, kept only if the image is no longer
# flagged afterwards: on the quality benchmark the residual kept on
# still-flagged JPEG images lowered their blocking score by 2-6 and their
# PSNR by 0.4-0.6 dB.
ANSWERS: dict[str, tuple[str, ...]] = {
    "colour": ("colour",),
    "colour+residual": ("colour",),
    "denoise": ("noise", "colour_noise"),
    "denoise_strong": ("noise", "colour_noise"),
    "checkerboard": ("checkerboard", "colour_noise"),
    "deblur": ("blur",),
    "dequantise": ("quantisation",),
    "devignette": ("falloff",),
}
# Candidate name -> kinds of damage it answers when the pixel classifier
# names them (``ScoreBatch.named_kind``), as it answers its detectors'
# reasons. The damage classifiers flag most blurred images before the blur
# statistic does: on one split of the quality benchmark 67 of the 74 flagged
# blurred patches were flagged by them alone, so the deblurring filter was
# never tried on them, though it gained them 1.8 dB on average. Tried on
# every image that looks damaged instead, it was kept on texture-lost,
# desaturated, banded and collapsed patches, losing 1.6 to 19 dB by kind;
# answering the blur the pixel classifier names took the benchmark's blurred
# patches from +0.74 to +1.43 dB on average (docs/quality.md). Since the
# fault statistics share one false-positive budget, the classifier alone
# flags most checkerboards and posterised patches too: answering what it
# names there took them from +8.85 to +13.17 dB and from +0.18 to +0.81 dB,
# replayed on the three splits' kept reports, no other kind moving. Named
# banding is not answered: the dequantiser gained it nothing. Answering a
# named desaturation moved no figure there, but under the lower threshold
# the shared budget brings, resaturating greyed generated assets often left
# them just over it: answered as named, 6 of 8 in
# ``test_qa_mode_gives_greyed_images_their_colour_back`` get their colour
# back (3 if only a cleared flag counts). Under the higher thresholds that
# came with reading colours against the nearest references, 13 of one split's
# 80 noisy patches were flagged by the classifiers alone and left noisy.
# Answering the noise they name, replayed on the three splits' kept reports:
# noise +7.68, +8.79, +8.26 dB -> +8.71, +9.08, +8.26; over-sharpening (its
# halos are named noise too) +0.12, +0.32, +0.18 -> +0.68, +0.32, +1.48;
# posterising +0.72, +0.81, +0.74 -> +0.64, +0.81, +0.72; no other kind moved.
NAMED: dict[str, tuple[str, ...]] = {
    "denoise": ("noise",),
    "deblur": ("blur",),
    "checkerboard": ("checkerboard",),
    "dequantise": ("posterize",),
    "resaturate": ("desaturate",),
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
#
# Desaturation has no statistic of its own: the damage classifiers see it (a
# picture greyer than the references), and so multiplying the colour back
# (``resaturate``) is tried on an image that looks damaged to either, kept only
# if it clears the flag, the signature classifier's reading falls a whole unit
# (its witness) and the picture comes no further from the references
# (``NO_FURTHER``).
MAY_EXPLAIN: dict[str, tuple[str, ...]] = {
    "colour": ("embedding",),
    "colour+residual": ("embedding",),
    "resaturate": ("damage", "pixel_damage"),
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
    "resaturate": "damage",
}

# Candidate name -> a detector it must not raise. A collapsed picture is greyer
# than its neighbours too, and colouring it clears the classifier's flag as
# readily as colouring a desaturated one; but a desaturated picture with its
# colour back is nearer the references as a whole (the reference embedding,
# which reads texture as well as colour), a collapsed one is not. On the
# quality benchmark (splits 0-4, under the job's rules) this took
# resaturation off the four collapsed patches it had cost 0.17-0.35 dB, and
# off 6 of the 82 desaturated patches it had been kept on.
NO_FURTHER: dict[str, str] = {
    "resaturate": "embedding",
}

# Candidate name -> faults it may bring out while it repairs another: sharpening
# amplifies noise and steps as readily as lost detail (see ``brings_out``).
# Nor is it tried on an image already flagged for one of them: JPEG takes fine
# detail away too, and on one split of the quality benchmark the pixel
# classifier named 10 of 80 JPEG patches blurred; sharpened, the three the
# deblurring filter was kept on lost 4.5 to 15 dB.
BRINGS_OUT: dict[str, tuple[str, ...]] = {
    "deblur": ("noise", "colour_noise", "blocking", "checkerboard"),
}


class Eligibility(Enum):
    NO = "no"
    YES = "yes"
    IF_IT_CLEARS = "only if the result is no longer flagged"


def eligibility(candidate: str, reasons: Sequence[str]) -> Eligibility:
    """Whether a candidate may be tried on an image with these reasons, and on what terms.

    A candidate named in no table (the learned residual) is tried on
    every flagged image, on the strictest terms; none is tried on an image
    flagged for a fault it may bring out (``BRINGS_OUT``).
    """
    if any(REASONS[d] in reasons for d in BRINGS_OUT.get(candidate, ())):
        return Eligibility.NO
    if any(REASONS[d] in reasons for d in ANSWERS.get(candidate, ())):
        return Eligibility.YES
    if any(named_reason(kind) in reasons for kind in NAMED.get(candidate, ())):
        return Eligibility.YES
    if any(REASONS[d] in reasons for d in MAY_EXPLAIN.get(candidate, ())):
        return Eligibility.IF_IT_CLEARS
    if candidate in ANSWERS or candidate in NAMED or candidate in MAY_EXPLAIN:
        return Eligibility.NO
    return Eligibility.IF_IT_CLEARS


Candidate = Callable[[torch.Tensor, torch.nn.Module, torch.Tensor], torch.Tensor]

# Candidates with the learned residual in them.
LEARNED = frozenset({"residual", "colour+residual"})

CANDIDATES: dict[str, Candidate] = {
    "residual": lambda x, corrector, aims: corrector(x).float(),
    "colour": lambda x, corrector, aims: colour_transfer(x.float(), aims.mean(dim=1)),
    "colour+residual": lambda x, corrector, aims: corrector(
        colour_transfer(x.float(), aims.mean(dim=1))
    ).float(),
    "denoise": lambda x, corrector, aims: denoise(x.float()),
    "denoise_strong": lambda x, corrector, aims: denoise(x.float(), STRONG_DENOISE_SIGMA),
    "checkerboard": lambda x, corrector, aims: remove_checkerboard(x.float()),
    "deblur": lambda x, corrector, aims: deblur(x.float()),
    "dequantise": lambda x, corrector, aims: dequantise(x.float()),
    "devignette": lambda x, corrector, aims: devignette(x.float()),
    "resaturate": lambda x, corrector, aims: resaturate(x.float(), aims),
}
"""The alternatives tried on flagged images, each ``(images, corrector, colour aims) -> images``;
the aims are (N, K, 6) ``colour_stats`` rows each image could have (``choose_corrections``)."""


def choose_corrections(
    y: torch.Tensor,
    before: ScoreBatch,
    scorer: Scorer,
    corrector: torch.nn.Module,
    candidates: Sequence[str] = tuple(CANDIDATES),
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Try each eligible candidate on the flagged images of ``y``.

    Colour fixes aim at the colours ``before`` was read against (its
    ``aims``: in qa mode those of each image's nearest references): the
    average of them moves a cast, the least colourful of them bounds how
    much colour was lost. Each candidate is rescored against the same aims.

    Returns the images (corrected where a candidate was kept), the kept
    candidate's name per image ("" for none) and the scores after. A candidate
    is a fix only if it changes the image visibly (``changed_visibly``),
    lowers the score by ``MIN_IMPROVEMENT`` and passes ``worth_keeping``: a
    candidate with a witness must make it drop; an ``IF_IT_CLEARS``
    candidate must leave the image unflagged; any other must leave it
    unflagged, or remove the faults it answers and leave it just over the
    threshold, or lower its score by ``MIN_PARTIAL_IMPROVEMENT``; a
    sharpening fix must not bring out other faults (``brings_out``), nor a
    fix raise the detector it must not (``moved_further``). Failing those,
    a classical fix that removed the faults it answers and made no other
    reading worse (``nothing_else_worse``) is kept as a last resort. Of the
    fixes, the one ``preference`` puts first is kept.
    """
    best, after = y.clone(), before.score.clone()
    names = [""] * y.shape[0]
    rank: dict[int, tuple[bool, float]] = {}
    flagged = (before.score > before.threshold).nonzero().flatten().tolist()
    reasons = {i: before.reasons(i) for i in flagged}
    aims = before.aims.to(y.device)
    for name in candidates:
        terms = {i: eligibility(name, reasons[i]) for i in flagged}
        eligible = [i for i in flagged if terms[i] is not Eligibility.NO]
        if not eligible:
            continue
        idx = torch.tensor(eligible, device=y.device)
        candidate = CANDIDATES[name](y[idx], corrector, aims[idx])
        rescored = scorer(candidate, aims[idx])
        visible = changed_visibly(y[idx], candidate).tolist()
        change = ((candidate.float() - y[idx].float()) ** 2).mean(dim=(1, 2, 3)).tolist()
        for j, i in enumerate(eligible):
            score, start = float(rescored.score[j]), float(before.score[i])
            fixed = terms[i] is Eligibility.YES and answered_faults_gone(name, rescored, j)
            shown = witness_dropped(name, before, i, rescored, j)
            harmed = brings_out(name, before, i, rescored, j) or moved_further(
                name, before, i, rescored, j
            )
            kept = worth_keeping(score, start, before.threshold, terms[i], fixed, shown)
            last_resort = (
                not kept
                and fixed
                and shown
                and score < start - MIN_IMPROVEMENT
                and nothing_else_worse(before, i, rescored, j)
            )
            key = preference(score, before.threshold, change[j], last_resort)
            if (
                visible[j]
                and not harmed
                and (kept or last_resort)
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


def _fall(
    detector: str | None, before: ScoreBatch, index: int, after: ScoreBatch, after_index: int
) -> float | None:
    """How far ``detector``'s z fell from ``before`` to ``after``; None if it is not scored."""
    if detector is None or detector not in before.z:
        return None
    return float(before.z[detector][index]) - float(after.z[detector][after_index])


def witness_dropped(
    candidate: str, before: ScoreBatch, index: int, after: ScoreBatch, after_index: int
) -> bool:
    """Whether the candidate's witness detector fell by a whole unit (True if it has none)."""
    drop = _fall(WITNESSES.get(candidate), before, index, after, after_index)
    return drop is None or drop >= MIN_PARTIAL_IMPROVEMENT


def moved_further(
    candidate: str, before: ScoreBatch, index: int, after: ScoreBatch, after_index: int
) -> bool:
    """Whether the candidate raised the detector it must not raise (``NO_FURTHER``)."""
    drop = _fall(NO_FURTHER.get(candidate), before, index, after, after_index)
    return drop is not None and drop < 0.0


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
    """Whether every detector the candidate answers is at or below the
    threshold now, and the pixel classifier names none of its kinds.

    Only for classical fixes: a candidate with the learned residual in it
    (``LEARNED``) must clear the flag, as the residual alone must.
    """
    answered = [d for d in ANSWERS.get(candidate, ()) if d in after.z]
    if candidate in LEARNED or not answered:
        return False
    if after.named_kind(index) in NAMED.get(candidate, ()):
        return False
    return all(float(after.z[d][index]) <= after.threshold for d in answered)


def nothing_else_worse(before: ScoreBatch, index: int, after: ScoreBatch, after_index: int) -> bool:
    """Whether no detector reads worse after the candidate than the flag allows:
    none newly over the threshold, none already over it higher than before.

    The last resort for a fix that removed the faults it answers but leaves
    the image flagged by a reading it lowered without clearing. Denoising
    a noisy patch clears the noise statistics, yet the pixel classifier
    may read the smoothed result as damaged too, if less so, and the score
    falls by under the whole unit ``worth_keeping`` asks: on the quality
    benchmark this keeps fixes on noisy, blurred and posterised patches
    that had none (docs/quality.md).
    """
    for d, z in after.z.items():
        if d not in before.z:
            continue
        start, end = float(before.z[d][index]), float(z[after_index])
        if end > max(before.threshold, start):
            return False
    return True


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


def preference(
    score: float, threshold: float, change: float, last_resort: bool = False
) -> tuple[bool, bool, float]:
    """Which of several fixes to keep: the lowest key wins. One that clears
    the flag beats one that does not, a fix kept by ``worth_keeping`` beats
    one kept only as a ``last_resort``, and among those alike the one that
    changes the image least (``change``, its mean squared difference).
    The last resort comes after every other fix so that it only ever
    corrects an image nothing else would.

    Not the lowest score: smoothing lowers most detectors at once, so the
    harshest fix scored best. On the quality benchmark the denoiser won over
    the checkerboard filter on textured checkerboard patches, at up to -12 dB
    against the clean original where the filter alone lost far less.
    """
    return (score > threshold, last_resort, change)
