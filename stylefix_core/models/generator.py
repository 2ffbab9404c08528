"""Feed-forward style-transfer generator: encoder, residual blocks, decoder."""

from __future__ import annotations

import torch
from torch import nn

from stylefix_core.models.layers import ConvNormAct, ResidualBlock, UpsampleConv, pad_to_multiple


class StyleGenerator(nn.Module):
    """Maps a content image to the same image in the learned style.

    Two stride-2 stages down, ``n_residual`` blocks at quarter resolution, two
    resize-convolution stages up. The output goes through a sigmoid so it is a
    valid image in [0, 1] without clamping gradients away during training.
    The decoder predicts a change to the input's logits, not the image itself,
    and starts at zero: an untrained generator is the identity, so training
    spends its (CPU-sized) budget on the style, not on relearning the layout.
    Any input size works: the input is padded to a multiple of 4 and the
    output cropped back.
    """

    def __init__(self, base_channels: int = 16, n_residual: int = 3):
        super().__init__()
        self.hyper_parameters = {"base_channels": base_channels, "n_residual": n_residual}
        c = base_channels
        self.encoder = nn.Sequential(
            ConvNormAct(3, c, 9),
            ConvNormAct(c, 2 * c, 3, stride=2),
            ConvNormAct(2 * c, 4 * c, 3, stride=2),
        )
        self.residual = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(n_residual)])
        self.decoder = nn.Sequential(
            UpsampleConv(4 * c, 2 * c),
            UpsampleConv(2 * c, c),
            nn.ReplicationPad2d(4),
            nn.Conv2d(c, 3, 9),
        )
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (height, width) = pad_to_multiple(x, 4, minimum=8)
        change = self.decoder(self.residual(self.encoder(padded * 2.0 - 1.0)))[..., :height, :width]
        return torch.sigmoid(torch.logit(x.clamp(0.0, 1.0), eps=1e-3) + change)
