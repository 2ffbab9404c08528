"""The calibration threshold: read off scores scaled without the image they score, and raised
by a fitted tail where few images lie beyond it."""

from __future__ import annotations

import math

import pytest
import torch

from stylefix_core.bundle import DetectorCalibration
from stylefix_core.training import detector
from stylefix_core.training.detector import (
    LEFT_OUT_MIN_POOL,
    SHARED_BUDGET,
    UNFITTED,
    _left_out_combined,
    _left_out_scales,
    _robust_scale,
    _shared_budget,
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


def _old_robust_scale(values: torch.Tensor) -> tuple[float, float]:
    """The scale as written before leaving images out: the shipped scales must not move."""
    center = values.median()
    spread = values - center
    mad = spread.abs().median() * 1.4826
    tail = torch.quantile(spread, 0.98) / 2.054
    return float(center), float(max(mad, tail, 1e-3))


@pytest.mark.parametrize("size", [1, 2, 7, 96, 97, 1000])
def test_a_scale_that_ships_is_what_it_was(size):
    values = torch.randn(size, generator=torch.Generator().manual_seed(size)) ** 3
    scale = _robust_scale(values)
    assert (scale.center, scale.scale) == _old_robust_scale(values)
    constant = _robust_scale(torch.full((size,), 0.5))
    assert constant.scale == 1e-3


def _brute_force(groups, keys):
    """``_left_out_combined`` written the slow way, one image at a time."""
    every_key = torch.cat(keys)
    every = {d: torch.cat([g[d] for g in groups]) for d in groups[0]}
    out = []
    for group, key in zip(groups, keys, strict=True):
        for i, k in enumerate(key.tolist()):
            z = []
            for d, values in group.items():
                pool, pool_key = (every[d], every_key) if d in UNFITTED else (values, key)
                scale = _robust_scale(pool[pool_key != k])
                z.append((float(values[i]) - scale.center) / scale.scale)
            out.append(max(z))
    return torch.tensor(out)


def test_each_image_is_read_with_scales_set_without_any_of_its_scores(monkeypatch):
    """Three groups of unequal size, a statistic scaled on every image
    (``blur``) and two learned detectors; in the first group each image is
    scored twice (both modes), and both its scores are left out. The rows
    are built a few at a time."""
    monkeypatch.setattr(detector, "_LEFT_OUT_ROWS", 7)
    generator = torch.Generator().manual_seed(4)
    names = ["blur", "discriminator", "autoencoder"]
    assert "blur" in UNFITTED
    assert not {"discriminator", "autoencoder"} & UNFITTED
    sizes, groups, keys = [30, 25, 41], [], []
    for g, size in enumerate(sizes):
        groups.append({d: torch.randn(size, generator=generator) ** 3 for d in names})
        key = torch.arange(size) + 1000 * g
        keys.append(key % 15 if g == 0 else key)  # group 0: fifteen images, twice each
    got = _left_out_combined(groups, keys)
    torch.testing.assert_close(got, _brute_force(groups, keys), rtol=1e-5, atol=1e-5)


def _left_out_z(groups, keys, d, group_index, i):
    """One image's z for detector ``d``, scaled without any of its scores."""
    every_key = torch.cat(keys)
    every = torch.cat([g[d] for g in groups])
    values, key = groups[group_index][d], keys[group_index]
    pool, pool_key = (every, every_key) if d in UNFITTED else (values, key)
    scale = _robust_scale(pool[pool_key != int(key[i])])
    return (float(values[i]) - scale.center) / scale.scale


def test_detectors_sharing_a_budget_are_scaled_together_without_the_image_they_score():
    """``blur`` and ``noise`` share one budget: each image's largest z of
    the two is read against the spread of the others' largest z, every
    score of the image left out at both steps."""
    generator = torch.Generator().manual_seed(8)
    names = ["blur", "noise", "autoencoder"]
    assert {"blur", "noise"} <= set(SHARED_BUDGET) and "autoencoder" not in SHARED_BUDGET
    sizes, groups, keys = [24, 30], [], []
    for g, size in enumerate(sizes):
        groups.append({d: torch.randn(size, generator=generator) ** 3 for d in names})
        keys.append(torch.arange(size) % 12 if g == 0 else torch.arange(size) + 100)
    every_key = torch.cat(keys)
    largest = torch.tensor(
        [
            max(_left_out_z(groups, keys, d, g, i) for d in ("blur", "noise"))
            for g in range(len(groups))
            for i in range(len(keys[g]))
        ]
    )
    expected = []
    for position, k in enumerate(every_key.tolist()):
        g = 0 if position < sizes[0] else 1
        i = position if g == 0 else position - sizes[0]
        group = _robust_scale(largest[every_key != k])
        expected.append(
            max(
                (float(largest[position]) - group.center) / group.scale,
                _left_out_z(groups, keys, "autoencoder", g, i),
            )
        )
    got = _left_out_combined(groups, keys)
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_the_largest_z_of_detectors_sharing_a_budget_looks_like_one_detectors():
    """Eight statistics with a budget apiece: the largest of their z-scores
    sits well above a single detector's. Scaled together, its median is 0
    and its 98th percentile a unit normal's, so one threshold holds the
    eight to one detector's share of false positives."""
    generator = torch.Generator().manual_seed(9)
    every = {
        d: torch.randn(2000, generator=generator) * (1 + j) + j for j, d in enumerate(SHARED_BUDGET)
    }
    every["autoencoder"] = torch.randn(2000, generator=generator)
    scales = {d: _robust_scale(v) for d, v in every.items()}
    shared = _shared_budget(scales, every)
    assert sorted(shared) == sorted(SHARED_BUDGET)  # the learned detector keeps its own

    def largest(calibrations: dict[str, DetectorCalibration]) -> torch.Tensor:
        z = [(every[d] - calibrations[d].center) / calibrations[d].scale for d in SHARED_BUDGET]
        return torch.stack(z, 1).amax(1)

    assert float(largest(scales).median()) > 1.0
    together = largest({**scales, **shared})
    assert float(together.median()) == pytest.approx(0.0, abs=0.01)
    assert float(torch.quantile(together, 0.98)) == pytest.approx(2.054, abs=0.01)
    assert _shared_budget({"blur": scales["blur"]}, every) == {}  # a group of one is no group


def test_a_pool_too_small_or_too_large_to_leave_values_out_is_scaled_on_every_value(monkeypatch):
    """With two images, one left out leaves no spread at all (a scale of
    zero, z in the thousands); past a few thousand, one image barely moves
    the percentile and leaving each out would sort the pool once per image."""
    monkeypatch.setattr(detector, "LEFT_OUT_MAX_POOL", 30)
    for size in (2, 3, LEFT_OUT_MIN_POOL, 40):
        pool = torch.randn(size, generator=torch.Generator().manual_seed(5))
        centres, scales = _left_out_scales(pool, torch.arange(size), torch.arange(size))
        whole = _robust_scale(pool)
        assert centres.tolist() == [whole.center], size
        assert scales.tolist() == [pytest.approx(whole.scale)], size
    pool = torch.randn(LEFT_OUT_MIN_POOL + 1, generator=torch.Generator().manual_seed(6))
    _, scales = _left_out_scales(pool, torch.arange(len(pool)), torch.arange(len(pool)))
    assert len(scales) == len(pool)  # large enough: one scale per image left out


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
        scales = [_robust_scale(raw[d]) for d in names]

        def combined(values: torch.Tensor, scales=scales) -> torch.Tensor:
            z = [(values[:, j] - s.center) / s.scale for j, s in enumerate(scales)]
            return torch.stack(z, 1).amax(1)

        new = combined(new_images)
        for rates, scores in (
            (in_sample, combined(held)),
            (left_out, _left_out_combined([raw], [torch.arange(96)])),
        ):
            rates.append(float((new > tail_quantile(scores, 0.99)).float().mean()))
    in_sample, left_out = torch.tensor(in_sample), torch.tensor(left_out)
    assert float(left_out.mean()) < 0.0125 < 0.015 < float(in_sample.mean())
    assert (
        float((left_out > 0.02).float().mean())
        < 0.1
        < 0.2
        < float((in_sample > 0.02).float().mean())
    )
