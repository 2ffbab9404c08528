"""Adversarial style training of the generator against the PatchGAN discriminator."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stylefix_core.models import PatchDiscriminator, StyleGenerator
from stylefix_core.training.checkpoint import Checkpoint
from stylefix_core.training.data import CropSampler
from stylefix_core.training.losses import (
    RandomFeatures,
    colour_loss,
    lsgan,
    structure_loss,
    style_loss,
)
from stylefix_core.training.progress import Progress


@dataclass(frozen=True)
class StyleTrainConfig:
    steps: int = 800
    batch_size: int = 4
    crop: int = 64
    lr: float = 2e-3
    seed: int = 0
    base_channels: int = 16
    n_residual: int = 3
    weight_style: float = 0.3
    weight_structure: float = 2.0
    weight_colour: float = 50.0
    weight_adversarial: float = 0.1


@dataclass
class StyleModels:
    generator: StyleGenerator
    discriminator: PatchDiscriminator
    history: list[dict[str, float]]


def train_style(
    content: list[torch.Tensor],
    style: list[torch.Tensor],
    cfg: StyleTrainConfig,
    device: torch.device,
    checkpoint: Checkpoint | None = None,
) -> StyleModels:
    """Train G to carry content into the style of the style images; D learns the style's patches.

    The discriminator is trained on style patches as real and generator
    outputs as fake; at serving time its logit is the "looks like this style"
    detector of the scorer.
    """
    torch.manual_seed(cfg.seed)
    gen = StyleGenerator(cfg.base_channels, cfg.n_residual).to(device)
    disc = PatchDiscriminator(cfg.base_channels).to(device)
    features = RandomFeatures(seed=cfg.seed).to(device)
    content_crops = CropSampler(content, cfg.crop, seed=cfg.seed)
    style_crops = CropSampler(style, cfg.crop, seed=cfg.seed + 1)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr / 2, betas=(0.5, 0.999))
    progress, history = Progress("style", cfg.steps, cfg.batch_size), []
    checkpoint = checkpoint or Checkpoint()
    stateful = {"generator": gen, "discriminator": disc, "opt_g": opt_g, "opt_d": opt_d}
    generators = {"content": content_crops.generator, "style": style_crops.generator}
    for step in range(checkpoint.restore(stateful, generators), cfg.steps):
        x = content_crops.batch(cfg.batch_size).to(device)
        s = style_crops.batch(cfg.batch_size).to(device)
        y = gen(x)
        loss_d = lsgan(disc(s), True) + lsgan(disc(y.detach()), False)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        terms = {
            "style": cfg.weight_style * style_loss(features, y, s),
            "structure": cfg.weight_structure * structure_loss(y, x),
            "colour": cfg.weight_colour * colour_loss(y, s),
            "adv": cfg.weight_adversarial * lsgan(disc(y), True),
        }
        loss_g = sum(terms.values())
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        record = {k: float(v.detach()) for k, v in terms.items()} | {"d": float(loss_d.detach())}
        history.append(record)
        progress.update(step, record)
        checkpoint.maybe_save(step, cfg.steps, stateful, generators)
    return StyleModels(gen.eval().requires_grad_(False), disc.eval().requires_grad_(False), history)
