"""From a shard member's bytes to the engine's input, for every runner alike.

The Beam job and the tests both call :func:`decode_member`, so what happens to
an untrusted member (refused key, bad bytes, too many pixels) is decided in one
place, and always as a :class:`StyleFixError` that names its stage: a member
never fails in a way that would stop the job instead of becoming an error row.
"""

from __future__ import annotations

import logging

from stylefix_core.config import Limits
from stylefix_core.errors import DecodeError, StyleFixError
from stylefix_core.imaging import decode_image, sha256_hex
from stylefix_core.io.outputs import safe_key
from stylefix_core.records import DecodedImage, ShardMember

log = logging.getLogger(__name__)


def decode_member(member: ShardMember, limits: Limits) -> DecodedImage:
    """Check the key can name an output, then decode the bytes to RGB pixels.

    Raises :class:`UnsafeMemberError` (stage ``read``) for a key that would
    write outside the output prefix, :class:`InputLimitError` or
    :class:`DecodeError` (stage ``decode``) for bytes that are not an
    acceptable image. Anything else the decoder raises is a decoder surprise
    on hostile bytes, reported as a DecodeError naming it.
    """
    safe_key(member.key)
    try:
        pixels = decode_image(member.data, limits)
    except StyleFixError:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown decoder failures are still one row
        log.warning("unexpected %s while decoding %s", type(exc).__name__, member.key)
        raise DecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    return DecodedImage(member=member, pixels=pixels, input_sha256=sha256_hex(member.data))
