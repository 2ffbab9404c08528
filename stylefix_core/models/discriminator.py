"""PatchGAN discriminator: one realness logit per overlapping image patch."""

from __future__ import annotations

import torch
from torch import nn

from stylefix_core.config import MODEL_MIN_SIDE


def _block(c_in: int, c_out: int, stride: int, norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)]
    if norm:
        layers.append(nn.InstanceNorm2d(c_out, affine=True))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class PatchDiscriminator(nn.Module):
    """Judges local patches (receptive field about 34 px for 3 stride-2 layers).

    Patch-level judgement is what style is about: texture and stroke, not
    global layout. The scorer uses the mean logit as "looks like the style";
    training uses every patch logit.
    """

    def __init__(self, base_channels: int = 16, n_layers: int = 3):
        super().__init__()
        self.hyper_parameters = {"base_channels": base_channels, "n_layers": n_layers}
        c = base_channels
        layers = _block(3, c, 2, norm=False)
        for i in range(1, n_layers):
            layers += _block(c * 2 ** (i - 1), c * 2**i, 2, norm=True)
        c_last = c * 2 ** (n_layers - 1)
        layers += _block(c_last, c_last, 1, norm=True)
        layers.append(nn.Conv2d(c_last, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits, shape (N, 1, h, w); higher means more like the style."""
        small = min(x.shape[-2:])
        if small < MODEL_MIN_SIDE:
            side = (max(MODEL_MIN_SIDE, x.shape[-2]), max(MODEL_MIN_SIDE, x.shape[-1]))
            x = nn.functional.interpolate(x, size=side)
        return self.net(x * 2.0 - 1.0)
