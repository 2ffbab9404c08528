"""Colour spaces and colour statistics: the lowest layer, pure tensor maths.

Tensors are RGB float32 in [0, 1], shape (N, 3, H, W). Networks (the
reference-set embedding) and detectors both describe colour the same way,
so the definitions live here, below both.
"""

from __future__ import annotations

import torch

# RGB -> luma and two opponent chroma axes; colour statistics live in this space
# because a colour cast moves chroma while leaving luma structure alone.
_OPPONENT = torch.tensor(
    [[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]], dtype=torch.float32
)


def to_opponent(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 3, H, W) luma, red-green, yellow-blue."""
    return torch.einsum("oc,nchw->nohw", _OPPONENT.to(x.device, x.dtype), x)


def from_opponent(y: torch.Tensor) -> torch.Tensor:
    inverse = torch.linalg.inv(_OPPONENT).to(y.device, y.dtype)
    return torch.einsum("oc,nchw->nohw", inverse, y)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma."""
    return to_opponent(x)[:, :1]


def colour_stats(x: torch.Tensor) -> torch.Tensor:
    """(N, 6): per opponent channel, mean and log standard deviation."""
    y = to_opponent(x).flatten(2)
    return torch.cat([y.mean(-1), torch.log(y.std(-1, correction=0) + 1e-3)], dim=1)
