"""Exceptions raised by core code; the pipeline turns each into one error row.

Each class carries the pipeline ``stage`` it belongs to so that an error row can
name where an input failed without the caller keeping a lookup table.
"""

from __future__ import annotations


class StyleFixError(Exception):
    """Base of every error StyleFix raises on purpose."""

    stage = "unknown"


class ShardReadError(StyleFixError):
    """A shard (or one of its members) could not be listed or read."""

    stage = "read"


class UnsafeMemberError(ShardReadError):
    """A member name would escape the output prefix or is not a regular file."""


class InputLimitError(StyleFixError):
    """An input exceeds a configured safety limit (bytes, pixels)."""

    stage = "decode"


class DecodeError(StyleFixError):
    """Bytes that do not decode to a usable image."""

    stage = "decode"


class BundleError(StyleFixError):
    """A model bundle that is missing, malformed or does not match its manifest."""

    stage = "bundle"


class InferenceError(StyleFixError):
    """A model call failed for one image even after retrying it alone."""

    stage = "inference"


class DeviceUnavailableError(StyleFixError):
    """The configured device (for example CUDA) is not present on this worker."""

    stage = "inference"


class OutputWriteError(StyleFixError):
    """An output could not be written after retries."""

    stage = "write"
