"""Anomaly injectors: the contract every injector keeps, and that each does what it says."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from stylefix_core.inject import (
    CORRECTOR_TRAINING_KINDS,
    HELD_OUT_KINDS,
    INJECTORS,
    Injection,
    get_injector,
    inject,
    random_injection,
)
from stylefix_core.synthetic import make_assets

ALL_KINDS = sorted(INJECTORS)
SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """Three seeded procedural assets, (3, 3, 64, 80) float in [0, 1]."""
    assets = make_assets(2024, 3, [(64, 80)])
    return torch.from_numpy(np.stack(assets)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def image(batch: torch.Tensor) -> torch.Tensor:
    return batch[0]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- metrics


def _grey(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=-3)


def _gradient_energy(x: torch.Tensor) -> float:
    g = _grey(x)
    return float((g.diff(dim=-1) ** 2).mean() + (g.diff(dim=-2) ** 2).mean())


def _laplacian_energy(x: torch.Tensor) -> float:
    g = _grey(x)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean())


def _nyquist_energy(x: torch.Tensor) -> float:
    """Power at the three stride-2 frequencies, where up-sampling artifacts live."""
    spectrum = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
    h, w = x.shape[-2:]
    return float(
        spectrum[..., h // 2, 0].sum()
        + spectrum[..., 0, w // 2].sum()
        + spectrum[..., h // 2, w // 2].sum()
    )


def _variance(x: torch.Tensor) -> float:
    return float(x.var(dim=(-2, -1)).mean())


def _saturation(x: torch.Tensor) -> float:
    return float(x.std(dim=-3).mean())


def _unique_levels(x: torch.Tensor) -> float:
    return float(torch.unique(torch.round(x * 255)).numel())


def _blockiness(x: torch.Tensor) -> float:
    """Mean jump across 8-pixel block borders relative to the jump inside blocks."""
    dx = (x.diff(dim=-1)).abs().mean(dim=(-3, -2))
    border = dx[7::8].mean()
    inside = torch.cat([dx[i::8] for i in range(7)]).mean()
    return float(border / (inside + 1e-6))


def _corner_darkening(x: torch.Tensor) -> float:
    h, w = x.shape[-2:]
    centre = x[..., h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean()
    corners = torch.stack(
        [
            x[..., :6, :6].mean(),
            x[..., :6, -6:].mean(),
            x[..., -6:, :6].mean(),
            x[..., -6:, -6:].mean(),
        ]
    )
    return float(corners.mean() / centre)


def _distance_from(reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    return lambda x: float((x - reference).abs().mean())


def _mean_colour_shift(reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    ref = reference.mean(dim=(-2, -1))
    return lambda x: float((x.mean(dim=(-2, -1)) - ref).norm())


# kind -> (metric builder given the clean image, +1 if severity raises it, -1 if it lowers it)
EFFECTS: dict[str, tuple[Callable[[torch.Tensor], Callable[[torch.Tensor], float]], int]] = {
    "colour_cast": (_mean_colour_shift, +1),
    "desaturate": (lambda _: _saturation, -1),
    "blur": (lambda _: _gradient_energy, -1),
    "texture_loss": (lambda _: _laplacian_energy, -1),
    "noise": (lambda _: _laplacian_energy, +1),
    "jpeg_blocking": (lambda _: _blockiness, +1),
    "checkerboard": (lambda _: _nyquist_energy, +1),
    "posterize": (lambda _: _unique_levels, -1),
    "banding": (_distance_from, +1),
    "collapse": (lambda _: _variance, -1),
    "hue_shift": (_distance_from, +1),
    "over_sharpen": (lambda _: _gradient_energy, +1),
    "vignette_dark": (lambda _: _corner_darkening, -1),
}


# ----------------------------------------------------------------------------- registry


def test_registry_and_the_split_into_training_and_held_out() -> None:
    assert set(EFFECTS) == set(INJECTORS)
    assert len(HELD_OUT_KINDS) >= 3
    assert not set(HELD_OUT_KINDS) & set(CORRECTOR_TRAINING_KINDS)
    assert set(HELD_OUT_KINDS) | set(CORRECTOR_TRAINING_KINDS) == set(INJECTORS)
    assert {"hue_shift", "over_sharpen", "vignette_dark"} <= set(HELD_OUT_KINDS)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="colour_cast"):
        get_injector("sepia")


# ----------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_shape_range_and_input_untouched(kind: str, batch: torch.Tensor) -> None:
    before = batch.clone()
    for x in (batch, batch[0]):
        out = INJECTORS[kind](x, 0.8, _gen())
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert out.data_ptr() != x.data_ptr()
    torch.testing.assert_close(batch, before, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_tiny_and_odd_sizes_work(kind: str) -> None:
    x = torch.rand((2, 3, 7, 9), generator=_gen(1))
    out = INJECTORS[kind](x, 1.0, _gen())
    assert out.shape == x.shape


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_severity_zero_is_nearly_invisible_and_one_is_not(kind: str, batch: torch.Tensor) -> None:
    faint = float((INJECTORS[kind](batch, 0.0, _gen()) - batch).abs().mean())
    blatant = float((INJECTORS[kind](batch, 1.0, _gen()) - batch).abs().mean())
    assert faint < 0.01
    assert blatant > 0.01
    assert blatant > 4 * faint


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_effect_grows_with_severity(kind: str, image: torch.Tensor) -> None:
    build, direction = EFFECTS[kind]
    metric = build(image)
    values = [direction * metric(INJECTORS[kind](image, s, _gen(5))) for s in SEVERITIES]
    span = values[-1] - values[0]
    assert span > 0, f"{kind}: no effect, {values}"
    for lower, higher in zip(values, values[1:], strict=False):
        assert higher >= lower - 0.02 * span, f"{kind}: not monotone in severity, {values}"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_batch_equals_its_images_one_by_one(kind: str, batch: torch.Tensor) -> None:
    together = INJECTORS[kind](batch, 0.7, _gen(3))
    generator = _gen(3)
    apart = torch.stack([INJECTORS[kind](x, 0.7, generator) for x in batch])
    torch.testing.assert_close(together, apart)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_unbatched_equals_batch_of_one_and_seed_reproduces(kind: str, image: torch.Tensor) -> None:
    single = inject(image, kind, 0.6, seed=9)
    torch.testing.assert_close(inject(image[None], kind, 0.6, seed=9)[0], single)
    torch.testing.assert_close(inject(image, kind, 0.6, seed=9), single, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_severity_out_of_range_is_rejected(bad: float, image: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="severity"):
        inject(image, "blur", bad)


def test_wrong_layout_and_dtype_are_rejected(image: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="3,H,W"):
        inject(image.permute(1, 2, 0), "noise", 0.5)
    with pytest.raises(TypeError):
        inject((image * 255).to(torch.uint8), "noise", 0.5)


def test_random_noise_differs_between_images_of_a_batch(image: torch.Tensor) -> None:
    out = inject(torch.stack([image, image]), "noise", 0.5, seed=1)
    assert not torch.equal(out[0], out[1])


# ----------------------------------------------------------------------------- kind-specific


def _step_with_stripes(size: int = 64) -> torch.Tensor:
    """Left half dark and striped (period 4), right half light and flat."""
    x = torch.full((3, size, size), 0.8)
    stripes = 0.3 + 0.1 * torch.sin(torch.arange(size) * (torch.pi / 2)).view(1, -1)
    x[:, :, : size // 2] = stripes[:, : size // 2]
    return x


def test_texture_loss_keeps_edges_that_blur_destroys() -> None:
    x = _step_with_stripes()
    smooth = inject(x, "texture_loss", 1.0)
    blurred = inject(x, "blur", 1.0)

    def step(t: torch.Tensor) -> float:
        return float(t[:, :, 32].mean() - t[:, :, 31].mean())

    assert _laplacian_energy(smooth[:, :, :24]) < 0.2 * _laplacian_energy(x[:, :, :24])
    assert step(smooth) > 0.75 * step(x)
    assert step(blurred) < 0.3 * step(x)


def test_banding_quantises_smooth_ramps_but_leaves_texture() -> None:
    ramp = torch.linspace(0.2, 0.8, 96).view(1, 1, -1).expand(3, 32, 96).clone()
    banded = inject(ramp, "banding", 1.0)
    assert _unique_levels(banded) < 0.3 * _unique_levels(ramp)
    assert float(banded.diff(dim=-1).abs().max()) > 4 * float(ramp.diff(dim=-1).abs().max())
    textured = _step_with_stripes()[:, :, :32]
    torch.testing.assert_close(inject(textured, "banding", 1.0), textured, rtol=0, atol=0.02)


def test_jpeg_blocking_is_a_real_jpeg_round_trip(image: torch.Tensor) -> None:
    out = inject(image, "jpeg_blocking", 1.0)
    torch.testing.assert_close(out * 255, torch.round(out * 255))  # came back as 8-bit pixels
    assert _blockiness(out) > 1.3 * _blockiness(image)


def test_desaturate_at_full_severity_is_grey(image: torch.Tensor) -> None:
    out = inject(image, "desaturate", 1.0)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[1], out[2])


def test_hue_shift_keeps_luma(image: torch.Tensor) -> None:
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    out = inject(image, "hue_shift", 0.5)
    unclipped = (out > 0.001) & (out < 0.999)
    mask = unclipped.all(dim=0)
    torch.testing.assert_close(
        (out * luma).sum(0)[mask], (image * luma).sum(0)[mask], rtol=0, atol=1e-4
    )


# ----------------------------------------------------------------------------- training draws


def test_random_injection_is_typed_reproducible_and_skips_held_out(batch: torch.Tensor) -> None:
    first = random_injection(batch, _gen(17))
    second = random_injection(batch, _gen(17))
    assert isinstance(first, Injection)
    assert first.kind == second.kind and first.severity == second.severity
    torch.testing.assert_close(first.image, second.image)
    generator = _gen(0)
    drawn = {random_injection(batch[:1, :, :16, :16], generator).kind for _ in range(120)}
    assert drawn == set(CORRECTOR_TRAINING_KINDS)


def test_random_injection_respects_kinds_and_severity_range(image: torch.Tensor) -> None:
    generator = _gen(4)
    for _ in range(20):
        result = random_injection(image, generator, kinds=HELD_OUT_KINDS, severity_range=(0.6, 0.9))
        assert result.kind in HELD_OUT_KINDS
        assert 0.6 <= result.severity <= 0.9
        assert result.image.shape == image.shape
    with pytest.raises(ValueError):
        random_injection(image, generator, kinds=())
    with pytest.raises(ValueError):
        random_injection(image, generator, severity_range=(0.9, 0.2))


# ----------------------------------------------------------------------------- devices


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_cuda_batch_with_cpu_generator_matches_cpu(kind: str, batch: torch.Tensor) -> None:
    on_gpu = INJECTORS[kind](batch.cuda(), 0.7, _gen(8))
    assert on_gpu.device.type == "cuda"
    atol = 1.5 / 255 if kind in ("jpeg_blocking", "posterize", "banding") else 1e-4
    torch.testing.assert_close(
        on_gpu.cpu(), INJECTORS[kind](batch, 0.7, _gen(8)), rtol=0, atol=atol
    )
