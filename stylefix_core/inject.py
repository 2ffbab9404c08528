"""Anomaly injectors: controlled damage for training, the sample catalog and evaluation.

The corrector learns to undo these, the detector is calibrated against them, and
evaluation checks generalisation on kinds held out of training. Each injector
is a pure function ``(x, severity, generator) -> Tensor``:

* ``x``: float RGB in [0, 1], shape ``(3, H, W)`` or ``(N, 3, H, W)``, any device;
* ``severity`` in [0, 1]: 0 is nearly invisible, 1 is blatant, and the effect
  grows with it (for a fixed generator state);
* the result is a new tensor of the same shape, dtype and device, in [0, 1];
  the input is never modified.

Random quantities (noise, cast direction, pattern phase) come from
``generator``, drawn image by image in batch order. Injecting a batch therefore
consumes the generator exactly as injecting its images one after another does,
and gives the same images. Random tensors are drawn on the generator's device
and moved to ``x``'s, so a CPU generator works for a GPU batch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_LUMA = (0.299, 0.587, 0.114)


class Injector(Protocol):
    """The signature every injector has (see the module docstring)."""

    def __call__(
        self, x: torch.Tensor, severity: float, generator: torch.Generator
    ) -> torch.Tensor: ...


class Injection(NamedTuple):
    """What :func:`random_injection` did: the damaged image, which kind, how hard."""

    image: torch.Tensor
    kind: str
    severity: float


# ----------------------------------------------------------------------------- helpers


def _as_batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """View ``x`` as NCHW float; remember whether to drop the batch axis again."""
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (3,H,W) or (N,3,H,W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [0, 1], got {x.dtype}")
    return (x.unsqueeze(0), True) if x.dim() == 3 else (x, False)


def _finish(out: torch.Tensor, unbatched: bool) -> torch.Tensor:
    """Clamp to the pixel range and restore the caller's layout."""
    out = out.clamp(0.0, 1.0)
    return out.squeeze(0) if unbatched else out


def _check_severity(severity: float) -> float:
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return float(severity)


def _injector(fn: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]) -> Injector:
    """Wrap an NCHW implementation with validation, layout handling and clamping.

    Implementations may assume a 4-D float batch and may return values out of
    range; they must not write into their input.
    """

    def wrapped(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
        batch, unbatched = _as_batch(x)
        out = fn(batch, _check_severity(severity), generator)
        return _finish(out, unbatched)

    wrapped.__name__ = fn.__name__.lstrip("_")
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _rand(shape: Sequence[int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, moved to ``like``'s."""
    values = torch.rand(tuple(shape), generator=generator, device=generator.device)
    return values.to(device=like.device, dtype=like.dtype)


def _randn(shape: Sequence[int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers drawn on the generator's device, moved to ``like``'s."""
    values = torch.randn(tuple(shape), generator=generator, device=generator.device)
    return values.to(device=like.device, dtype=like.dtype)


def _per_image(x: torch.Tensor, draw: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Stack ``draw(image)`` over the batch, image by image in batch order.

    ``draw`` takes its randomness from the injector's generator; calling it in
    order is what makes a batch equal to its images injected one by one.
    """
    return torch.stack([draw(image) for image in x])


def _luma(x: torch.Tensor) -> torch.Tensor:
    weights = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _gaussian_kernel(sigma: float, like: torch.Tensor) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an NCHW batch with replicate padding (edge-safe)."""
    if sigma <= 0.0:
        return x.clone()
    return separable_filter(x, _gaussian_kernel(sigma, x))


def separable_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` (odd length) along rows then columns of every channel, replicate-padded."""
    radius = kernel.numel() // 2
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.avg_pool2d(padded, 2 * radius + 1, stride=1)


def _structure(x: torch.Tensor, radius: int) -> torch.Tensor:
    """How much of the local luma variation is a consistent edge rather than texture.

    Near 1 where gradients in the window point the same way (an object edge or a
    smooth ramp), near 0 where they cancel out (stripes, dots, fabric). This is
    the windowed-variation ratio of relative-total-variation smoothing.
    """
    luma = _luma(x)
    gx = F.pad(luma[..., :, 1:] - luma[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(luma[..., 1:, :] - luma[..., :-1, :], (0, 0, 0, 1))
    net = _box_mean(gx, radius).abs() + _box_mean(gy, radius).abs()
    total = _box_mean(gx.abs(), radius) + _box_mean(gy.abs(), radius)
    return net / (total + 2e-3)


def _lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


# ----------------------------------------------------------------------------- injectors


@_injector
def _colour_cast(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Tint the image towards a random hue (channel gains plus an offset)."""

    def direction(_: torch.Tensor) -> torch.Tensor:
        d = _randn((3,), generator, x)
        d = d - d.mean()
        return d / d.norm().clamp_min(1e-6)

    d = _per_image(x, direction).view(-1, 3, 1, 1)
    return x * (1.0 + 0.6 * severity * d) + 0.18 * severity * d


@_injector
def _desaturate(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Pull colours towards grey; at severity 1 the image is fully grey."""
    return _lerp(x, _luma(x).expand_as(x), severity)


@_injector
def _blur(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur; sigma grows from 0 to 3 pixels."""
    return gaussian_blur(x, 3.0 * severity)


@_injector
def _texture_loss(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Smooth out fine texture while keeping object edges (a 'plastic' look).

    Pixels whose neighbourhood is texture are replaced by a blurred version;
    pixels near a consistent edge keep their own value, so shapes stay crisp.
    """
    if severity == 0.0:
        return x.clone()
    keep = _box_mean((1.5 * _structure(x, 4)).clamp(0.0, 1.0), 1)
    smooth = gaussian_blur(x, 0.8 + 2.0 * severity)
    return x + (smooth - x) * (min(1.0, 1.3 * severity) * (1.0 - keep))


@_injector
def _noise(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise (sigma up to 0.15) plus salt-and-pepper (up to 3 % of pixels)."""

    def draw(image: torch.Tensor) -> torch.Tensor:
        gauss = _randn(image.shape, generator, image) * (0.15 * severity)
        pick = _rand((2, *image.shape[-2:]), generator, image)
        noisy = image + gauss
        salt = (pick[0] < 0.03 * severity).unsqueeze(0)
        value = (pick[1] < 0.5).to(image.dtype).unsqueeze(0).expand_as(image)
        return torch.where(salt, value, noisy)

    return _per_image(x, draw)


@_injector
def _jpeg_blocking(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Re-encode each image as JPEG (PIL) at a quality falling from 95 to 4."""
    quality = round(95 - 91 * severity)
    subsampling = 0 if severity < 0.3 else 2  # 4:4:4 when mild, 4:2:0 when strong

    def encode(image: torch.Tensor) -> torch.Tensor:
        array = (
            (image.detach().clamp(0, 1) * 255.0)
            .round()
            .to(torch.uint8)
            .permute(1, 2, 0)
            .cpu()
            .numpy()
        )
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        return (
            torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(image.device, image.dtype) / 255.0
        )

    return _per_image(x, encode)


@_injector
def _checkerboard(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """A stride-2 up-sampling artifact: a periodic 2x2 (and weaker 4x4) pattern.

    Transposed convolutions whose kernel size is not a multiple of their stride
    overlap unevenly, so the output is modulated by a tile of period 2; stacked
    layers add period 4. The pattern is stronger in brighter areas, as it is in
    real generator output.
    """
    height, width = x.shape[-2:]

    def pattern(image: torch.Tensor) -> torch.Tensor:
        tiles = []
        for period, weight in ((2, 1.0), (4, 0.35)):
            tile = _randn((3, period, period), generator, image)
            tile = tile - tile.mean(dim=(-2, -1), keepdim=True)
            tile = tile / tile.abs().amax().clamp_min(1e-6)
            reps = (1, math.ceil(height / period), math.ceil(width / period))
            tiles.append(weight * tile.repeat(reps)[:, :height, :width])
        return tiles[0] + tiles[1]

    tile = _per_image(x, pattern)
    strength = 0.15 * severity * (0.4 + 0.6 * _luma(x))
    return x + strength * tile


@_injector
def _posterize(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Quantise every channel to fewer levels: 256 at severity 0, 3 at severity 1."""
    levels = max(2, round(256.0 ** (1.0 - severity) * 3.0**severity))
    return torch.round(x * (levels - 1)) / (levels - 1)


@_injector
def _banding(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Visible steps in smooth gradients (too few levels, no dither); texture is untouched.

    The low-pass part of smooth regions is quantised with a random threshold
    offset; busy regions keep their pixels, as codecs and 8-bit pipelines do.
    """
    if severity == 0.0:
        return x.clone()
    levels = 48.0 * (6.0 / 48.0) ** severity
    base = gaussian_blur(x, 1.5)
    detail = x - base
    busy = _box_mean((detail * detail).sum(dim=1, keepdim=True), 2)
    smooth_weight = torch.exp(-busy / 4e-4)
    offset = _per_image(x, lambda image: _rand((1,), generator, image)).view(-1, 1, 1, 1)
    quantised = (torch.floor(base * levels + offset) + 0.5 - offset) / levels
    return x + smooth_weight * (quantised - base)


@_injector
def _collapse(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Pull the image towards a flat colour with a faint repeated texture (mode collapse)."""
    height, width = x.shape[-2:]

    def target(image: torch.Tensor) -> torch.Tensor:
        colour = image.mean(dim=(-2, -1), keepdim=True) + 0.08 * _randn((3, 1, 1), generator, image)
        freq = 0.1 + 0.2 * _rand((2,), generator, image)
        yy = torch.arange(height, device=image.device, dtype=image.dtype).view(-1, 1)
        xx = torch.arange(width, device=image.device, dtype=image.dtype).view(1, -1)
        wave = torch.sin(2 * math.pi * freq[0] * yy) * torch.sin(2 * math.pi * freq[1] * xx)
        return colour + 0.025 * wave

    return _lerp(x, _per_image(x, target), 0.95 * severity)


@_injector
def _hue_shift(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate hue (in YIQ) by up to 180 degrees, in a random direction per image."""
    rgb_to_yiq = x.new_tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
    )
    yiq_to_rgb = torch.linalg.inv(rgb_to_yiq)

    def rotation(image: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if float(_rand((1,), generator, image)) < 0.5 else -1.0
        theta = sign * math.pi * severity
        c, s = math.cos(theta), math.sin(theta)
        rot = image.new_tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
        return yiq_to_rgb @ rot @ rgb_to_yiq

    matrices = _per_image(x, rotation)
    return torch.einsum("nij,njhw->nihw", matrices, x)


@_injector
def _over_sharpen(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Unsharp masking pushed too far: halos at edges and amplified fine detail."""
    return x + 4.0 * severity * (x - gaussian_blur(x, 1.2))


@_injector
def _vignette_dark(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Darken towards the corners around a slightly off-centre point."""
    height, width = x.shape[-2:]
    yy = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype).view(-1, 1)
    xx = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype).view(1, -1)

    def falloff(image: torch.Tensor) -> torch.Tensor:
        centre = 0.3 * (_rand((2,), generator, image) - 0.5)
        r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 2.0
        return (1.0 - 0.9 * severity * r2.clamp(0.0, 1.0) ** 0.8).unsqueeze(0)

    return x * _per_image(x, falloff)


# ----------------------------------------------------------------------------- registry

INJECTORS: dict[str, Injector] = {
    "colour_cast": _colour_cast,
    "desaturate": _desaturate,
    "blur": _blur,
    "texture_loss": _texture_loss,
    "noise": _noise,
    "jpeg_blocking": _jpeg_blocking,
    "checkerboard": _checkerboard,
    "posterize": _posterize,
    "banding": _banding,
    "collapse": _collapse,
    "hue_shift": _hue_shift,
    "over_sharpen": _over_sharpen,
    "vignette_dark": _vignette_dark,
}

HELD_OUT_KINDS: tuple[str, ...] = ("hue_shift", "over_sharpen", "vignette_dark")
"""Kinds no model may train on; evaluation uses them to measure generalisation."""

CORRECTOR_TRAINING_KINDS: tuple[str, ...] = tuple(k for k in INJECTORS if k not in HELD_OUT_KINDS)
"""Kinds the corrector and the detector may see during training."""


def get_injector(kind: str) -> Injector:
    """The injector registered as ``kind``; a ``KeyError`` naming the known kinds if none."""
    try:
        return INJECTORS[kind]
    except KeyError:
        raise KeyError(f"unknown anomaly kind {kind!r}; known: {sorted(INJECTORS)}") from None


def inject(x: torch.Tensor, kind: str, severity: float, seed: int = 0) -> torch.Tensor:
    """Apply one injector with a fresh CPU generator seeded by ``seed`` (reproducible)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return get_injector(kind)(x, severity, generator)


def random_injection(
    x: torch.Tensor,
    generator: torch.Generator,
    kinds: Sequence[str] = CORRECTOR_TRAINING_KINDS,
    severity_range: tuple[float, float] = (0.1, 1.0),
) -> Injection:
    """Damage ``x`` (one image or a whole batch) with one random kind at a random severity.

    The kind and severity are drawn from ``generator`` (CPU draws), then the
    injector draws its own randomness from it. Defaults to the training kinds
    so held-out kinds never leak into a training batch by accident.
    """
    if not kinds:
        raise ValueError("kinds must not be empty")
    low, high = severity_range
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"severity_range must satisfy 0 <= low <= high <= 1, got {severity_range}")
    index = int(torch.randint(len(kinds), (1,), generator=generator, device=generator.device))
    draw = float(torch.rand((1,), generator=generator, device=generator.device))
    severity = low + (high - low) * draw
    kind = kinds[index]
    return Injection(get_injector(kind)(x, severity, generator), kind, severity)
