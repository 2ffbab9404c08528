"""Building blocks shared by the StyleFix networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_to_multiple(
    x: torch.Tensor, multiple: int, minimum: int = 0
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple (and at least ``minimum``) so strided
    encoders and decoders line up and instance norm always has more than one
    value per channel at the coarsest scale.

    Replicate padding (not reflect) so that images smaller than the pad, down
    to 1x1, still work. Returns the padded tensor and the original (H, W).
    """
    height, width = x.shape[-2:]
    pad_h = max((-height) % multiple, minimum - height)
    pad_w = max((-width) % multiple, minimum - width)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (height, width)


class ConvNormAct(nn.Sequential):
    """Padded convolution, instance norm, activation.

    Instance norm keeps every image's output independent of the other images
    in its batch, which is what makes results the same whatever the batching.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.ReplicationPad2d(kernel // 2),
            nn.Conv2d(c_in, c_out, kernel, stride=stride),
            nn.InstanceNorm2d(c_out, affine=True),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3),
            ConvNormAct(channels, channels, 3, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Module):
    """Nearest-neighbour resize then convolution.

    Used instead of transposed convolution because a stride-2 transposed
    convolution with uneven kernel overlap paints checkerboard artifacts.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        self.conv = ConvNormAct(c_in, c_out, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
