"""The statistical signature, the falloff statistic and the damage classifier that reads them."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from stylefix_core import inject
from stylefix_core.bundle import load_bundle
from stylefix_core.evaluation.metrics import auroc
from stylefix_core.scoring import features
from stylefix_core.scoring.scorer import Scorer
from stylefix_core.scoring.signature import SIGNATURE_DIM, signature
from stylefix_core.synthetic import make_assets
from stylefix_core.training.data import to_tensor
from stylefix_core.training.detector import DetectorTrainConfig, train_damage_classifier

CPU = torch.device("cpu")


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 1, 1), (1, 3, 2, 2), (1, 3, 3, 900)])
def test_the_signature_has_its_size_and_is_finite_for_any_image(shape):
    values = signature(torch.rand(shape, generator=torch.Generator().manual_seed(0)))
    assert values.shape == (shape[0], SIGNATURE_DIM)
    assert bool(torch.isfinite(values).all())


def test_a_batch_signs_as_its_images_do_one_by_one(photo_patches):
    batch = torch.stack(photo_patches[:4])
    one_by_one = torch.cat([signature(p[None]) for p in photo_patches[:4]])
    torch.testing.assert_close(signature(batch), one_by_one, rtol=1e-4, atol=1e-4)


def test_falloff_reads_dark_corners_and_not_a_flat_or_one_sided_picture(photo_patches):
    clean = torch.stack(photo_patches[:40])
    vignetted = inject.inject(clean, "vignette_dark", severity=0.6, seed=1)
    assert float((features.falloff(vignetted) > features.falloff(clean)).float().mean()) > 0.95
    assert float(features.falloff(torch.full((1, 3, 32, 32), 0.5))) == pytest.approx(0.0, abs=1e-4)
    # A bright side is lighting, not a fall-off.
    ramp = torch.linspace(0.1, 0.9, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    assert float(features.falloff(ramp)) == pytest.approx(0.0, abs=1e-3)
    assert float(features.falloff(ramp)) < float(features.falloff(vignetted).median())
    # Lighting curved one way is not a fall-off, in the log or not.
    for lit in (ramp, ramp.transpose(-1, -2), ramp**2):
        assert float(features.falloff(lit)) == pytest.approx(0.0, abs=1e-3)
    # Too small to have a centre and a rim: no reading rather than noise.
    assert features.falloff(torch.rand(2, 3, 4, 64)).tolist() == [0.0, 0.0]


def test_falloff_reads_a_vignette_under_dark_content_as_under_bright(photo_patches):
    """A vignette multiplies the light: on a patch at a third of its
    brightness the corners fall by the same share, and the reading barely
    moves (by a tenth, at the median, on these patches)."""
    clean = torch.stack(photo_patches[:40])
    vignetted = inject.inject(clean, "vignette_dark", severity=0.6, seed=1)
    bright, dark = features.falloff(vignetted), features.falloff(vignetted / 3.0)
    assert float((dark > features.falloff(clean / 3.0)).float().mean()) > 0.95
    assert float((dark / bright).median()) > 0.7


def test_the_damage_classifier_tells_damaged_photographs_from_unseen_clean_ones(photo_patches):
    cfg = replace(DetectorTrainConfig(), damage_copies=4, damage_steps=300)
    train, test = photo_patches[:120], photo_patches[120:200]
    model = train_damage_classifier(train, cfg, CPU)
    generator = torch.Generator().manual_seed(7)
    damaged = [inject.random_injection(p, generator, severity_range=(0.5, 1.0)).image for p in test]
    with torch.inference_mode():
        clean_logits = model(signature(torch.stack(test))).numpy()
        damaged_logits = model(signature(torch.stack(damaged))).numpy()
    labels = np.r_[np.zeros(len(test)), np.ones(len(test))]
    assert auroc(np.r_[clean_logits, damaged_logits], labels) > 0.85


def test_the_damage_classifier_is_deterministic_for_a_seed(photo_patches):
    cfg = replace(DetectorTrainConfig(), damage_copies=1, damage_steps=20)
    a, b = (train_damage_classifier(photo_patches[:16], cfg, CPU) for _ in range(2))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("detector", ["damage", "pixel_damage"])
def test_high_quality_jpeg_inputs_do_not_look_damaged_to_the_shipped_bundle(detector):
    """Catalogs are full of quality-90 and -95 JPEGs: styled, they must not
    read as damaged much more often than the same assets given as PNGs."""
    bundle = load_bundle("")
    scorer = Scorer.for_bundle(bundle)
    assets = make_assets(seed=21, n=48, sizes=[(128, 128)])
    shares = {}
    with torch.inference_mode():
        for quality in (None, 95, 90):
            pixels = assets if quality is None else [_jpeg(a, quality) for a in assets]
            content = torch.stack([to_tensor(p) for p in pixels])
            styled = bundle.generator(content)
            scores = scorer(styled, scorer.style_aims(content))
            shares[quality] = float((scores.z[detector] > scores.threshold).float().mean())
    assert shares[95] <= shares[None] + 0.05 and shares[90] <= shares[None] + 0.1, shares


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling=0)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).copy()
