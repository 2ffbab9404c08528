"""Training the pixel damage classifier: reference crops against damaged copies."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylefix_core import inject
from stylefix_core.models import PixelDamageClassifier
from stylefix_core.training.data import at_least, random_window, visibly_damaged
from stylefix_core.training.progress import Progress


@dataclass(frozen=True)
class PixelDamageTrainConfig:
    steps: int = 1500
    # crops of each class per step
    batch_size: int = 32
    crop: int = 64
    # damaged crops per reference image, at most ``max_damaged`` in all
    copies: int = 8
    max_damaged: int = 8192
    severity: tuple[float, float] = (0.2, 1.0)
    channels: int = 8
    max_lr: float = 3e-3
    weight_decay: float = 1e-4
    # how much more often a reference crop is drawn than one of its JPEG copies
    reference_weight: float = 4.0


def train_pixel_damage_classifier(
    reference: list[torch.Tensor],
    also_clean: list[torch.Tensor],
    cfg: PixelDamageTrainConfig,
    device: torch.device,
    seed: int = 0,
) -> PixelDamageClassifier:
    """Tell crops of reference images from crops damaged by the training kinds.

    Each damaged crop gets one random training kind (never a held-out one) at
    a random severity, drawn until the damage is visible (``visibly_damaged``).
    ``also_clean`` are the references' high-quality JPEG copies, as for the
    signature classifier: a fifth of the clean crops. Every crop is rounded
    to 8 bits, as every decoded image is: the references may be a generator's
    unrounded outputs, and the network would otherwise learn that rounding
    is damage. The loss is the damage logit's binary cross-entropy plus the
    cross-entropy of naming the kind (clean or which one). Learning to name
    the kind did not cost ranking: in the quality benchmark's job the
    classifier alone ranked the anomalies at a mean AUROC over the kinds of
    0.907, 0.891 and 0.907 on splits 0-2, from 0.886, 0.881 and 0.904.
    Each crop is seen in a random one of its eight rotations and mirror
    images. One-cycle Adam: at a constant rate the same network stalled for
    hundreds of steps. The steps are fixed, whatever the number of references (about 2 min 20 s on two
    CPU cores), so there is no checkpoint to resume from. The logit is
    calibrated afterwards like every other detector.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 5)
    clean = [at_least(image, cfg.crop) for image in [*reference, *also_clean]]
    clean_weights = torch.tensor([cfg.reference_weight] * len(reference) + [1.0] * len(also_clean))
    damaged, kinds = _damaged_crops(clean[: len(reference)], cfg, generator)
    model = PixelDamageClassifier(cfg.channels, kinds=inject.CORRECTOR_TRAINING_KINDS).to(device)
    named = torch.tensor([1 + model.kinds.index(kind) for kind in kinds])
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, cfg.max_lr, total_steps=cfg.steps)
    labels = torch.cat([torch.zeros(cfg.batch_size), torch.ones(cfg.batch_size)]).to(device)
    progress = Progress("pixel damage classifier", cfg.steps, 2 * cfg.batch_size)
    for step in range(cfg.steps):
        picks = torch.multinomial(clean_weights, cfg.batch_size, True, generator=generator)
        chosen = torch.randint(len(damaged), (cfg.batch_size,), generator=generator)
        crops = [_view(clean[i], cfg.crop, generator) for i in picks.tolist()]
        crops += [_view(damaged[i].float() / 255, cfg.crop, generator) for i in chosen.tolist()]
        logits = model.logits(torch.stack(crops).to(device))
        names = torch.cat([torch.zeros(cfg.batch_size, dtype=torch.long), named[chosen]])
        loss = F.binary_cross_entropy_with_logits(
            model.damage_logit(logits), labels
        ) + F.cross_entropy(logits, names.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        progress.update(step, {"bce+naming": float(loss.detach())})
    return model.eval().requires_grad_(False)


def _damaged_crops(
    images: list[torch.Tensor], cfg: PixelDamageTrainConfig, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[str]]:
    """Damaged crops as uint8, so that a large reference set stays small in
    memory, and the kind that damaged each."""
    crops, kinds = [], []
    for source in _damage_sources(len(images), cfg, generator):
        crop = _view(images[source], cfg.crop, generator)
        injected = visibly_damaged(crop, generator, cfg.severity)
        crops.append((injected.image.clamp(0, 1) * 255).round().to(torch.uint8))  # as decoded
        kinds.append(injected.kind)
    return crops, kinds


def _damage_sources(
    count: int, cfg: PixelDamageTrainConfig, generator: torch.Generator
) -> list[int]:
    """Which reference each damaged crop comes from: ``cfg.copies`` of each in
    turn, or under ``cfg.max_damaged`` a random share of those spread over
    every reference, not the first ones."""
    wanted = cfg.copies * count
    sources = torch.arange(wanted) % max(count, 1)
    if wanted > cfg.max_damaged:
        sources = sources[torch.randperm(wanted, generator=generator)[: cfg.max_damaged]]
    return sources.tolist()


def _view(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` crop, rounded to 8 bits, in a random one of its eight dihedral views."""
    crop = (random_window(image, size, generator).clamp(0, 1) * 255).round() / 255
    turn = int(torch.randint(8, (1,), generator=generator))
    crop = torch.rot90(crop, turn % 4, dims=(-2, -1))
    return crop.flip(-1) if turn >= 4 else crop
