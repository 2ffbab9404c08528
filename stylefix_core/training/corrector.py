"""Training of the residual corrector on injected anomalies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylefix_core import inject
from stylefix_core.models import ResidualCorrector
from stylefix_core.training.checkpoint import Checkpoint
from stylefix_core.training.data import CropSampler
from stylefix_core.training.progress import Progress


@dataclass(frozen=True)
class CorrectorTrainConfig:
    steps: int = 1500
    batch_size: int = 8
    crop: int = 64
    lr: float = 2e-3
    seed: int = 0
    channels: int = 24
    kinds: tuple[str, ...] = ()  # empty: inject.CORRECTOR_TRAINING_KINDS


def train_corrector(
    reference: Sequence[torch.Tensor],
    cfg: CorrectorTrainConfig,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
) -> ResidualCorrector:
    """Learn R so that x_damaged + R(x_damaged) is close to the clean image.

    A quarter of each batch is left clean, which teaches R to leave good
    images alone.
    """
    torch.manual_seed(cfg.seed)
    kinds = list(cfg.kinds or inject.CORRECTOR_TRAINING_KINDS)
    model = ResidualCorrector(cfg.channels).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    crops = CropSampler(list(reference), cfg.crop, seed=cfg.seed + 3)
    generator = torch.Generator().manual_seed(cfg.seed + 4)
    progress = Progress("corrector", cfg.steps, cfg.batch_size)
    checkpoint = checkpoint or Checkpoint()
    stateful = {"model": model, "optimiser": optimiser}
    generators = {"crops": crops.generator, "inject": generator}
    for step in range(checkpoint.restore(stateful, generators), cfg.steps):
        clean = crops.batch(cfg.batch_size)
        damaged = _damage(clean, kinds, generator)
        loss = F.mse_loss(model(damaged.to(device)), clean.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        progress.update(step, {"mse": float(loss.detach())})
        checkpoint.maybe_save(step, cfg.steps, stateful, generators)
    return model.eval().requires_grad_(False)


def _damage(clean: torch.Tensor, kinds: list[str], generator: torch.Generator) -> torch.Tensor:
    damaged = clean.clone()
    keep_clean = max(1, clean.shape[0] // 4)
    for i in range(keep_clean, clean.shape[0]):
        damaged[i] = inject.random_injection(clean[i], generator, kinds).image
    return damaged
