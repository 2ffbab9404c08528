"""The calibration threshold: read off scores scaled without the image they score, and raised
by a fitted tail where few images lie beyond it."""

from __future__ import annotations

import math

import pytest
import torch

from stylefix_core.training import detector
from stylefix_core.training.detector import (
    _left_out_combined,
    _left_out_scales,
    _robust_scale,
    tail_quantile,
)


def test_many_images_beyond_the_quantile_give_the_empirical_quantile():
    scores = torch.randn(2000, generator=torch.Generator().manual_seed(0))
    assert tail_quantile(scores, 0.99) == pytest.approx(float(torch.quantile(scores, 0.99)))
    assert tail_quantile(scores[:96], 0.5) == pytest.approx(float(torch.quantile(scores[:96], 0.5)))


def test_a_tail_heavier_than_the_fit_keeps_the_empirical_threshold():
    """Two far outliers among a hundred: an exponential fit to the top fifth
    puts the 99th percentile near 4, which would let both through; the
    threshold stays between them, as the held-out images show it."""
    heavy = torch.cat([torch.linspace(0.0, 1.0, 94), torch.tensor([10.0, 12.0])])
    threshold = tail_quantile(heavy, 0.99)
    assert threshold == pytest.approx(float(torch.quantile(heavy, 0.99)))
    assert 10.0 < threshold < 12.0


def test_an_exponential_tail_is_recovered_from_a_hundred_images():
    """Exponential scores, whose tail the fit assumes: over many draws the
    threshold lands on the true quantile, a little above it on average."""
    generator = torch.Generator().manual_seed(1)
    estimates = [
        tail_quantile(torch.empty(96).exponential_(generator=generator), 0.99) for _ in range(300)
    ]
    truth = math.log(100.0)  # the 99th percentile of a unit exponential
    assert sum(estimates) / len(estimates) == pytest.approx(truth, rel=0.05)


def test_the_fitted_tail_keeps_the_false_positive_rate_near_its_target():
    """What it is for: on 96 held-out images the 99th percentile read off the
    data lies between the two highest scores, which sit below the true one more
    often than above. For scores shaped like the combined score (the maximum
    of several z-scores), over 300 such calibrations the empirical threshold
    lets through about 1.8 % of new clean images on average and more than 2 %
    in a third of them; the fitted tail about 0.9 %, and more than 2 % in under
    a tenth."""
    generator = torch.Generator().manual_seed(2)
    population = torch.randn(130_000, 8, generator=generator).amax(1)
    new_images = population[:100_000]

    def false_positive_rate(threshold: float) -> float:
        return float((new_images > threshold).float().mean())

    fitted, empirical = [], []
    for start in range(100_000, 100_000 + 300 * 96, 96):
        held_out = population[start : start + 96]
        fitted.append(false_positive_rate(tail_quantile(held_out, 0.99)))
        empirical.append(false_positive_rate(float(torch.quantile(held_out, 0.99))))
    fitted, empirical = torch.tensor(fitted), torch.tensor(empirical)
    assert 0.006 < float(fitted.mean()) < 0.0125 < 0.015 < float(empirical.mean())
    assert (
        float((fitted > 0.02).float().mean())
        < 0.15
        < 0.25
        < float((empirical > 0.02).float().mean())
    )


def test_no_false_positive_allowed_means_the_highest_score():
    scores = torch.arange(20.0)
    assert tail_quantile(scores, 1.0) == pytest.approx(19.0)


def test_a_score_that_is_not_finite_is_refused():
    with pytest.raises(ValueError, match="finite"):
        tail_quantile(torch.tensor([0.1, float("nan"), 2.0] * 10), 0.99)


@pytest.mark.parametrize("two_sided", [False, True])
def test_each_left_out_scale_is_the_scale_of_every_other_value(monkeypatch, two_sided):
    monkeypatch.setattr(detector, "_LEFT_OUT_ROWS", 7)  # rows built in several blocks
    pool = torch.randn(40, generator=torch.Generator().manual_seed(4)) ** 3
    centres, scales = _left_out_scales(pool, 5, 20, two_sided)
    for row, left_out in enumerate(range(5, 25)):
        others = torch.cat([pool[:left_out], pool[left_out + 1 :]])
        expected = _robust_scale(others, two_sided)
        assert float(centres[row]) == expected.center
        assert float(scales[row]) == expected.scale


def test_scores_read_with_scales_set_without_them_keep_new_images_near_the_target():
    """A detector scaled so that the 98th percentile of 96 images looks like a
    unit normal's is scaled by those images' top two: read with that scale,
    they sit lower in its tail than new images do, and a threshold read off
    them lets through more new images than its target. Over 100 simulated
    calibrations of eight normal detectors the threshold read off the
    images that set the scales let through 1.65 % of new images on average,
    and over 2 % in a quarter of them; read off scores each scaled without
    its own image, 0.86 %, and over 2 % in under a tenth."""
    generator = torch.Generator().manual_seed(3)
    names = list("abcdefgh")  # learned detectors: each scaled on the images it scores
    new_images = torch.randn(20_000, 8, generator=generator)
    in_sample, left_out = [], []
    for _ in range(100):
        held = torch.randn(96, 8, generator=generator)
        raw = {d: held[:, j] for j, d in enumerate(names)}
        scales = [_robust_scale(raw[d], two_sided=False) for d in names]

        def combined(values: torch.Tensor, scales=scales) -> torch.Tensor:
            z = [(values[:, j] - s.center) / s.scale for j, s in enumerate(scales)]
            return torch.stack(z, 1).amax(1)

        new = combined(new_images)
        for rates, scores in ((in_sample, combined(held)), (left_out, _left_out_combined([raw]))):
            rates.append(float((new > tail_quantile(scores, 0.99)).float().mean()))
    in_sample, left_out = torch.tensor(in_sample), torch.tensor(left_out)
    assert float(left_out.mean()) < 0.0125 < 0.015 < float(in_sample.mean())
    assert (
        float((left_out > 0.02).float().mean())
        < 0.12
        < 0.2
        < float((in_sample > 0.02).float().mean())
    )


def test_a_pool_too_large_to_leave_each_value_out_is_scaled_on_every_value(monkeypatch):
    monkeypatch.setattr(detector, "LEFT_OUT_MAX_POOL", 30)
    pool = torch.randn(40, generator=torch.Generator().manual_seed(5))
    centres, scales = _left_out_scales(pool, 0, 40, two_sided=False)
    whole = _robust_scale(pool, two_sided=False)
    assert centres.tolist() == [whole.center] and scales.tolist() == [whole.scale]
