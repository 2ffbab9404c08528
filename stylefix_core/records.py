"""Typed values that travel between stages.

Readers yield :class:`ShardMember` or :class:`ReadFailure`; the engine turns a
decoded image into an :class:`ImageOutcome`; the pipeline turns outcomes and
failures into report and error rows. No stage passes tuples with error strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ShardSpec:
    """One unit of input work: a tar or Parquet shard, or a group of plain files.

    ``name`` is stable for the same input (it names the output parts), ``urls``
    holds one URL for tar/Parquet shards and the member files for a file group,
    ``root`` is the input root that plain-file keys are relative to.
    """

    name: str
    kind: str  # "tar" | "parquet" | "files"
    urls: tuple[str, ...]
    root: str = ""


@dataclass(frozen=True)
class ShardMember:
    """One image's raw bytes as read from a shard, before decoding."""

    shard: str
    key: str
    source_uri: str
    data: bytes
    ext: str  # lower-case, with the dot: ".png"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadFailure:
    """A member, or a whole shard, that could not be read; becomes an error row."""

    shard: str
    key: str
    source_uri: str
    stage: str
    error_type: str
    message: str


@dataclass(frozen=True)
class ErrorRow:
    """One row of ``errors/part-*.parquet``."""

    run_id: str
    shard: str
    key: str
    source_uri: str
    stage: str
    error_type: str
    message: str


@dataclass(frozen=True)
class DecodedImage:
    """A member decoded to (H, W, 3) uint8 RGB pixels, with its original bytes.

    The bytes stay with the pixels so that qa mode can write an unflagged image
    back bit-identical and so that ``input_sha256`` names exactly what was read.
    """

    member: ShardMember
    pixels: Any  # numpy.ndarray (H, W, 3) uint8; Any keeps this module numpy-free
    input_sha256: str


@dataclass(frozen=True)
class RoutedImage:
    """A decoded image with the style chosen for it and the URL of that style's bundle.

    The bundle URL travels with the image so the model handler can batch
    images of several styles and load each style's models only where needed.
    """

    image: DecodedImage
    style: str
    bundle: str  # "" names the bundle shipped with the package
