"""Statistics point the right way; the calibrated scorer ranks damage above its clean twin."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from stylefix_core import colour, inject
from stylefix_core.bundle import DetectorCalibration, load_bundle
from stylefix_core.evaluation.photos import grid_patches, load_photos
from stylefix_core.scoring import features
from stylefix_core.scoring.scorer import (
    DETECTORS,
    REASONS,
    ScoreBatch,
    Scorer,
    named_reason,
    normalise,
)
from stylefix_core.synthetic import make_assets
from stylefix_core.training.data import to_tensor


@pytest.fixture(scope="module")
def clean() -> torch.Tensor:
    return torch.stack([to_tensor(a) for a in make_assets(seed=11, n=6, sizes=[(96, 96)])])


@pytest.mark.parametrize(
    "kind, feature",
    [
        ("blur", features.blur),
        ("texture_loss", features.texture_loss),
        ("noise", features.noise_level),
        ("noise", features.colour_noise_level),
        ("checkerboard", features.checkerboard),
        ("collapse", features.collapse),
        ("jpeg_blocking", features.blocking),
    ],
)
def test_each_statistic_rises_with_its_damage(clean, kind, feature):
    damaged = inject.inject(clean, kind, severity=0.9, seed=3)
    assert bool((feature(damaged) > feature(clean)).all()), kind


@pytest.fixture(scope="module")
def photo_patches() -> torch.Tensor:
    """Thirty 64 px patches spread over all the real photographs (faces, fur,
    foliage, sky, machinery)."""
    patches = grid_patches(load_photos(), 64)
    return torch.stack([to_tensor(p) for _, p in patches[:: len(patches) // 30][:30]])


def test_blocking_finds_mild_jpeg_that_texture_and_noise_do_not_imitate(photo_patches):
    """Quality 59 JPEG (severity 0.4) is barely visible. The statistic must put
    nearly every such patch above the clean patches' 90th percentile (a mean
    step ratio managed half), while noise and checkerboards, which also make
    steps, must stay below it."""
    clean = features.blocking(photo_patches)
    line = float(clean.quantile(0.9))
    jpeg = features.blocking(inject.inject(photo_patches, "jpeg_blocking", 0.4, seed=1))
    assert float((jpeg > line).float().mean()) >= 0.9
    for kind in ("noise", "checkerboard"):
        other = features.blocking(inject.inject(photo_patches, kind, 0.9, seed=1))
        assert float(other.median()) < line, kind


def test_texture_loss_is_read_on_textured_pixels(photo_patches):
    """Smoothed texture (severity 0.8) must read above the clean patches' 90th
    percentile on at least 70 % of patches (77 % measured); read over the
    whole image (gradient energy against contrast) it was 30 %. A picture
    with no texture at all (flat colour, one clean edge) reads zero, whatever
    smooths it."""
    clean = features.texture_loss(photo_patches)
    line = float(clean.quantile(0.9))
    smoothed = features.texture_loss(inject.inject(photo_patches, "texture_loss", 0.8, seed=1))
    assert float((smoothed > line).float().mean()) >= 0.7
    edge = torch.zeros(1, 3, 64, 64)
    edge[..., 32:] = 0.8
    for untextured in (edge, torch.full((1, 3, 64, 64), 0.3), inject.gaussian_blur(edge, 2.0)):
        assert float(features.texture_loss(untextured)) == 0.0


def test_a_ramp_of_light_does_not_read_as_blur(photo_patches):
    """A dark vignette (severity 0.8) dims the corners smoothly: on average it
    must move the blur statistic by less than 40 % of what a mild blur (sigma
    0.6 px) moves it by on the median patch (36 % measured; 54 % read against
    the gradient of the whole luma)."""
    clean = features.blur(photo_patches)
    vignetted = features.blur(inject.inject(photo_patches, "vignette_dark", 0.8, seed=1))
    blurred = features.blur(inject.inject(photo_patches, "blur", 0.2, seed=1))
    assert bool((blurred > clean).all())
    assert float((vignetted - clean).abs().mean()) < 0.4 * float((blurred - clean).median())


def test_blocking_hardly_counts_high_quality_jpeg_on_flat_graphics():
    """Catalogs hold quality-90 and -95 JPEGs. Their rounding on flat colour
    must rarely read as blocking (a one-level floor put 54 % of quality-95 and
    all quality-90 ones above every PNG), while quality 50 must."""
    assets = make_assets(seed=5, n=96, sizes=[(128, 128)])
    png = features.blocking(torch.stack([to_tensor(a) for a in assets]))
    for quality, low, high in ((95, 0.0, 0.15), (90, 0.0, 0.4), (50, 0.9, 1.0)):
        jpeg = torch.stack([to_tensor(_jpeg_round_trip(a, quality)) for a in assets])
        above = float((features.blocking(jpeg) > png.max()).float().mean())
        assert low <= above <= high, (quality, above)


def _jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=0)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).copy()


def test_colour_distance_sees_a_cast(clean):
    stats = colour.colour_stats(clean)
    spread = torch.full((6,), 0.05)
    cast = colour.colour_stats(inject.inject(clean, "colour_cast", 0.9, seed=1))
    aims = stats[:, None]
    assert bool(
        (
            features.colour_distance(cast, aims, spread)
            > features.colour_distance(stats, aims, spread)
        ).all()
    )


def test_colour_distance_is_to_the_nearest_aim(clean):
    """Colours like those of any one picture it resembles are no fault."""
    stats = colour.colour_stats(clean)
    cast = colour.colour_stats(inject.inject(clean, "colour_cast", 0.9, seed=1))
    spread = torch.full((6,), 0.05)
    either = torch.stack([cast, stats], dim=1)
    torch.testing.assert_close(
        features.colour_distance(stats, either, spread), torch.zeros(len(stats))
    )
    torch.testing.assert_close(
        features.colour_distance(cast, either, spread), torch.zeros(len(stats))
    )


def test_opponent_space_round_trips(clean):
    torch.testing.assert_close(
        colour.from_opponent(colour.to_opponent(clean)), clean, atol=1e-5, rtol=0
    )


@pytest.fixture(scope="module")
def styled(clean):
    bundle = load_bundle("")
    scorer = Scorer.for_bundle(bundle)
    with torch.inference_mode():
        return scorer, bundle.generator(clean)


@pytest.mark.parametrize("kind", ["noise", "checkerboard", "collapse", "blur"])
def test_scorer_ranks_an_obviously_broken_image_above_its_clean_twin(styled, kind):
    scorer, good = styled
    broken = inject.inject(good, kind, severity=1.0, seed=2)
    with torch.inference_mode():
        clean_scores = scorer(good).score
        broken_scores = scorer(broken).score
    assert bool((broken_scores > clean_scores).all()), (kind, clean_scores, broken_scores)
    assert float(broken_scores.mean()) > scorer.calibration.threshold, kind


def test_an_image_the_discriminator_accepts_readily_is_not_off_style():
    """Every detector reads one way: below its centre is no fault."""
    calibration = {"discriminator": DetectorCalibration(center=0.5, scale=0.25)}
    raw = {"discriminator": torch.tensor([0.0, 0.5, 1.5])}
    z = normalise(raw, calibration)["discriminator"]
    torch.testing.assert_close(z, torch.tensor([-2.0, 0.0, 4.0]))


def test_in_qa_mode_colours_are_read_against_the_nearest_references(styled):
    """A qa-mode reading aims at its nearest references' colours, from the
    embedding's one pass, and its colour distance is to the nearest of them;
    rescored against the aims it returned, an image reads the same."""
    scorer, good = styled
    with torch.inference_mode():
        batch = scorer(good)
        neighbours = scorer.embedding.read(good).neighbour_colours
        again = scorer(good, batch.aims)
    assert batch.aims.shape == (len(good), scorer.embedding.k, 6)
    torch.testing.assert_close(batch.aims, neighbours)
    spread = torch.tensor(scorer.calibration.reference_spread)
    nearest = features.colour_distance(colour.colour_stats(good), neighbours, spread)
    torch.testing.assert_close(batch.raw["colour"], nearest)
    torch.testing.assert_close(again.raw, batch.raw)


def test_reasons_are_exactly_the_detectors_over_threshold(styled):
    """And the kind the pixel classifier names, where it flags the image."""
    scorer, good = styled
    broken = inject.inject(good, "noise", severity=1.0, seed=2)
    with torch.inference_mode():
        batch = scorer(broken)
    assert batch.kinds == inject.CORRECTOR_TRAINING_KINDS  # the default bundle names kinds
    for i in range(6):
        expected = [REASONS[d] for d in DETECTORS if float(batch.z[d][i]) > batch.threshold]
        named = [named_reason(batch.named_kind(i))] if batch.named_kind(i) else []
        assert batch.reasons(i) == expected + named
        assert bool(batch.reasons(i)) == bool(batch.score[i] > batch.threshold)
    assert "noise" in batch.reasons(0)


@pytest.mark.parametrize(
    "pixel_z, odds, named",
    [
        (5.0, [0.7, 0.2, 0.1], "blur"),  # flagged, one kind over two to one against the rest
        (5.0, [0.6, 0.3, 0.1], ""),  # flagged, but not two to one against the rest
        (5.0, [0.4, 0.35, 0.25], ""),  # flagged, no kind stands out
        (2.0, [0.9, 0.05, 0.05], ""),  # not flagged by the pixel classifier
    ],
)
def test_the_pixel_classifier_names_a_kind_only_where_it_flags_and_is_sure(pixel_z, odds, named):
    z = {"pixel_damage": torch.tensor([pixel_z]), "noise": torch.tensor([4.0])}
    batch = ScoreBatch(
        raw=z,
        z=z,
        score=torch.tensor([max(pixel_z, 4.0)]),
        threshold=3.0,
        kinds=("blur", "noise", "banding"),
        kind_probabilities=torch.tensor([odds]),
    )
    assert batch.named_kind(0) == named
    expected = ["noise"] + (["pixels_look_damaged"] if pixel_z > 3.0 else [])
    assert batch.reasons(0) == expected + ([named_reason(named)] if named else [])
