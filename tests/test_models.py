"""The networks: shapes at any size, pixel range, batch independence; the reference kNN."""

from __future__ import annotations

import pytest
import torch

from stylefix_core import inject
from stylefix_core.colour import colour_stats
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.models import (
    ConvAutoencoder,
    PatchDiscriminator,
    ResidualCorrector,
    StyleGenerator,
)
from stylefix_core.models.reference_knn import COLOUR_DIMS
from stylefix_core.training.data import to_tensor
from stylefix_core.training.detector import fit_embedding

IMAGE_NETWORKS = [StyleGenerator, ConvAutoencoder, ResidualCorrector]


@pytest.mark.parametrize("cls", IMAGE_NETWORKS)
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (64, 64), (97, 130)])
def test_image_networks_keep_size_and_range(cls, size):
    torch.manual_seed(0)
    net = cls().eval()
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        y = net(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_discriminator_gives_patch_logits_for_small_and_large_images():
    net = PatchDiscriminator().eval()
    with torch.inference_mode():
        small = net(torch.rand(1, 3, 5, 9))
        large = net(torch.rand(3, 3, 128, 96))
    assert small.shape[:2] == (1, 1) and small.numel() > 0
    assert large.shape[0] == 3 and large.shape[-2] > small.shape[-2]


@pytest.mark.parametrize(
    "cls", [StyleGenerator, ConvAutoencoder, ResidualCorrector, PatchDiscriminator]
)
def test_outputs_do_not_depend_on_batch_mates(cls):
    """Per-image results must not change with batching, or re-runs would differ."""
    torch.manual_seed(1)
    net = cls().eval()
    x = torch.rand(4, 3, 48, 40)
    with torch.inference_mode():
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)


def test_untrained_corrector_is_the_identity():
    x = torch.rand(2, 3, 33, 21)
    with torch.inference_mode():
        torch.testing.assert_close(ResidualCorrector()(x), x)


def test_generator_is_deterministic_for_a_seed():
    torch.manual_seed(5)
    a = StyleGenerator(base_channels=8, n_residual=1)
    torch.manual_seed(5)
    b = StyleGenerator(base_channels=8, n_residual=1)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x))


def test_the_reference_colour_distance_reads_the_colour_moments_of_the_descriptor():
    """The colour distance slices the descriptor's closing colour moments, so
    they must be exactly colour_stats; a hue rotation or a colour cast must
    put a patch further from the references' colours than its clean twin
    (measured: 19 and 18 of 20 patches)."""
    photos = grid_patches(load_photos(), 64)
    reference = [to_tensor(p) for _, p in photos[::7][:60]]
    knn = fit_embedding(reference, torch.device("cpu"))
    test = torch.stack([to_tensor(p) for _, p in photos[3::11][:20]])
    torch.testing.assert_close(knn.describe(test)[:, -COLOUR_DIMS:], colour_stats(test))
    reading = knn.read(test)
    torch.testing.assert_close(reading.distance, knn(test))
    for kind in ("hue_shift", "colour_cast"):
        damaged = knn.read(inject.inject(test, kind, 0.8, seed=0)).colour_distance
        assert float((damaged > reading.colour_distance).float().mean()) >= 0.85, kind


def test_nearest_references_colours_are_closer_to_a_pictures_own_than_the_average():
    """Where a colour fix aims in qa mode: for clean patches not in the
    reference set, the colours of their nearest references lie nearer their
    own colours than the references' average does (measured: 15 of 20), and
    a reference finds itself among its neighbours."""
    photos = grid_patches(load_photos(), 64)
    reference = [to_tensor(p) for _, p in photos[::7][:60]]
    knn = fit_embedding(reference, torch.device("cpu"))
    test = torch.stack([to_tensor(p) for _, p in photos[3::11][:20]])
    own = colour_stats(test)
    with torch.inference_mode():
        neighbours = knn.read(test).neighbour_colours
    assert neighbours.shape == (20, knn.k, COLOUR_DIMS)
    aim = neighbours.mean(dim=1)
    average = colour_stats(torch.stack(reference)).mean(0)
    nearer = (aim - own).norm(dim=1) < (average - own).norm(dim=1)
    assert float(nearer.float().mean()) >= 0.7
    one = torch.stack(reference[:1])
    with torch.inference_mode():
        among = (knn.read(one).neighbour_colours[0] - colour_stats(one)).norm(dim=1)
    assert float(among.min()) < 1e-4  # a reference's own colours are among its neighbours
