"""Where each output lives and how it is written.

Every path is a pure function of the output prefix, the shard name and the
key, so a retried bundle or a re-run overwrites instead of duplicating. All
writes go through ``storage.write_bytes_atomic``: nothing appears half-written
under its final name. The shard's completion marker is written last.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from stylefix_core.errors import UnsafeMemberError
from stylefix_core.io import storage

FORMAT_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@dataclass(frozen=True)
class ShardCounts:
    """What one shard produced; the marker file holds exactly this.

    ``run_id`` and ``inputs`` (``inputs_digest`` of the shard's input URLs)
    say which job and which files the counts are for, so that ``--resume``
    trusts a marker only for the same settings and the same files: loose
    files are grouped by position in the listing, and one file added moves
    every later group's members.
    """

    shard: str
    report_rows: int
    error_rows: int
    flagged: int
    corrected: int
    devices: list[str] = field(default_factory=list)
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    run_id: str = ""
    inputs: str = ""

    def completes(self, run_id: str, urls: Sequence[str]) -> bool:
        """Whether this marker records the job ``run_id`` over exactly ``urls``."""
        return self.run_id == run_id and self.inputs == inputs_digest(urls)


def inputs_digest(urls: Sequence[str]) -> str:
    """A short digest of a shard's input URLs, in order."""
    return hashlib.sha256("\n".join(urls).encode("utf-8", "backslashreplace")).hexdigest()[:16]


def safe_key(key: str) -> str:
    """Refuse keys that would write outside the output prefix.

    Keys come from untrusted shards (tar member names, Parquet cells), so
    ``..``, absolute paths, backslashes and control characters are refused.
    """
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(p in ("", ".", "..") for p in parts)
        or any(ord(ch) < 32 for ch in key)
        or len(key) > 512
    ):
        raise UnsafeMemberError(
            f"key {key!r} is not a safe relative name for an output file "
            "(absolute, '..' or empty parts, backslash, control characters, over 512 characters)"
        )
    return key


def image_uri(output: str, shard: str, key: str, extension: str) -> str:
    return storage.join(output, "images", shard, safe_key(key) + extension)


def report_part_uri(output: str, shard: str) -> str:
    return storage.join(output, "report", f"part-{shard}.parquet")


def error_part_uri(output: str, shard: str) -> str:
    return storage.join(output, "errors", f"part-{shard}.parquet")


def marker_uri(output: str, shard: str) -> str:
    return storage.join(output, "_markers", f"{shard}.json")


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def write_shard_outputs(
    output: str, report: pa.Table, errors: pa.Table, counts: ShardCounts
) -> None:
    """Both parts, then the marker: a marker means the shard is complete."""
    storage.write_bytes_atomic(report_part_uri(output, counts.shard), parquet_bytes(report))
    storage.write_bytes_atomic(error_part_uri(output, counts.shard), parquet_bytes(errors))
    storage.write_bytes_atomic(
        marker_uri(output, counts.shard), json.dumps(asdict(counts), sort_keys=True).encode()
    )


def remove_temporaries(output: str) -> int:
    """Delete what writers killed mid-write left under ``output``; returns how many.

    A worker that dies between uploading a temporary and moving it into place
    leaves a ``.tmp-*`` file behind. Nothing reads them, but a resumed run
    removes them so its outputs are exactly those of an uninterrupted run.
    Only for a prefix no other job is writing to at the same time.
    """
    stale = [url for url in storage.list_files(output) if storage.is_temporary(url)]
    for url in stale:
        storage.remove(url)
    return len(stale)


def read_marker(output: str, shard: str) -> ShardCounts | None:
    """The shard's completion record, or None where the shard is not complete."""
    uri = marker_uri(output, shard)
    if not storage.exists(uri):
        return None
    return ShardCounts(**json.loads(storage.read_bytes(uri)))


def extension_of(uri: str) -> str:
    return posixpath.splitext(uri)[1].lower()
