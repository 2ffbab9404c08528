"""Convolutional autoencoder whose reconstruction error scores anomalies."""

from __future__ import annotations

import torch
from torch import nn

from stylefix_core.models.layers import pad_to_multiple


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)
    )


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """Fully convolutional, so it reconstructs local structure at any size.

    Trained only on reference images, it reproduces what looks like them and
    fails on what does not; the bottleneck (``latent_channels`` at 1/8 scale)
    is what keeps it from learning the identity.
    """

    def __init__(self, base_channels: int = 16, latent_channels: int = 8):
        super().__init__()
        self.hyper_parameters = {"base_channels": base_channels, "latent_channels": latent_channels}
        c = base_channels
        self.encoder = nn.Sequential(
            _down(3, c), _down(c, 2 * c), _down(2 * c, 4 * c), nn.Conv2d(4 * c, latent_channels, 1)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 4 * c, 1),
            _up(4 * c, 2 * c),
            _up(2 * c, c),
            _up(c, c),
            nn.Conv2d(c, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (height, width) = pad_to_multiple(x, 8)
        y = self.decoder(self.encoder(padded))
        return torch.sigmoid(y[..., :height, :width])
