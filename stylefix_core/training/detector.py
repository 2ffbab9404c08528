"""The autoencoder of the detector and the calibration of the combined score."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from stylefix_core import colour, inject
from stylefix_core.bundle import Calibration, DetectorCalibration
from stylefix_core.models import (
    ConvAutoencoder,
    DamageClassifier,
    PixelDamageClassifier,
    ReferenceKnn,
)
from stylefix_core.scoring.scorer import DETECTORS, STATISTIC_DETECTORS, Scorer
from stylefix_core.scoring.signature import SIGNATURE_DIM, STATISTICS, signature
from stylefix_core.training.checkpoint import Checkpoint
from stylefix_core.training.data import CropSampler, visibly_damaged
from stylefix_core.training.pixel_damage import (
    PixelDamageTrainConfig,
    train_pixel_damage_classifier,
)
from stylefix_core.training.progress import Progress


@dataclass(frozen=True)
class DetectorTrainConfig:
    steps: int = 600
    batch_size: int = 8
    crop: int = 64
    lr: float = 2e-3
    seed: int = 0
    base_channels: int = 16
    latent_channels: int = 8
    target_false_positive_rate: float = 0.01
    # The damage classifier: damaged copies per reference image, training kinds only.
    damage_copies: int = 12
    damage_severity: tuple[float, float] = (0.2, 1.0)
    damage_hidden: int = 32
    damage_steps: int = 1500
    damage_lr: float = 1e-2
    damage_weight_decay: float = 1e-2
    # Good images re-encoded as JPEG at quality 95 down to 90 (4:4:4): the
    # ``jpeg_blocking`` injector's lowest severities, what catalogs often hold.
    damage_clean_jpeg: tuple[float, float] = (0.0, 0.055)
    pixel: PixelDamageTrainConfig = field(default_factory=PixelDamageTrainConfig)

    def autoencoder_settings(self) -> tuple:
        """What the autoencoder's training reads, and so its checkpoint's
        identity: a change to the classifiers' settings must not make a run
        train the autoencoder again."""
        return (
            self.steps,
            self.batch_size,
            self.crop,
            self.lr,
            self.seed,
            self.base_channels,
            self.latent_channels,
        )

    def scaled(self, scale: float) -> DetectorTrainConfig:
        """The step counts of the networks trained on crops times ``scale`` (at
        least 2): for quick checks of a whole training."""
        return replace(
            self,
            steps=max(2, int(self.steps * scale)),
            pixel=replace(self.pixel, steps=max(2, int(self.pixel.steps * scale))),
        )


def train_autoencoder(
    reference: list[torch.Tensor],
    cfg: DetectorTrainConfig,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
) -> ConvAutoencoder:
    """Learn to reconstruct reference crops; what it cannot reconstruct is unusual."""
    torch.manual_seed(cfg.seed)
    model = ConvAutoencoder(cfg.base_channels, cfg.latent_channels).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    crops = CropSampler(reference, cfg.crop, seed=cfg.seed + 2)
    progress = Progress("autoencoder", cfg.steps, cfg.batch_size)
    checkpoint = checkpoint or Checkpoint()
    stateful = {"model": model, "optimiser": optimiser}
    generators = {"crops": crops.generator}
    for step in range(checkpoint.restore(stateful, generators), cfg.steps):
        x = crops.batch(cfg.batch_size).to(device)
        loss = F.mse_loss(model(x), x)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        progress.update(step, {"mse": float(loss.detach())})
        checkpoint.maybe_save(step, cfg.steps, stateful, generators)
    return model.eval().requires_grad_(False)


def reencoded(images: list[torch.Tensor], cfg: DetectorTrainConfig) -> list[torch.Tensor]:
    """Each image re-encoded as a high-quality JPEG (``cfg.damage_clean_jpeg``), seeded."""
    generator = torch.Generator().manual_seed(cfg.seed + 4)
    low, high = cfg.damage_clean_jpeg
    jpeg = inject.get_injector("jpeg_blocking")
    return [
        jpeg(image, low + (high - low) * float(torch.rand(1, generator=generator)), generator)
        for image in images
    ]


def train_damage_classifier(
    reference: list[torch.Tensor],
    cfg: DetectorTrainConfig,
    device: torch.device,
    also_clean: list[torch.Tensor] | None = None,
) -> DamageClassifier:
    """Tell reference images from copies damaged by the training kinds, by signature.

    Each damaged copy gets one random training kind (never a held-out one) at
    a random severity, drawn until the damage is visible (``visibly_damaged``).
    ``also_clean`` are more good images, not fitted to elsewhere:
    high-quality JPEG versions of the references, without which the
    classifier reads the faint rounding of every quality-95 JPEG in a
    catalog as damage (3 of the 9 clean JPEG assets of the sample catalog
    were flagged so). The two classes are weighted equally. Full-batch Adam
    on a few thousand 38-dimensional vectors takes seconds, so there is no
    checkpoint to resume from. The logit is calibrated afterwards like every
    other detector, on held-out reference images.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed + 3)
    damaged = [
        visibly_damaged(image, generator, cfg.damage_severity).image
        for _ in range(cfg.damage_copies)
        for image in reference
    ]
    reference_sig = _signatures(reference, device)
    clean_sig = torch.cat([reference_sig, _signatures(list(also_clean or []), device)])
    damaged_sig = _signatures(damaged, device)
    model = DamageClassifier(SIGNATURE_DIM, cfg.damage_hidden).to(device)
    model.fit_standardisation(reference_sig)
    x = torch.cat([clean_sig, damaged_sig])
    y = torch.cat([torch.zeros(len(clean_sig)), torch.ones(len(damaged_sig))]).to(device)
    weight = torch.where(y > 0, 1.0, len(damaged_sig) / len(clean_sig))
    optimiser = torch.optim.Adam(
        model.parameters(), lr=cfg.damage_lr, weight_decay=cfg.damage_weight_decay
    )
    progress = Progress("damage classifier", cfg.damage_steps, len(x))
    for step in range(cfg.damage_steps):
        loss = F.binary_cross_entropy_with_logits(model(x), y, weight=weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        progress.update(step, {"bce": float(loss.detach())})
    return model.eval().requires_grad_(False)


def _signatures(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Signatures one image at a time: reference images may differ in size."""
    with torch.inference_mode():
        rows = [signature(image[None].to(device)) for image in images]
    return torch.cat(rows).clone() if rows else torch.zeros(0, SIGNATURE_DIM, device=device)


def _stack_stats(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([colour.colour_stats(img[None].to(device)) for img in images]).cpu()


def fit_embedding(
    reference: list[torch.Tensor], device: torch.device, seed: int = 0, k: int = 5
) -> ReferenceKnn:
    """The reference set as descriptors for nearest-neighbour scoring."""
    model = ReferenceKnn(len(reference), seed=seed, k=k, colour_layout=True).to(device)
    with torch.inference_mode():
        descriptors = torch.cat([model.describe(img[None].to(device)) for img in reference])
    model.fit(descriptors.clone())
    return model.eval().requires_grad_(False)


@dataclass(frozen=True)
class Detectors:
    """The detectors fitted to a reference set; the rest are fixed statistics."""

    autoencoder: ConvAutoencoder
    embedding: ReferenceKnn
    damage: DamageClassifier
    pixel_damage: PixelDamageClassifier


def train_detectors(
    images: list[torch.Tensor],
    also_clean: list[torch.Tensor],
    cfg: DetectorTrainConfig,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
) -> Detectors:
    """Every detector fitted to ``images``; ``also_clean`` are their JPEG copies."""
    return Detectors(
        train_autoencoder(images, cfg, device, checkpoint),
        fit_embedding(images, device, seed=cfg.seed),
        train_damage_classifier(images, cfg, device, also_clean),
        train_pixel_damage_classifier(images, also_clean, cfg.pixel, device, cfg.seed),
    )


# Image statistics that read the image alone: no reference image was fitted to
# them, so every reference image, fitted to or not, is a fair sample of their
# spread. ``colour`` is left out: it measures the distance to the fitted
# images' average colour.
UNFITTED = frozenset(STATISTIC_DETECTORS) - {"colour"}
# Detectors that share one false-positive budget: the fault statistics that
# the signature classifier also reads. Each answers one narrow fault, and with
# a budget apiece these eight set the largest z of about half the clean test
# images of the quality benchmark, so a kind that moves one other detector
# (a vignette, a hue shift) had to clear the highest of eight clean
# statistics. Scaled together, the largest of their z-scores on the
# reference images looks like a single detector's. Rescaled so on the kept
# reports of a run of the benchmark, mean AUROC over the kinds rose from
# 0.938 to 0.943; over-sharpening, which the noise statistics see best, fell
# most, from 0.908 to 0.892 (docs/quality.md has the job's figures).
SHARED_BUDGET = tuple(d for d in DETECTORS if d in STATISTICS)
assert set(SHARED_BUDGET) <= UNFITTED  # scaled together on every reference image


def calibrate(
    detectors: Detectors,
    discriminator: nn.Module,
    reference_fit: list[torch.Tensor],
    held_out: list[tuple[torch.Tensor, torch.Tensor | None]],
    style_shift: list[float],
    target_fpr: float,
    device: torch.device,
    names: tuple[str, ...] = DETECTORS,
    cross_fitted: list[tuple[Detectors, list[tuple[torch.Tensor, torch.Tensor | None]]]] = (),
) -> Calibration:
    """Set normalisation and threshold from reference images the detectors never saw.

    ``held_out`` pairs each held-out reference image with its content image
    (style mode) or None (qa mode), so both modes' colour targets are
    calibrated. ``cross_fitted`` gives more reference images in the same
    form, each with detectors fitted without it (``cross_fit``): the fitted
    images, scored out of sample, so that the threshold rests on every
    reference image and not a third of them. Each detector is centred on its
    median and scaled so that both its MAD and its upper tail (98th
    percentile) look like a unit normal's; equalising the tails keeps one
    heavy-tailed detector from owning the whole false-positive budget of the
    max-combined score. The learned detectors that ship (and the colour
    distance, measured from the fitted images' colours) are scaled on the
    held-out images; a statistic in ``UNFITTED`` on every image. The
    threshold is the (1 - target_fpr) quantile, by ``tail_quantile``, of the
    combined score of every image, each set of cross-fitted detectors scaled
    on the images it scores: two fits of the same network on as many images
    differ in their level (an autoencoder's error, a classifier's logit): read
    with the shipped networks' scales, one fold of the default bundle sat
    0.75 higher at its 90th percentile than the held-out images. Each image's
    combined score is read with scales measured without it
    (``_left_out_combined``), as a new image's will be: a scale set by the
    98th percentile of a hundred images is set by their top two, so the
    images it was measured on sit lower in its tail than new images do.
    """
    stats = _stack_stats(reference_fit, device)
    provisional = Calibration(
        detectors={d: DetectorCalibration(0.0, 1.0) for d in names},
        threshold=0.0,
        target_false_positive_rate=target_fpr,
        measured_false_positive_rate=0.0,
        reference_stats=stats.mean(0).tolist(),
        reference_spread=stats.std(0).clamp(min=0.02).tolist(),
        style_shift=style_shift,
    )

    def raw_of(fitted: Detectors, images: list) -> dict[str, torch.Tensor]:
        scorer = Scorer(
            fitted.autoencoder,
            discriminator,
            fitted.embedding,
            provisional,
            fitted.damage,
            fitted.pixel_damage,
        )
        return _raw(scorer, images, device)

    held = raw_of(detectors, held_out)
    scored = [images for _, images in cross_fitted if images]
    rest = [raw_of(fitted, images) for fitted, images in cross_fitted if images]
    every = {d: torch.cat([held[d], *(r[d] for r in rest)]) for d in names}
    scales = {d: _robust_scale(every[d] if d in UNFITTED else held[d]) for d in names}
    scales.update(_shared_budget(scales, every))
    # an image scored in both modes is the same tensor twice
    keys = [torch.tensor([id(image) for image, _ in images]) for images in (held_out, *scored)]
    combined = _left_out_combined([held, *rest], keys)
    threshold = tail_quantile(combined, 1.0 - target_fpr)
    measured = float((combined > threshold).float().mean())
    return Calibration(
        **{
            **provisional.__dict__,
            "detectors": scales,
            "threshold": threshold,
            "measured_false_positive_rate": measured,
        }
    )


def cross_fit(
    fit: list[torch.Tensor],
    fit_clean: list[torch.Tensor],
    held: list[torch.Tensor],
    held_clean: list[torch.Tensor],
    cfg: DetectorTrainConfig,
    device: torch.device,
) -> list[tuple[Detectors, list[int]]]:
    """Detectors for scoring the fitted images out of sample, with the indices
    of ``fit`` each may score.

    Each half of the fitted images is scored by detectors fitted to the other
    half and the held-out images: as many images as the detectors that ship
    were fitted to, so their scores spread as those detectors' do on images
    they never saw. (Detectors fitted to every reference image and
    calibrated on cross-fitted scores were measured too: their scores on new
    images sit lower than the cross-fitted ones, and the quality benchmark's
    AUROC fell from 0.908 to 0.892.) ``*_clean`` are the images' JPEG copies,
    in the same order.
    """
    if len(fit) < 2:
        return []
    half = len(fit) // 2
    folds = [list(range(half)), list(range(half, len(fit)))]
    out = []
    for scored, other in (folds, folds[::-1]):
        images = [fit[i] for i in other] + held
        clean = [fit_clean[i] for i in other] + held_clean
        out.append((train_detectors(images, clean, cfg, device), scored))
    return out


# Below this many held-out images beyond the threshold, a fitted tail may raise it.
EMPIRICAL_TAIL_COUNT = 10
# The share of the highest scores the tail is fitted to.
TAIL_SHARE = 0.2
# Names the way thresholds are set, for bundle versions: rename it whenever
# ``tail_quantile``, the images ``calibrate`` reads or the way it scales change,
# so that a bundle set another way is another version.
THRESHOLD_METHOD = (
    f"crossfit2/leave-image-out/tail{TAIL_SHARE}/{EMPIRICAL_TAIL_COUNT}"
    f"/shared:{','.join(SHARED_BUDGET)}/one-sided"
)


def tail_quantile(scores: torch.Tensor, level: float) -> float:
    """The ``level`` quantile of ``scores``; where too few scores lie beyond it to
    read it off, the higher of that reading and an exponential fit to their
    upper tail.

    A 1 % false-positive target on a hundred held-out images puts the
    threshold between the two highest, so one image more or less moves it by
    a whole unit: across three splits of the quality benchmark, thresholds
    read off the data let through 1.0 % to 6.8 % of clean test images. Above
    the 80th percentile the combined score (a maximum of z-scores) falls off
    like an exponential, whose scale is the mean excess over that percentile:
    a fit that rests on the top fifth of the images, not the top one or two.
    Taking the higher of the two keeps the threshold where the held-out
    images put it when their tail is heavier than the fit (the reading
    interpolates between two scores, so one image over the target may pass).
    With ``EMPIRICAL_TAIL_COUNT`` or more images beyond the quantile, it is
    read off the data as it is. A score that is not finite is an error: it
    would make the threshold NaN, and a NaN threshold flags nothing.
    """
    values = scores.double().flatten()
    if not bool(torch.isfinite(values).all()):
        raise ValueError("held-out scores must be finite to set a threshold")
    empirical = float(torch.quantile(values, level))
    beyond = round(len(values) * (1.0 - level), 6)
    if beyond >= EMPIRICAL_TAIL_COUNT or level <= 1.0 - TAIL_SHARE:
        return empirical
    start = torch.quantile(values, 1.0 - TAIL_SHARE)
    excess = values[values > start] - start
    if len(excess) < 2 or level >= 1.0:  # nothing to fit, or no false positive allowed
        return float(values.max())
    fitted = float(start + excess.mean() * math.log(TAIL_SHARE / (1.0 - level)))
    return max(empirical, fitted)


def _shared(names: Collection[str]) -> list[str]:
    """The detectors of ``names`` that share a budget; none if one alone."""
    shared = [d for d in SHARED_BUDGET if d in names]
    return shared if len(shared) > 1 else []


def _shared_budget(
    scales: dict[str, DetectorCalibration], every: dict[str, torch.Tensor]
) -> dict[str, DetectorCalibration]:
    """The ``SHARED_BUDGET`` detectors' calibrations, each followed by the
    centre and scale of the group's largest z on every reference image
    (``every``), folded into one centre and scale per detector: scoring
    and reasons read them as any other detector's."""
    shared = _shared(scales)
    if not shared:
        return {}
    z = torch.stack([(every[d] - scales[d].center) / scales[d].scale for d in shared], 1)
    group = _robust_scale(z.amax(1))
    return {
        d: DetectorCalibration(
            scales[d].center + group.center * scales[d].scale,
            max(scales[d].scale * group.scale, SCALE_FLOOR),
        )
        for d in shared
    }


def _left_out_combined(
    groups: list[dict[str, torch.Tensor]], keys: list[torch.Tensor]
) -> torch.Tensor:
    """The combined score of every calibration image, each read with every
    detector scaled without it: a learned detector on the other images its
    fitted set scores (see ``calibrate``), a statistic in ``UNFITTED`` on
    every other image, and the ``SHARED_BUDGET`` group's largest z too.
    ``keys`` name the image of each score, group by group: an image scored
    in both modes is left out with both its scores."""
    every = {d: torch.cat([group[d] for group in groups]) for d in groups[0]}
    every_key = torch.cat(keys)
    z = []
    for group, key in zip(groups, keys, strict=True):
        z.append({})
        for d, values in group.items():
            pool, pool_key = (every[d], every_key) if d in UNFITTED else (values, key)
            center, scale = _left_out_scales(pool, pool_key, key)
            z[-1][d] = (values - center) / scale
    shared = _shared(groups[0])
    if shared:
        largest = [torch.stack([g[d] for d in shared], 1).amax(1) for g in z]
        center, scale = _left_out_scales(torch.cat(largest), every_key, every_key)
        center, scale = center.expand(len(every_key)), scale.expand(len(every_key))
        for g, count in zip(z, [len(k) for k in keys], strict=True):
            for d in shared:
                g[d] = (g[d] - center[:count]) / scale[:count]
            center, scale = center[count:], scale[count:]
    return torch.cat([torch.stack(list(g.values()), 1).amax(1) for g in z])


# Rows of the leave-one-out matrix built at once, to bound its memory (rows
# times pool size floats).
_LEFT_OUT_ROWS = 512
# Under this many images left, leaving one out moves the median and the MAD,
# not only the tail, by as much as the spread itself (with two images, one
# left out leaves a scale of zero): such pools are scaled on every image.
LEFT_OUT_MIN_POOL = 20
# Beyond this many images one image moves the 98th percentile it is scaled by
# no further than its neighbours' spacing, and leaving each out would cost a
# sort of the pool per image: larger pools are scaled on every image too.
LEFT_OUT_MAX_POOL = 4096
# The least scale a detector is given, so that a constant one divides by something.
SCALE_FLOOR = 1e-3


def _left_out_scales(
    pool: torch.Tensor, pool_key: torch.Tensor, left_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and scale (``_robust_scale``) of ``pool`` without the values
    whose key is each of ``left_out``, one pair per key. A pool with fewer
    than ``LEFT_OUT_MIN_POOL`` values left, or more than ``LEFT_OUT_MAX_POOL``,
    is scaled on every value."""
    most_of_one = int(torch.unique(pool_key, return_counts=True)[1].max())
    if len(pool) - most_of_one < LEFT_OUT_MIN_POOL or len(pool) > LEFT_OUT_MAX_POOL:
        center, scale = _centre_and_scale(pool[None])
        return center, scale.clamp(min=SCALE_FLOOR)
    centres, scales = [], []
    for first in range(0, len(left_out), _LEFT_OUT_ROWS):
        block = left_out[first : first + _LEFT_OUT_ROWS, None]
        rows = pool.expand(len(block), -1).masked_fill(pool_key[None] == block, float("nan"))
        centre, scale = _centre_and_scale(rows)
        centres.append(centre)
        scales.append(scale.clamp(min=SCALE_FLOOR))
    return torch.cat(centres), torch.cat(scales)


def _robust_scale(values: torch.Tensor) -> DetectorCalibration:
    center, scale = _centre_and_scale(values[None])
    return DetectorCalibration(float(center), max(float(scale), SCALE_FLOOR))


def _centre_and_scale(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The median of each row of ``rows`` (N, M), and a scale for which both
    the MAD and the upper tail (98th percentile) look like a unit normal's.
    NaNs in a row are values left out of it."""
    center = rows.nanmedian(dim=1).values
    spread = rows - center[:, None]
    mad = spread.abs().nanmedian(dim=1).values * 1.4826
    tail = torch.nanquantile(spread, 0.98, dim=1) / 2.054  # the 98th percentile of a unit normal
    return center, torch.maximum(mad, tail)


def _raw(
    scorer: Scorer, images: list[tuple[torch.Tensor, torch.Tensor | None]], device: torch.device
) -> dict[str, torch.Tensor]:
    rows: dict[str, list[torch.Tensor]] = {d: [] for d in scorer.detectors}
    with torch.inference_mode():
        for image, content in images:
            x = image[None].to(device)
            aims = None if content is None else scorer.style_aims(content[None].to(device))
            for d, value in scorer.raw(x, aims).items():
                rows[d].append(value.cpu())
    return {d: torch.cat(v) for d, v in rows.items()}
