"""The networks: shapes at any size, pixel range, batch independence; the reference kNN."""

from __future__ import annotations

import pytest
import torch

from stylefix_core import inject
from stylefix_core.colour import colour_correlations, colour_stats
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.models import (
    ConvAutoencoder,
    PatchDiscriminator,
    ResidualCorrector,
    StyleGenerator,
)
from stylefix_core.models.reference_knn import COLOUR_MOMENTS, LAYOUT_DIMS, ReferenceKnn
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
    """The colour distance slices the descriptor's closing colour moments and
    correlations, so they must be exactly colour_stats and
    colour_correlations; a hue rotation or a colour cast must
    put a patch further from the references' colours than its clean twin
    (measured: 19 and 18 of 20 patches)."""
    photos = grid_patches(load_photos(), 64)
    reference = [to_tensor(p) for _, p in photos[::7][:60]]
    knn = fit_embedding(reference, torch.device("cpu"))
    test = torch.stack([to_tensor(p) for _, p in photos[3::11][:20]])
    colour = knn.describe(test)[:, -(COLOUR_MOMENTS + LAYOUT_DIMS) :]
    torch.testing.assert_close(colour[:, :COLOUR_MOMENTS], colour_stats(test))
    torch.testing.assert_close(colour[:, COLOUR_MOMENTS:], colour_correlations(test))
    reading = knn.read(test)
    torch.testing.assert_close(reading.distance, knn(test))
    for kind in ("hue_shift", "colour_cast"):
        damaged = knn.read(inject.inject(test, kind, 0.8, seed=0)).colour_distance
        assert float((damaged > reading.colour_distance).float().mean()) >= 0.85, kind


def test_a_turn_of_hue_shows_in_the_colour_correlations_more_than_in_the_moments():
    """A blue sky over brown ground: bright goes with blue. Turned round the
    hue circle, bright goes with yellow (a correlation moves by more than
    1.8), while the mean chroma moves by under 0.15."""
    x = torch.zeros(1, 3, 32, 32)
    x[..., :16, :] = torch.tensor([0.45, 0.65, 0.95]).view(1, 3, 1, 1)
    x[..., 16:, :] = torch.tensor([0.35, 0.25, 0.15]).view(1, 3, 1, 1)
    x = (x + 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for severity in (0.4, 0.7):
        turned = inject.inject(x, "hue_shift", severity, seed=0)
        assert float(colour_correlations(x)[0, 1]) < -0.9  # luma against yellow-blue
        assert float(colour_correlations(turned)[0, 1]) > 0.9
        moved = colour_stats(turned)[0, 1:3] - colour_stats(x)[0, 1:3]
        assert float(moved.norm()) < 0.15


def test_an_embedding_fitted_before_the_colour_correlations_still_reads():
    """Older bundles describe colour by its moments alone; they load and score."""
    old = ReferenceKnn(n_reference=3)
    assert old.reference.shape[1] == 2 * sum(old.hyper_parameters["widths"]) + COLOUR_MOMENTS
    old.fit(old.describe(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))))
    reading = old.read(torch.rand(2, 3, 32, 32))
    assert reading.neighbour_colours.shape == (2, 3, COLOUR_MOMENTS)
    assert bool(torch.isfinite(reading.colour_distance).all())


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
    assert neighbours.shape == (20, knn.k, COLOUR_MOMENTS)
    aim = neighbours.mean(dim=1)
    average = colour_stats(torch.stack(reference)).mean(0)
    nearer = (aim - own).norm(dim=1) < (average - own).norm(dim=1)
    assert float(nearer.float().mean()) >= 0.7
    one = torch.stack(reference[:1])
    with torch.inference_mode():
        among = (knn.read(one).neighbour_colours[0] - colour_stats(one)).norm(dim=1)
    assert float(among.min()) < 1e-4  # a reference's own colours are among its neighbours
