"""A small convolutional classifier of pixels: reference image or damaged copy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylefix_core.colour import to_opponent
from stylefix_core.config import MODEL_MIN_SIDE

# The high-pass of a photograph is far weaker than its colours; the gain brings
# the two inputs nearer one range before the first convolution has learnt to
# weigh them (the value the measured network was trained with).
HIGH_PASS_GAIN = 8.0


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class PixelDamageClassifier(nn.Module):
    """Logit that an image is a damaged copy of a reference image.

    It reads what the statistics of ``scoring.features`` summarise too
    coarsely: hue shifts, desaturation and banding leave local colour and
    edge patterns no single statistic names. The input is opponent colour
    (luma, red-green, yellow-blue) with the image's mean colour taken off,
    plus a 3x3 high-pass of it: on raw RGB the same network learnt nothing
    for its first thousand steps, given these it learns from the start.
    Features are pooled to each channel's mean and spread over the image,
    not its maximum, which would grow with the image's size. Batch norm,
    not instance norm: an image's own contrast is evidence here, and in
    eval mode batch norm still scores every image independently of its
    batch.

    With ``kinds`` it also names the damage: the head gives a logit for
    "clean" and one per kind, and the damage logit is how much likelier any
    kind is than clean. A single damage logit cannot say which fix a
    damaged image needs; trained with the kind named, the same network
    ranked damaged against clean as well or better (docs/quality.md). Without
    ``kinds`` (bundles made before it named them) the head gives the damage
    logit alone.
    """

    def __init__(self, channels: int = 8, hidden: int = 32, kinds: Sequence[str] = ()):
        super().__init__()
        self.kinds = tuple(kinds)
        self.hyper_parameters = {"channels": channels, "hidden": hidden, "kinds": list(self.kinds)}
        c = channels
        self.features = nn.Sequential(
            *_conv_bn_relu(6, c),
            *_conv_bn_relu(c, c),
            nn.AvgPool2d(2),
            *_conv_bn_relu(c, 2 * c),
            *_conv_bn_relu(2 * c, 2 * c),
            nn.AvgPool2d(2),
            *_conv_bn_relu(2 * c, 2 * c),
        )
        outputs = 1 + len(self.kinds)
        self.head = nn.Sequential(nn.Linear(4 * c, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N,) logits; higher means damaged."""
        return self.damage_logit(self.logits(x))

    def read(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The damage logits (N,) and, per image, how likely each of ``kinds``
        is if it is damaged (N, K), from one pass."""
        logits = self.logits(x)
        return self.damage_logit(logits), logits[:, 1:].softmax(dim=1)

    def damage_logit(self, logits: torch.Tensor) -> torch.Tensor:
        """The damage logit (N,) from the head's outputs (N, 1 + K)."""
        if not self.kinds:
            return logits[:, 0]
        return torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head's outputs (N, 1 + K): the damage logit alone without
        ``kinds``, else the logits of clean and of each kind."""
        if min(x.shape[-2:]) < MODEL_MIN_SIDE:
            side = (max(MODEL_MIN_SIDE, x.shape[-2]), max(MODEL_MIN_SIDE, x.shape[-1]))
            x = F.interpolate(x, size=side)
        opponent = to_opponent(x)
        local_mean = F.avg_pool2d(F.pad(opponent, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        centred = opponent - opponent.mean(dim=(2, 3), keepdim=True)
        inputs = torch.cat([centred, HIGH_PASS_GAIN * (opponent - local_mean)], dim=1)
        maps = self.features(inputs).flatten(2)
        return self.head(torch.cat([maps.mean(-1), maps.std(-1)], dim=1))
