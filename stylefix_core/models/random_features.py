"""A frozen, randomly initialised multi-scale conv net used as a feature extractor.

No pretrained network can be downloaded at run time, and random filters are a
surprisingly good stand-in: the statistics of random-filter responses capture
texture, colour co-occurrence and sharpness (random shallow nets are known to
support texture synthesis). The seed fixes the filters, so the same seed is
the same function everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RandomFeatures(nn.Module):
    def __init__(self, seed: int = 0, widths: tuple[int, ...] | list[int] = (64, 96, 128)):
        super().__init__()
        self.hyper_parameters = {"seed": seed, "widths": list(widths)}
        generator = torch.Generator().manual_seed(seed)
        layers, c_in = [], 3
        for width in widths:
            conv = nn.Conv2d(c_in, width, 3, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0.0, (2.0 / (9 * c_in)) ** 0.5, generator=generator)
                conv.bias.zero_()
            layers.append(conv)
            c_in = width
        self.convs = nn.ModuleList(layers)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at full, half and quarter resolution (for three widths)."""
        outputs, h = [], x * 2.0 - 1.0
        for i, conv in enumerate(self.convs):
            h = F.relu(conv(h))
            outputs.append(h)
            if i < len(self.convs) - 1 and min(h.shape[-2:]) >= 2:
                h = F.avg_pool2d(h, 2)
        return outputs
