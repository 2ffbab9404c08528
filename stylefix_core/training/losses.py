"""Losses that need no pretrained network."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylefix_core import colour
from stylefix_core.models.random_features import RandomFeatures


def gram(features_map: torch.Tensor) -> torch.Tensor:
    """Centred Gram (feature covariance): texture without the mean's dominance."""
    n, c, h, w = features_map.shape
    flat = features_map.reshape(n, c, h * w)
    flat = flat - flat.mean(-1, keepdim=True)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(net: RandomFeatures, output: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Gram-matrix distance at every scale, against the mean style Gram."""
    loss = output.new_zeros(())
    for out_f, style_f in zip(net(output), net(style), strict=True):
        target = gram(style_f).mean(0, keepdim=True).expand(out_f.shape[0], -1, -1)
        scale = target.abs().mean() + 1e-8
        loss = loss + F.mse_loss(gram(out_f), target) / scale**2
    return loss


def structure_loss(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Keep the content's luma layout and edges; colour and texture are free."""
    out_l, in_l = colour.luma(output), colour.luma(content)
    coarse = F.l1_loss(F.avg_pool2d(out_l, 4), F.avg_pool2d(in_l, 4))
    edges = F.l1_loss(_edge_map(out_l), _edge_map(in_l))
    return coarse + edges


def _edge_map(y: torch.Tensor) -> torch.Tensor:
    blurred = F.avg_pool2d(y, 2)
    gx = blurred.diff(dim=-1)[..., :-1, :]
    gy = blurred.diff(dim=-2)[..., :, :-1]
    return torch.sqrt(gx**2 + gy**2 + 1e-6)


def colour_loss(output: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Match the mean and spread of luma and chroma of the style set."""
    target = colour.colour_stats(style).mean(0)
    return F.l1_loss(colour.colour_stats(output), target.expand(output.shape[0], -1))


def lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: stable on CPU-sized budgets, no saturating log."""
    return ((logits - (1.0 if real else 0.0)) ** 2).mean()
