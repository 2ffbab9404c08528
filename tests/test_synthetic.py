"""Procedural assets: layout, determinism, and enough structure for detectors to matter."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stylefix_core.synthetic import make_asset, make_assets

SIZES = [(128, 128), (128, 160), (96, 128), (192, 192)]


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float32).mean(axis=2) / 255.0
    gy = np.abs(np.diff(grey, axis=0))[:, :-1]
    gx = np.abs(np.diff(grey, axis=1))[:-1, :]
    return np.maximum(gx, gy)


@pytest.mark.parametrize(("height", "width"), [*SIZES, (8, 8), (33, 71)])
def test_shape_dtype_and_range(height: int, width: int) -> None:
    image = make_asset(np.random.default_rng(0), height, width)
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous


def test_same_generator_state_gives_same_image() -> None:
    first = make_asset(np.random.default_rng(42), 96, 128)
    second = make_asset(np.random.default_rng(42), 96, 128)
    np.testing.assert_array_equal(first, second)


def test_different_seeds_give_different_images() -> None:
    images = [make_asset(np.random.default_rng(seed), 64, 64) for seed in range(6)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


def test_make_assets_cycles_sizes_and_is_stable_per_index() -> None:
    assets = make_assets(3, 6, SIZES)
    assert [a.shape[:2] for a in assets] == [SIZES[i % 4] for i in range(6)]
    np.testing.assert_array_equal(make_assets(3, 2, SIZES)[1], assets[1])
    assert make_assets(3, 0, []) == []


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        make_asset(np.random.default_rng(0), 4, 64)
    with pytest.raises(ValueError):
        make_assets(0, 2, [])
    with pytest.raises(ValueError):
        make_assets(0, -1, SIZES)


def test_assets_have_edges_smooth_areas_texture_and_colour() -> None:
    """Detectors need all of these; a flat or pure-noise image would make them trivial."""
    for image in make_assets(11, 12, SIZES):
        grad = _gradient_magnitude(image)
        assert (grad > 0.15).mean() > 0.005, "no sharp edges"
        assert (grad < 0.01).mean() > 0.25, "no smooth regions"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 300, "too few colours"
        assert image.std() > 10.0
    textured = [(_gradient_magnitude(img) > 0.04).mean() for img in make_assets(11, 12, SIZES)]
    assert max(textured) > 0.1, "no textured surfaces in a dozen assets"


def test_fast_enough_for_on_the_fly_data() -> None:
    rng = np.random.default_rng(0)
    make_asset(rng, 128, 128)
    start = time.perf_counter()
    for _ in range(20):
        make_asset(rng, 128, 128)
    per_image = (time.perf_counter() - start) / 20
    assert per_image < 0.05  # ~4 ms on a laptop core; generous for loaded CI machines
