"""Residual corrector F(x) = x + R(x)."""

from __future__ import annotations

import torch
from torch import nn


class ResidualCorrector(nn.Module):
    """Learns only the correction R(x), so an untouched image stays untouched.

    Dilated convolutions give a receptive field wide enough for blocking and
    banding without down-sampling (which would blur the very detail being
    restored). The last layer starts at zero: before training F is the identity.
    """

    def __init__(
        self, channels: int = 24, dilations: tuple[int, ...] | list[int] = (1, 2, 4, 8, 1)
    ):
        super().__init__()
        self.hyper_parameters = {"channels": channels, "dilations": list(dilations)}
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for d in dilations:
            layers += [
                nn.Conv2d(channels, channels, 3, padding=d, dilation=d),
                nn.ReLU(inplace=True),
            ]
        last = nn.Conv2d(channels, 3, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.residual(x)).clamp(0.0, 1.0)
