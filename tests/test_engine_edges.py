"""The engine on the shapes and scores that broke it: thin images, non-finite scores."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from stylefix_core.bundle import DetectorCalibration, load_bundle
from stylefix_core.config import BatchConfig, Mode
from stylefix_core.engine import Engine, ImageFailure, ImageResult

SHAPES = [(h, w) for h in (1, 2, 3, 5) for w in (1, 2, 3, 5)] + [(1, 3000), (3000, 1), (2, 777)]


@pytest.fixture(scope="module")
def bundle():
    return load_bundle("")


@pytest.mark.parametrize("mode", [Mode.STYLE, Mode.QA])
def test_every_thin_or_tiny_shape_gets_finite_scores(bundle, mode):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]
    outcomes = Engine(bundle, mode, torch.device("cpu"), BatchConfig()).process(images)
    for (height, width), outcome in zip(SHAPES, outcomes, strict=True):
        assert isinstance(outcome, ImageResult), (height, width, outcome)
        assert math.isfinite(outcome.anomaly_score), (height, width)
        assert all(math.isfinite(z) for z in outcome.scores.values()), (height, width)
        assert math.isfinite(outcome.score_after_correction), (height, width)
        if outcome.output is not None:
            assert outcome.output.shape == (height, width, 3)


def test_a_non_finite_score_is_an_error_naming_the_detector(bundle):
    engine = Engine(bundle, Mode.STYLE, torch.device("cpu"), BatchConfig())
    calibration = engine.scorer.calibration
    detectors = {**calibration.detectors, "blur": DetectorCalibration(center=math.nan, scale=1.0)}
    engine.scorer.calibration = dataclasses.replace(calibration, detectors=detectors)
    image = np.random.default_rng(4).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    (outcome,) = engine.process([image])
    assert isinstance(outcome, ImageFailure)
    assert (outcome.stage, outcome.error_type) == ("score", "NonFiniteScore")
    assert "blur" in outcome.message and "24x16" in outcome.message
