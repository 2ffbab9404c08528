"""Statistics point the right way; the calibrated scorer ranks damage above its clean twin."""

from __future__ import annotations

import pytest
import torch

from stylefix_core import colour, inject
from stylefix_core.bundle import load_bundle
from stylefix_core.scoring import features
from stylefix_core.scoring.scorer import DETECTORS, REASONS, Scorer
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
    ],
)
def test_each_statistic_rises_with_its_damage(clean, kind, feature):
    damaged = inject.inject(clean, kind, severity=0.9, seed=3)
    assert bool((feature(damaged) > feature(clean)).all()), kind


def test_colour_distance_sees_a_cast(clean):
    stats = colour.colour_stats(clean)
    spread = torch.full((6,), 0.05)
    cast = colour.colour_stats(inject.inject(clean, "colour_cast", 0.9, seed=1))
    assert bool(
        (
            features.colour_distance(cast, stats, spread)
            > features.colour_distance(stats, stats, spread)
        ).all()
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
        target = scorer.colour_target(None, good.shape[0], good.device)
        clean_scores = scorer(good, target).score
        broken_scores = scorer(broken, target).score
    assert bool((broken_scores > clean_scores).all()), (kind, clean_scores, broken_scores)
    assert float(broken_scores.mean()) > scorer.calibration.threshold, kind


def test_reasons_are_exactly_the_detectors_over_threshold(styled):
    scorer, good = styled
    broken = inject.inject(good, "noise", severity=1.0, seed=2)
    with torch.inference_mode():
        batch = scorer(broken, scorer.colour_target(None, 6, broken.device))
    for i in range(6):
        expected = [REASONS[d] for d in DETECTORS if float(batch.z[d][i]) > batch.threshold]
        assert batch.reasons(i) == expected
        assert bool(batch.reasons(i)) == bool(batch.score[i] > batch.threshold)
    assert "noise" in batch.reasons(0)
