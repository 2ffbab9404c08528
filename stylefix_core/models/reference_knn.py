"""Distance from an image to its nearest reference images in a feature space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylefix_core.colour import colour_correlations, colour_stats
from stylefix_core.models.random_features import RandomFeatures

MAX_SIDE = 256  # larger images are looked at down-scaled: the statistics are global
MIN_SIDE = 8
COLOUR_MOMENTS = 6  # colour_stats: where colour fixes aim
LAYOUT_DIMS = 3  # colour_correlations: after the moments, where the embedding reads them


@dataclass(frozen=True)
class KnnReading:
    """What one pass over the reference set gives, per image."""

    distance: torch.Tensor  # (N,) over the whole descriptor
    colour_distance: torch.Tensor  # (N,) over its colour part alone
    neighbour_colours: torch.Tensor  # (N, k, 6) colour moments of the k nearest


def _per_dimension(nearest: torch.Tensor, dims: int) -> torch.Tensor:
    """(N,) mean of each row of distances (N, k), per dimension of the space."""
    return nearest.mean(1) / dims**0.5


class ReferenceKnn(nn.Module):
    """Mean distance to the k nearest reference descriptors.

    A descriptor is the mean and log spread of every random-filter channel at
    three scales, then the image's colour moments and (``colour_layout``)
    colour correlations, standardised by the reference set. Embeddings fitted
    before the correlations leave them out, so their bundles still load.
    Nearest neighbours (rather than one Gaussian) because a real catalog is
    many kinds of picture: an image need only resemble some of the
    references, not their average. Whatever the anomaly, if it moves texture,
    sharpness or colour statistics away from every reference, it scores.
    """

    def __init__(
        self,
        n_reference: int,
        seed: int = 0,
        widths: tuple[int, ...] | list[int] = (32, 48, 64),
        k: int = 5,
        colour_layout: bool = False,
    ):
        super().__init__()
        self.hyper_parameters = {
            "n_reference": n_reference,
            "seed": seed,
            "widths": list(widths),
            "k": k,
            "colour_layout": colour_layout,
        }
        self.features = RandomFeatures(seed, widths)
        self.colour_layout = colour_layout
        # the colour part that closes the descriptor
        self.colour_dims = COLOUR_MOMENTS + (LAYOUT_DIMS if colour_layout else 0)
        dim = 2 * sum(widths) + self.colour_dims
        self.register_buffer("reference", torch.zeros(n_reference, dim))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.k = k

    def describe(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, D) raw descriptors."""
        x = x.float()
        height, width = x.shape[-2:]
        scale = min(1.0, MAX_SIDE / max(height, width))
        # at least MIN_SIDE each way, so slivers and tiny images still fit the filters
        size = (max(MIN_SIDE, round(height * scale)), max(MIN_SIDE, round(width * scale)))
        if size != (height, width):
            x = F.interpolate(x, size=size, mode="area")
        parts = []
        for fmap in self.features(x):
            flat = fmap.flatten(2)
            parts += [flat.mean(-1), torch.log(flat.std(-1, correction=0) + 1e-3)]
        parts.append(colour_stats(x))
        if self.colour_layout:
            parts.append(colour_correlations(x))
        return torch.cat(parts, dim=1)

    def fit(self, descriptors: torch.Tensor) -> None:
        """Store the reference set (descriptors from ``describe``)."""
        self.mean = descriptors.mean(0)
        self.std = descriptors.std(0).clamp(min=1e-3)
        self.reference = (descriptors - self.mean) / self.std
        self.hyper_parameters["n_reference"] = descriptors.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) mean distance to the k nearest references, per dimension."""
        return self.read(x).distance

    def read(self, x: torch.Tensor) -> KnnReading:
        """Everything the scorer asks of the references, from one descriptor pass.

        The colour moments (and correlations) are 6 (9) of the descriptor's
        dimensions, so in the whole distance a colour cast or a hue rotation
        is drowned by the texture channels. Measured alone against the
        nearest references' colours they separate those faults well
        (docs/quality.md), where one Gaussian around the reference average
        cannot: a catalog has pictures of every colour. The nearest
        references by the whole descriptor, pictures like this one, give the
        colours it could have. At 256 px a second descriptor pass would cost
        a third of the scoring time.
        """
        query = (self.describe(x) - self.mean) / self.std
        reference = self.reference.to(query.dtype)
        first = query.shape[1] - self.colour_dims
        colour, moments = slice(first, None), slice(first, first + COLOUR_MOMENTS)
        whole = self._nearest(query, reference)
        in_colour = self._nearest(query[:, colour], reference[:, colour])
        colours = self.reference[:, moments] * self.std[moments] + self.mean[moments]
        return KnnReading(
            distance=_per_dimension(whole.values, query.shape[1]),
            colour_distance=_per_dimension(in_colour.values, self.colour_dims),
            neighbour_colours=colours[whole.indices],
        )

    def _nearest(self, query: torch.Tensor, reference: torch.Tensor) -> torch.return_types.topk:
        """Distances to and indices of the k nearest references, each (N, k)."""
        k = min(self.k, reference.shape[0])
        return torch.cdist(query, reference).topk(k, dim=1, largest=False)
