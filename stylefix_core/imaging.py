"""Decode untrusted image bytes into RGB arrays and encode arrays back to bytes.

numpy and Pillow only (no torch), so readers and writers can use it without
pulling in the models. Decoded images are ``(H, W, 3)`` ``uint8`` RGB arrays,
C-contiguous and writable; this is the only layout :func:`decode_image`
returns and :func:`encode_image` accepts.

Input bytes come from the outside world, so decoding is guarded: the declared
size is checked before any pixel is decoded, only a fixed list of formats is
ever parsed (no Ghostscript-backed EPS, no exotic plugins), and neither
Pillow's ``Image.MAX_IMAGE_PIXELS`` nor ``ImageFile.LOAD_TRUNCATED_IMAGES``
(process globals someone else may have changed) decides what is accepted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import zlib

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin
from PIL.ExifTags import Base as ExifBase

from stylefix_core.config import MODEL_MIN_SIDE, PNG_LEVEL, Limits, working_pixels
from stylefix_core.errors import DecodeError, InputLimitError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
ENCODE_FORMATS = ("png", "jpeg", "webp")

# Pillow plugin ids we agree to parse, in the order we try them.
_DECODE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# What Pillow raises for damaged input while parsing headers or pixels.
_PIL_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAGIC = (
    (_PNG_SIGNATURE, ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
)
_JPEG_QUALITY = 95
_WEBP_QUALITY = 90


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``; the report's ``input_sha256`` column."""
    return hashlib.sha256(data).hexdigest()


def sniff_extension(data: bytes) -> str:
    """The file extension (``".png"``...) that the magic bytes of ``data`` announce.

    Used where no file name tells the format (Parquet image columns). Returns
    ``""`` when the bytes match none of the formats we decode.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return ""


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """Decode untrusted bytes to an ``(H, W, 3)`` uint8 RGB array.

    Choices, so that every worker turns the same bytes into the same pixels:

    * Formats: PNG, JPEG (and MPO), WEBP, GIF, BMP, TIFF; anything else is a
      :class:`DecodeError`.
    * ``width * height`` as declared in the header is checked against
      ``limits.max_pixels`` before pixel data is decoded (decompression bombs),
      raising :class:`InputLimitError`. Headers are parsed without Pillow's
      global ``MAX_IMAGE_PIXELS`` guard; only Pillow's TIFF and GIF loaders
      re-apply it while loading (an error above ~179 M pixels by default), so
      a ``max_pixels`` above that cannot admit larger TIFF/GIF images.
    * Truncated PNG and JPEG files are detected from their structure (missing
      ``IEND`` chunk / end-of-image marker), so the outcome does not depend on
      Pillow's ``LOAD_TRUNCATED_IMAGES`` global; other formats rely on Pillow's
      own checks.
    * EXIF orientation is applied (the array is upright as a viewer shows it).
    * Animations and multi-page files: the first frame only.
    * Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is
      composited over white.
    * 16-bit grayscale is scaled to 8 bits (``round(v * 255 / 65535)``), 32-bit
      integer grayscale is clipped to 16 bits first, float grayscale is taken
      as [0, 1]; CMYK, palette, bilevel and grayscale become RGB by Pillow's
      conversion. ICC profiles are ignored (no colour management).
    """
    if not data:
        raise DecodeError("empty input: 0 bytes, expected an image file")
    _check_complete(data)
    image = _open_header(data)
    try:
        _check_pixel_limit(image.size, limits)
        _load(image)
        upright = _apply_orientation(image)
        return _to_rgb(upright)
    finally:
        image.close()


def encode_image(
    pixels: np.ndarray,
    fmt: str,
    text: dict[str, str] | None = None,
    png_level: int = PNG_LEVEL,
) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB array as PNG, JPEG or WEBP bytes.

    The same pixels and text always give the same bytes (fixed compression
    settings, no timestamps), which keeps re-runs byte-identical. ``text`` is
    stored as PNG text chunks (one per key); for JPEG and WEBP it is stored as
    one JSON object in the EXIF ``ImageDescription`` tag. See
    :func:`read_image_text` for the way back. ``png_level`` (0-9) trades
    encoding time for size; decoded pixels are the same at every level.
    """
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be in 0..9, got {png_level}")
    image = Image.fromarray(_checked_pixels(pixels))
    name = _normalise_format(fmt)
    buffer = io.BytesIO()
    if name == "png":
        image.save(
            buffer,
            "PNG",
            compress_level=png_level,
            optimize=False,
            pnginfo=_png_text(text),
        )
    elif name == "jpeg":
        image.save(
            buffer,
            "JPEG",
            quality=_JPEG_QUALITY,
            subsampling=0,
            optimize=False,
            progressive=False,
            exif=_exif_text(text),
        )
    else:
        image.save(buffer, "WEBP", quality=_WEBP_QUALITY, method=4, exif=_exif_text(text))
    return buffer.getvalue()


def read_image_text(data: bytes) -> dict[str, str]:
    """The ``text`` that :func:`encode_image` stored in ``data`` (``{}`` if none)."""
    with Image.open(io.BytesIO(data), formats=_DECODE_FORMATS) as image:
        if image.format == "PNG":
            return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}
        description = image.getexif().get(ExifBase.ImageDescription)
    if not description:
        return {}
    try:
        parsed = json.loads(description)
    except json.JSONDecodeError:
        return {"ImageDescription": str(description)}
    return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}


def _check_complete(data: bytes) -> None:
    """Raise DecodeError for PNG/JPEG bytes that were cut short."""
    if data.startswith(_PNG_SIGNATURE):
        _check_png_complete(data)
    elif data.startswith(b"\xff\xd8\xff"):
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.rfind(b"\xff\xd9") < last_scan:
            raise DecodeError(
                f"truncated JPEG: {len(data)} bytes with no end-of-image marker after the last scan"
            )


def _check_png_complete(data: bytes) -> None:
    """Walk the PNG chunk headers until IEND; every chunk must be whole."""
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise DecodeError(f"truncated PNG: file ends at byte {len(data)} before the IEND chunk")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        end = pos + 12 + length
        if end > len(data):
            raise DecodeError(
                f"truncated PNG: chunk {kind!r} at byte {pos} needs {length} bytes of data, "
                f"but the file ends at byte {len(data)}"
            )
        if kind == "IEND":
            return
        pos = end


def _open_header(data: bytes) -> ImageFile.ImageFile:
    """Parse only the header, trying our allowed formats in turn.

    Pillow's ``Image.open`` applies its global ``MAX_IMAGE_PIXELS`` guard here;
    calling the registered plugin factories ourselves keeps the limit ours.
    """
    Image.init()
    prefix = data[:16]
    failure = ""
    for fmt in _DECODE_FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        accepted = factory is not None and (accept is None or accept(prefix))
        if not accepted or isinstance(accepted, str):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except Image.DecompressionBombError as exc:
            raise InputLimitError(f"{fmt} image rejected as a decompression bomb: {exc}") from exc
        except _PIL_ERRORS as exc:
            failure = f"damaged {fmt} header: {exc}"
    if failure:
        raise DecodeError(failure)
    raise DecodeError(
        f"not a supported image ({', '.join(_DECODE_FORMATS)}): "
        f"{len(data)} bytes starting with {data[:16]!r}"
    )


def _check_pixel_limit(size: tuple[int, int], limits: Limits) -> None:
    """Reject empty or oversized images before their pixels are decoded."""
    width, height = size
    if width <= 0 or height <= 0:
        raise DecodeError(f"image declares an empty size {width}x{height}")
    working = working_pixels(height, width)
    if working > limits.max_pixels:
        padded = (
            ""
            if working == width * height
            else f" (each side counted as at least {MODEL_MIN_SIDE})"
        )
        raise InputLimitError(
            f"image is {width}x{height} = {working} pixels{padded}, "
            f"above the limit of {limits.max_pixels} pixels (max_pixels)"
        )


def _load(image: ImageFile.ImageFile) -> None:
    """Decode the pixels of the first frame, naming the format when that fails."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise InputLimitError(
            f"{image.format} frame rejected as a decompression bomb: {exc}"
        ) from exc
    except _PIL_ERRORS as exc:
        raise DecodeError(f"cannot decode {image.format} pixel data: {exc}") from exc


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation says; a broken EXIF block is ignored."""
    try:
        upright = ImageOps.exif_transpose(image)
    except _PIL_ERRORS as exc:
        logger.warning("ignoring unreadable EXIF orientation: %s", exc)
        return image
    return upright if upright is not None else image


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to (H, W, 3) uint8 RGB; see decode_image for the rules."""
    mode = image.mode
    if mode == "I" or mode.startswith("I;16"):
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return _gray_to_rgb(((wide * 255 + 32767) // 65535).astype(np.uint8))
    if mode == "F":
        unit = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
        return _gray_to_rgb(np.rint(unit * 255.0).astype(np.uint8))
    try:
        if mode in _ALPHA_MODES or "transparency" in image.info:
            return _over_white(np.asarray(image.convert("RGBA")))
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except ValueError as exc:
        raise DecodeError(f"unsupported colour mode {mode!r}: {exc}") from exc


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite straight-alpha RGBA over a white background, rounding to nearest."""
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))


def _checked_pixels(pixels: np.ndarray) -> np.ndarray:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise ValueError("pixels must be a numpy uint8 array")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"pixels must have shape (H, W, 3), got {pixels.shape}")
    return np.ascontiguousarray(pixels)


def _normalise_format(fmt: str) -> str:
    name = fmt.lower().lstrip(".")
    name = "jpeg" if name == "jpg" else name
    if name not in ENCODE_FORMATS:
        raise ValueError(f"output format must be one of {ENCODE_FORMATS}, got {fmt!r}")
    return name


def _png_text(text: dict[str, str] | None) -> PngImagePlugin.PngInfo | None:
    if not text:
        return None
    info = PngImagePlugin.PngInfo()
    for key in sorted(text):
        if not 1 <= len(key) <= 79:
            raise ValueError(f"PNG text keys must be 1 to 79 characters, got {key!r}")
        info.add_text(key, text[key])
    return info


def _exif_text(text: dict[str, str] | None) -> bytes:
    if not text:
        return b""
    exif = Image.Exif()
    exif[ExifBase.ImageDescription] = json.dumps(text, sort_keys=True, ensure_ascii=True)
    return exif.tobytes()
