"""Procedural catalog assets: deterministic, download-free stand-ins for real images.

Tests, the sample catalog and detector evaluation need images with the structure
that anomaly detectors key on: smooth backgrounds (where banding and collapse
show), hard-ish edges between objects (where blur and ringing show), soft
shadows and shading (where colour casts show) and fine texture (where texture
loss, noise and up-sampling artifacts show). Flat random noise or single shapes
would make every detector look good, so each asset mixes all of these.

Pixel convention: returned images are numpy ``(H, W, 3)`` ``uint8`` RGB. All
drawing is vectorised numpy in float32 on the bounding box of each shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Coherent palettes: two background tones, then object colours (RGB, 0-255).
PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "autumn": (
        (246, 236, 220),
        (222, 196, 160),
        (178, 74, 36),
        (214, 140, 45),
        (120, 58, 40),
        (90, 110, 60),
        (236, 200, 90),
    ),
    "ocean": (
        (226, 240, 246),
        (150, 196, 220),
        (20, 70, 120),
        (40, 140, 170),
        (240, 200, 120),
        (250, 250, 245),
        (70, 90, 110),
    ),
    "pastel": (
        (250, 244, 248),
        (230, 222, 240),
        (244, 170, 190),
        (160, 200, 230),
        (190, 230, 190),
        (250, 220, 160),
        (200, 170, 220),
    ),
    "earth": (
        (236, 230, 214),
        (200, 188, 160),
        (110, 90, 60),
        (150, 130, 90),
        (70, 90, 60),
        (180, 110, 70),
        (60, 50, 45),
    ),
    "studio": (
        (60, 62, 70),
        (28, 30, 36),
        (230, 60, 70),
        (250, 250, 250),
        (40, 160, 220),
        (250, 190, 40),
        (140, 140, 150),
    ),
    "forest": (
        (232, 240, 226),
        (170, 196, 160),
        (30, 90, 50),
        (80, 140, 70),
        (160, 110, 60),
        (230, 210, 120),
        (40, 60, 40),
    ),
}

ShapeSdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Box:
    """A rectangle of the canvas (pixel slices) and its pixel-centre coordinates."""

    ys: slice
    xs: slice
    yy: np.ndarray  # (h, 1) float32
    xx: np.ndarray  # (1, w) float32


def make_asset(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Draw one asset of ``height x width`` pixels from ``rng``.

    Everything random is drawn from ``rng``, so the same generator state always
    gives the same image. Returns ``(height, width, 3)`` uint8 RGB.
    """
    if height < 8 or width < 8:
        raise ValueError(f"asset must be at least 8x8 pixels, got {height}x{width}")
    palette = _palette_colours(rng)
    canvas = _background(rng, height, width, palette[:2])
    n_shapes = int(rng.integers(3, 7))
    for _ in range(n_shapes):
        _draw_shape(rng, canvas, palette[2:])
    grain = rng.standard_normal(canvas.shape[:2], dtype=np.float32)[..., None] * 0.004
    return np.clip(np.rint((canvas + grain) * 255.0), 0, 255).astype(np.uint8)


def make_assets(seed: int, n: int, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Draw ``n`` assets; asset ``i`` has size ``sizes[i % len(sizes)]`` as (height, width).

    Each asset gets its own generator seeded by ``(seed, i)``, so asset ``i`` is
    the same whatever ``n`` is or which other sizes are asked for.
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    if n and not sizes:
        raise ValueError("sizes must not be empty")
    assets = []
    for i in range(n):
        height, width = sizes[i % len(sizes)]
        assets.append(make_asset(np.random.default_rng([seed, i]), height, width))
    return assets


def _palette_colours(rng: np.random.Generator) -> np.ndarray:
    """Pick a palette and jitter it a little so no two assets share exact colours."""
    names = sorted(PALETTES)
    base = np.asarray(PALETTES[names[int(rng.integers(len(names)))]], dtype=np.float32) / 255.0
    jitter = rng.normal(0.0, 0.025, size=base.shape).astype(np.float32)
    return np.clip(base + jitter, 0.0, 1.0)


def _background(rng: np.random.Generator, height: int, width: int, tones: np.ndarray) -> np.ndarray:
    """A smooth background: a linear gradient or a radial vignette, plus slow waves."""
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        t = np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    else:
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        t = np.clip(((yy - cy) ** 2 + (xx - cx) ** 2) / 0.5, 0.0, 1.0)
    freq = rng.uniform(0.5, 2.0, size=2)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=2)
    wave = np.sin(2 * np.pi * freq[0] * xx + phase[0]) * np.cos(2 * np.pi * freq[1] * yy + phase[1])
    t = np.clip(t + 0.06 * wave, 0.0, 1.0)
    return (tones[0] * (1.0 - t[..., None]) + tones[1] * t[..., None]).astype(np.float32)


def _draw_shape(rng: np.random.Generator, canvas: np.ndarray, colours: np.ndarray) -> None:
    """Composite one shaded, possibly textured shape with its soft shadow onto ``canvas``."""
    height, width = canvas.shape[:2]
    size = float(rng.uniform(0.12, 0.32) * min(height, width))
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    sdf = _random_sdf(rng, cy, cx, size)
    light = rng.uniform(0.0, 2.0 * np.pi)
    shadow_off = np.array([np.sin(light), np.cos(light)]) * size * rng.uniform(0.08, 0.18)
    box = _box(canvas.shape, cy, cx, 1.6 * size + float(np.abs(shadow_off).max()) + 4.0)
    if box is None:
        return
    region = canvas[box.ys, box.xs]
    softness = float(rng.uniform(2.0, 5.0))
    shadow = _smooth_inside(sdf(box.yy - shadow_off[0], box.xx - shadow_off[1]), softness)
    region *= 1.0 - float(rng.uniform(0.2, 0.45)) * shadow[..., None]
    dist = sdf(box.yy, box.xx)
    colour = colours[int(rng.integers(len(colours)))]
    fill = _shaded_fill(rng, box, cy, cx, size, light, colour)
    edge = float(rng.uniform(0.6, 1.4))
    alpha = np.clip(0.5 - dist / edge, 0.0, 1.0)[..., None]
    region[...] = region * (1.0 - alpha) + fill * alpha
    if rng.random() < 0.3:
        _stroke(rng, region, dist, edge, colours)


def _box(shape: tuple[int, ...], cy: float, cx: float, radius: float) -> _Box | None:
    """The part of the canvas a shape can touch; drawing there only keeps it fast."""
    y0, y1 = max(int(cy - radius), 0), min(int(np.ceil(cy + radius)), shape[0])
    x0, x1 = max(int(cx - radius), 0), min(int(np.ceil(cx + radius)), shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    return _Box(slice(y0, y1), slice(x0, x1), yy, xx)


def _random_sdf(rng: np.random.Generator, cy: float, cx: float, size: float) -> ShapeSdf:
    """A signed distance function (pixels, negative inside) for a random shape."""
    angle = float(rng.uniform(0.0, np.pi))
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    choice = int(rng.integers(3))
    if choice == 0:
        semi = (size, size * float(rng.uniform(0.45, 1.0)))
        local = _ellipse_sdf(*semi)
    elif choice == 1:
        half = (size, size * float(rng.uniform(0.4, 1.0)))
        local = _rounded_rect_sdf(half, float(rng.uniform(0.05, 0.45)) * min(half))
    else:
        sides = int(rng.integers(3, 9))
        apothems = size * rng.uniform(0.8, 1.0, size=sides).astype(np.float32)
        local = _polygon_sdf(apothems, float(rng.uniform(0.0, 2.0 * np.pi)))

    def sdf(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u = cos * (xx - cx) + sin * (yy - cy)
        v = cos * (yy - cy) - sin * (xx - cx)
        return local(v, u)

    return sdf


def _ellipse_sdf(a: float, b: float) -> ShapeSdf:
    """Ellipse with semi-axes ``a`` (along u) and ``b``; first-order distance estimate."""

    def sdf(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        k = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
        return (k - 1.0) * k / np.maximum(grad, 1e-6)

    return sdf


def _rounded_rect_sdf(half: tuple[float, float], radius: float) -> ShapeSdf:
    """Rounded rectangle with half-extents ``half`` (u, v) and corner ``radius``."""

    def sdf(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        qu = np.abs(u) - (half[0] - radius)
        qv = np.abs(v) - (half[1] - radius)
        outside = np.sqrt(np.maximum(qu, 0.0) ** 2 + np.maximum(qv, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qu, qv), 0.0) - radius

    return sdf


def _polygon_sdf(apothems: np.ndarray, start: float) -> ShapeSdf:
    """Convex polygon as the intersection of half-planes (one per side)."""
    angles = start + 2.0 * np.pi * np.arange(len(apothems)) / len(apothems)
    normals = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)

    def sdf(v: np.ndarray, u: np.ndarray) -> np.ndarray:
        dist = normals[:, 0, None, None] * u + normals[:, 1, None, None] * v
        return (dist - apothems[:, None, None]).max(axis=0)

    return sdf


def _smooth_inside(dist: np.ndarray, softness: float) -> np.ndarray:
    """A soft mask: 1 well inside, 0 well outside, smoothstep over ``softness`` px."""
    t = np.clip(0.5 - dist / (2.0 * softness), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _shaded_fill(
    rng: np.random.Generator,
    box: _Box,
    cy: float,
    cx: float,
    size: float,
    light: float,
    colour: np.ndarray,
) -> np.ndarray:
    """The shape's colour, lit from one side, with an optional surface texture."""
    along = (np.sin(light) * (box.yy - cy) + np.cos(light) * (box.xx - cx)) / size
    shade = 1.0 - float(rng.uniform(0.1, 0.3)) * np.clip(along, -1.5, 1.5)
    fill = colour * shade[..., None]
    if rng.random() < 0.6:
        texture = _texture(rng, box)
        fill = fill * (1.0 + texture[..., None]) + 0.5 * texture[..., None] * (1.0 - colour)
    return np.clip(fill, 0.0, 1.0)


def _texture(rng: np.random.Generator, box: _Box) -> np.ndarray:
    """A zero-mean-ish mid/high-frequency pattern: stripes, dots or woven fabric."""
    choice = int(rng.integers(3))
    angle = float(rng.uniform(0.0, np.pi))
    u = np.cos(angle) * box.xx + np.sin(angle) * box.yy
    v = np.cos(angle) * box.yy - np.sin(angle) * box.xx
    freq = float(rng.uniform(0.1, 0.3))  # cycles per pixel
    amp = float(rng.uniform(0.08, 0.2))
    if choice == 0:
        return amp * np.sin(2.0 * np.pi * freq * u + rng.uniform(0.0, 2.0 * np.pi))
    if choice == 1:
        grid = np.cos(2.0 * np.pi * freq * u) * np.cos(2.0 * np.pi * freq * v)
        return amp * (2.0 * np.clip((grid - 0.3) * 3.0, 0.0, 1.0) - 0.5)
    weave = np.sin(2.0 * np.pi * freq * u) * np.sin(2.0 * np.pi * freq * v)
    noise = rng.standard_normal((box.yy.shape[0], box.xx.shape[1]), dtype=np.float32)
    noise = 0.5 * noise + 0.25 * (np.roll(noise, 1, axis=0) + np.roll(noise, 1, axis=1))
    return amp * (0.6 * weave + 0.5 * noise)


def _stroke(
    rng: np.random.Generator, region: np.ndarray, dist: np.ndarray, edge: float, colours: np.ndarray
) -> None:
    """An outline along the shape's boundary, as illustrations often have."""
    width = float(rng.uniform(0.8, 2.0))
    colour = colours[int(rng.integers(len(colours)))] * 0.6
    alpha = np.clip(0.5 - (np.abs(dist) - width / 2.0) / edge, 0.0, 1.0)[..., None]
    region[...] = region * (1.0 - alpha) + colour * alpha
