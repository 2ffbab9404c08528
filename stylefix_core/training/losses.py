"""Losses that need no pretrained network."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylefix_core import colour
from stylefix_core.models.random_features import RandomFeatures


def sliced_wasserstein(
    output: torch.Tensor, style: torch.Tensor, n_directions: int = 32
) -> torch.Tensor:
    """Distance between the distributions of output and style feature vectors.

    Each output image's vectors (one per pixel) are projected on random unit
    directions and sorted; so are the vectors of every style image pooled,
    resampled to the same count. Matching sorted projections matches whole
    distributions, not only their first two moments: with moments alone the
    cheapest way to reach a style's spread of colours is a saturated fringe
    along every edge, while here each pixel must land on a colour the style
    actually uses.
    """
    channels = output.shape[1]
    directions = torch.randn(channels, n_directions, device=output.device)
    directions = directions / directions.norm(dim=0, keepdim=True)
    out = torch.einsum("ncp,ck->nkp", output.flatten(2), directions).sort(-1).values
    ref = (directions.T @ style.transpose(0, 1).flatten(1)).sort(-1).values
    pick = torch.linspace(0, ref.shape[-1] - 1, out.shape[-1], device=output.device).round().long()
    return F.mse_loss(out, ref[:, pick].expand_as(out))


def style_loss(net: RandomFeatures, output: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Texture as the distribution of random-filter features, at every scale.

    Each scale's distance is divided by the style features' variance so that
    no scale dominates by its magnitude alone.
    """
    loss = output.new_zeros(())
    for out_f, style_f in zip(net(output), net(style), strict=True):
        loss = loss + sliced_wasserstein(out_f, style_f) / (style_f.var() + 1e-8)
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
    """The output's pixel colours against the palette of the style set."""
    return sliced_wasserstein(output, style)


def lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: stable on CPU-sized budgets, no saturating log."""
    return ((logits - (1.0 if real else 0.0)) ** 2).mean()
