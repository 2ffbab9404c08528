"""A small classifier of statistical signatures: reference image or damaged copy."""

from __future__ import annotations

import torch
from torch import nn


class DamageClassifier(nn.Module):
    """Logit that a signature (``scoring.signature``) comes from a damaged image.

    Takes (N, dim) float vectors, not images, and returns (N,) logits. The
    signature is standardised by the reference set's mean and spread (buffers
    set by ``fit_standardisation``), then one hidden layer weighs the
    statistics together; both signs of each standardised statistic are fed
    (``z`` and ``|z|``) so that a departure either way can count.
    """

    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.hyper_parameters = {"dim": dim, "hidden": hidden}
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def fit_standardisation(self, reference: torch.Tensor) -> None:
        """Centre and scale on the reference signatures (N, dim)."""
        self.mean = reference.mean(0).to(self.mean)
        self.std = reference.std(0).clamp(min=1e-6).to(self.std)

    def forward(self, signature: torch.Tensor) -> torch.Tensor:
        z = (signature.float() - self.mean) / self.std
        return self.net(torch.cat([z, z.abs()], dim=1))[:, 0]
