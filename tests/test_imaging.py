"""Image decoding guards and deterministic encoding (stylefix_core.imaging)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from stylefix_core.config import JobConfig, Limits
from stylefix_core.errors import DecodeError, InputLimitError
from stylefix_core.imaging import (
    decode_image,
    encode_image,
    read_image_text,
    sha256_hex,
    sniff_extension,
)

LIMITS = Limits()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_rgb(rng: np.random.Generator, height: int = 17, width: int = 23) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A PNG written byte by byte, for what Pillow cannot write (16-bit RGB, bombs)."""
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw_rows))
        + png_chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------ round trips


def test_png_round_trip_is_exact(rng):
    pixels = random_rgb(rng)
    decoded = decode_image(encode_image(pixels, "png"), LIMITS)
    assert decoded.dtype == np.uint8 and decoded.shape == pixels.shape
    assert decoded.flags.c_contiguous and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, pixels)


def test_png_level_trades_size_for_time_and_never_pixels():
    yy, xx = np.mgrid[0:96, 0:96]
    smooth = np.stack([xx * 2, yy * 2, (xx + yy)], axis=2).astype(np.uint8)
    fast, small = encode_image(smooth, "png", png_level=1), encode_image(smooth, "png", png_level=9)
    assert len(small) < len(fast)
    for data in (fast, small):
        np.testing.assert_array_equal(decode_image(data, LIMITS), smooth)
    with pytest.raises(ValueError, match="png_level"):
        encode_image(smooth, "png", png_level=10)
    with pytest.raises(ValueError, match="png_compress_level"):
        JobConfig(input="in", output="out", png_compress_level=-1)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "webp"])
def test_lossy_round_trip_is_close(fmt):
    yy, xx = np.mgrid[0:32, 0:48]
    smooth = np.stack([xx * 5, yy * 7, (xx + yy) * 3], axis=2).astype(np.uint8)
    decoded = decode_image(encode_image(smooth, fmt), LIMITS)
    assert decoded.shape == smooth.shape
    assert np.abs(decoded.astype(int) - smooth.astype(int)).mean() < 3.0


def test_one_pixel_image():
    pixels = np.array([[[10, 200, 30]]], dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_image(pixels, "png"), LIMITS), pixels)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_is_deterministic(rng, fmt):
    pixels = random_rgb(rng)
    text = {"stylefix:key": "a/b", "stylefix:run": "run-1"}
    first = encode_image(pixels, fmt, text=text)
    assert first == encode_image(pixels.copy(), fmt, text=dict(reversed(text.items())))
    assert sniff_extension(first) == {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[fmt]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_text_round_trips(rng, fmt):
    text = {"model_version": "1.2.0", "note": "grüße"}
    assert read_image_text(encode_image(random_rgb(rng), fmt, text=text)) == text
    assert read_image_text(encode_image(random_rgb(rng), fmt)) == {}


def test_encode_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="shape"):
        encode_image(np.zeros((4, 4), dtype=np.uint8), "png")
    with pytest.raises(ValueError, match="uint8"):
        encode_image(np.zeros((4, 4, 3), dtype=np.float32), "png")
    with pytest.raises(ValueError, match="format"):
        encode_image(random_rgb(rng), "gif")


def test_sha256_hex():
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_sniff_extension(rng):
    pixels = random_rgb(rng)
    image = Image.fromarray(pixels)
    assert sniff_extension(pil_bytes(image, "GIF")) == ".gif"
    assert sniff_extension(pil_bytes(image, "BMP")) == ".bmp"
    assert sniff_extension(pil_bytes(image, "TIFF")) == ".tif"
    assert sniff_extension(b"hello world") == ""
    assert sniff_extension(b"") == ""


# --------------------------------------------------------------------- odd modes


def test_16_bit_grayscale_is_scaled_to_8_bits():
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = pil_bytes(Image.fromarray(values), "PNG")
    decoded = decode_image(data, LIMITS)
    assert decoded.shape == (1, 4, 3)
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])


def test_16_bit_rgb_png_becomes_8_bit_rgb():
    row = struct.pack(">HHHHHH", 65535, 0, 0x8000, 0x1200, 0xFFFF, 0x0000)
    data = handmade_png(2, 1, 16, 2, b"\x00" + row)
    decoded = decode_image(data, LIMITS)
    np.testing.assert_array_equal(decoded, [[[255, 0, 128], [18, 255, 0]]])


def test_cmyk_becomes_rgb():
    cmyk = Image.new("CMYK", (3, 2), (255, 0, 0, 0))  # full cyan ink
    decoded = decode_image(pil_bytes(cmyk, "TIFF"), LIMITS)
    assert decoded.shape == (2, 3, 3)
    np.testing.assert_array_equal(decoded[0, 0], [0, 255, 255])


def test_palette_without_transparency_keeps_its_colours():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    decoded = decode_image(pil_bytes(palette, "PNG"), LIMITS)
    np.testing.assert_array_equal(decoded, [[[255, 0, 0], [0, 0, 255]]])


def test_palette_transparency_is_white():
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    data = pil_bytes(palette, "PNG", transparency=1)
    np.testing.assert_array_equal(decode_image(data, LIMITS), [[[255, 0, 0], [255, 255, 255]]])


def test_grayscale_becomes_three_equal_channels():
    gray = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8))
    decoded = decode_image(pil_bytes(gray, "PNG"), LIMITS)
    np.testing.assert_array_equal(decoded[0], [[0, 0, 0], [100, 100, 100], [255, 255, 255]])


def test_la_is_composited_over_white():
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [0, 128]]], dtype=np.uint8), mode="LA")
    decoded = decode_image(pil_bytes(la, "PNG"), LIMITS)
    np.testing.assert_array_equal(decoded[0, :, 0], [255, 0, 127])


def test_rgba_is_composited_over_white():
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 128], [0, 0, 255, 0]]], dtype=np.uint8)
    decoded = decode_image(pil_bytes(Image.fromarray(rgba), "PNG"), LIMITS)
    np.testing.assert_array_equal(decoded[0], [[255, 0, 0], [255, 127, 127], [255, 255, 255]])


# ------------------------------------------------------------- orientation, frames


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (1, lambda a: a),
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # stored rotated: show turned 90 degrees clockwise
        (8, lambda a: np.rot90(a, 1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_is_applied(rng, orientation, expected):
    pixels = random_rgb(rng, 3, 5)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pil_bytes(Image.fromarray(pixels), "PNG", exif=exif.tobytes())
    np.testing.assert_array_equal(decode_image(data, LIMITS), expected(pixels))


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    decoded = decode_image(buffer.getvalue(), LIMITS)
    assert decoded.shape == (3, 4, 3)
    assert (decoded == [255, 0, 0]).all()


# ---------------------------------------------------------------- bad input


def test_zero_bytes():
    with pytest.raises(DecodeError, match="empty"):
        decode_image(b"", LIMITS)


def test_text_is_not_an_image():
    with pytest.raises(DecodeError, match="not a supported image"):
        decode_image(b"this file is named cat.png but it is a shopping list\n", LIMITS)


def test_damaged_png_header():
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00" * 5) + png_chunk(b"IEND", b"")
    with pytest.raises(DecodeError):
        decode_image(data, LIMITS)


@pytest.mark.parametrize("truncated_ok", [False, True])
def test_truncated_png(rng, monkeypatch, truncated_ok):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", truncated_ok)
    data = encode_image(random_rgb(rng, 64, 64), "png")
    with pytest.raises(DecodeError, match="truncated PNG"):
        decode_image(data[: len(data) // 2], LIMITS)


@pytest.mark.parametrize("truncated_ok", [False, True])
def test_truncated_jpeg(rng, monkeypatch, truncated_ok):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", truncated_ok)
    data = encode_image(random_rgb(rng, 64, 64), "jpeg")
    with pytest.raises(DecodeError, match="truncated JPEG"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_png_header_declaring_huge_size_is_refused_before_decoding():
    # 100000 x 100000 pixels declared, a few bytes of pixel data actually present.
    bomb = handmade_png(100_000, 100_000, 8, 2, b"\x00" * 16)
    with pytest.raises(InputLimitError, match="100000x100000"):
        decode_image(bomb, LIMITS)


@pytest.mark.parametrize("pil_limit", [None, 10])
def test_our_pixel_limit_is_independent_of_pillow_global(rng, monkeypatch, pil_limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)
    data = encode_image(random_rgb(rng, 40, 40), "png")
    assert decode_image(data, Limits(max_pixels=1600)).shape == (40, 40, 3)
    with pytest.raises(InputLimitError, match="above the limit of 1599"):
        decode_image(data, Limits(max_pixels=1599))


def test_a_thin_strip_counts_the_pixels_the_networks_work_on(rng):
    """The networks see no side under 32 pixels: a 1 x 5000 strip costs what 32 x 5000 does."""
    data = encode_image(random_rgb(rng, 1, 5000), "png")
    with pytest.raises(InputLimitError, match="160000 pixels \\(each side counted as at least 32"):
        decode_image(data, Limits(max_pixels=100_000))
    assert decode_image(data, Limits(max_pixels=160_000)).shape == (1, 5000, 3)


def test_unsupported_format_is_refused(rng):
    ppm = pil_bytes(Image.fromarray(random_rgb(rng)), "PPM")
    with pytest.raises(DecodeError, match="not a supported image"):
        decode_image(ppm, LIMITS)
