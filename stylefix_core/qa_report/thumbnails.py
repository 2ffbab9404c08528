"""Small inline images for the report: bytes in, a ``data:`` URI out.

The page has to open from a mail attachment or an object-store console with
no network, so thumbnails travel inside the HTML. They are decoded with the
job's own guarded decoder (the bytes are as untrusted as the job's input) and
re-encoded as WebP, which keeps a sheet of a few dozen images small.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

from stylefix_core.config import Limits
from stylefix_core.errors import StyleFixError
from stylefix_core.imaging import decode_image

THUMBNAIL_EDGE = 192
_WEBP_QUALITY = 82


@dataclass(frozen=True)
class Thumbnail:
    """An inline image, or the reason there is none (``data_uri`` empty)."""

    data_uri: str
    note: str = ""
    width: int = 0
    height: int = 0


def missing(note: str) -> Thumbnail:
    """A placeholder saying why an image could not be shown."""
    return Thumbnail(data_uri="", note=note)


def make_thumbnail(data: bytes, limits: Limits, edge: int = THUMBNAIL_EDGE) -> Thumbnail:
    """Decode ``data``, shrink it to fit ``edge`` x ``edge``, inline it.

    Undecodable bytes give a placeholder naming the error, never an exception:
    one broken image must not cost the whole report.
    """
    try:
        pixels = decode_image(data, limits)
    except (StyleFixError, ValueError, OSError) as exc:
        return missing(f"cannot decode: {type(exc).__name__}: {exc}")
    image = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    image.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    mime, encoded = _encode(image)
    uri = f"data:{mime};base64,{base64.b64encode(encoded).decode('ascii')}"
    return Thumbnail(data_uri=uri, width=image.width, height=image.height)


def _encode(image: Image.Image) -> tuple[str, bytes]:
    """WebP where this Pillow has it, PNG otherwise; both render in every browser."""
    sink = io.BytesIO()
    if features.check("webp"):
        image.save(sink, format="WEBP", quality=_WEBP_QUALITY, method=4)
        return "image/webp", sink.getvalue()
    image.save(sink, format="PNG", optimize=True)
    return "image/png", sink.getvalue()
