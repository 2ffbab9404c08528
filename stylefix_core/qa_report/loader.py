"""The report's edge: everything it reads from, and writes to, storage.

A run's tables are read from ``report/part-*.parquet`` and
``errors/part-*.parquet`` under the output prefix (and ``run_manifest.json``
where present); images are read back through the job's own shard readers and
storage bridge, so ``gs://``, ``s3://`` and local outputs behave alike. Image
reads tolerate failure: a source that moved or a shard that broke since the
run costs one placeholder, not the report.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stylefix_core.config import Limits
from stylefix_core.io import storage
from stylefix_core.io.shards import PARQUET_SUFFIXES, TAR_SUFFIXES, read_shard
from stylefix_core.records import ReadFailure, ShardMember, ShardSpec
from stylefix_core.report import ERROR_SCHEMA, REPORT_SCHEMA

log = logging.getLogger(__name__)

MANIFEST_NAME = "run_manifest.json"
HTML_NAME = "report.html"
# The report columns the page uses; the hash and per-detector scores stay on disk.
REPORT_COLUMNS = (
    "run_id",
    "shard",
    "key",
    "source_uri",
    "width",
    "height",
    "mode",
    "style",
    "model_version",
    "anomaly_score",
    "threshold",
    "is_anomaly",
    "reasons",
    "corrected",
    "correction",
    "score_after_correction",
    "output_uri",
    "device",
)
# ``SHARD_URL#MEMBER``: the shard readers' source_uri for tar and Parquet members.
_MEMBER_URI = re.compile(
    "^(?P<shard>.*?(?:"
    + "|".join(re.escape(s) for s in TAR_SUFFIXES + PARQUET_SUFFIXES)
    + "))#(?P<member>.+)$",
    re.IGNORECASE,
)


class ReportInputError(FileNotFoundError):
    """The prefix holds no StyleFix output to report on."""


@dataclass(frozen=True)
class RunTables:
    """What one run left under its output prefix, as the report reads it."""

    output: str
    report: pa.Table
    errors: pa.Table
    manifest: dict[str, Any] | None


@dataclass(frozen=True)
class Fetched:
    """An image's bytes, or why they could not be read (``data`` None)."""

    data: bytes | None
    note: str = ""


def holds_run(output: str) -> bool:
    """Whether ``output`` holds a run's report or error parts."""
    return bool(_parts(storage.join(output, "report")) or _parts(storage.join(output, "errors")))


def load_run(output: str) -> RunTables:
    """Read a run's tables (and manifest, if any); raises ReportInputError if there are none."""
    report_parts = _parts(storage.join(output, "report"))
    error_parts = _parts(storage.join(output, "errors"))
    if not (report_parts or error_parts):
        raise ReportInputError(f"no report or error parts under {storage.redact(output)}")
    report_schema = pa.schema([REPORT_SCHEMA.field(name) for name in REPORT_COLUMNS])
    manifest = read_manifest(output) or {}
    report = _read_tables(report_parts, report_schema)
    errors = _read_tables(error_parts, ERROR_SCHEMA)
    kept = _of_run(report, manifest, "report"), _of_run(errors, manifest, "error")
    if not (kept[0].num_rows or kept[1].num_rows) and (report.num_rows or errors.num_rows):
        raise ReportInputError(
            f"the run manifest under {storage.redact(output)} names run {manifest['run_id']}, "
            "but no row there is of it: a later run to this prefix did not finish"
        )
    return RunTables(output=output, report=kept[0], errors=kept[1], manifest=manifest or None)


def _of_run(table: pa.Table, manifest: dict[str, Any], what: str) -> pa.Table:
    """The rows of the manifest's run and of the shards it planned, where
    there is a manifest.

    A prefix another job wrote to before holds that job's parts too, and a
    report over both would count images twice: by run id where the settings
    differed, by shard where the same settings met fewer shards (a folder of
    loose files that lost files is fewer groups).
    """
    if "run_id" not in manifest:
        return table
    keep = pc.equal(table["run_id"], manifest["run_id"])
    if "shards" in manifest:
        keep = pc.and_(keep, pc.is_in(table["shard"], pa.array(manifest["shards"], pa.string())))
    kept = table.filter(keep)
    if kept.num_rows < table.num_rows:
        log.warning(
            "report: left out %d %s row(s) of other runs, or of shards this run did not plan",
            table.num_rows - kept.num_rows,
            what,
        )
    return kept


def read_manifest(output: str) -> dict[str, Any] | None:
    """The run manifest, or None where the prefix has none (a report from tables alone)."""
    uri = storage.join(output, MANIFEST_NAME)
    if not storage.exists(uri):
        return None
    document = json.loads(storage.read_bytes(uri))
    return document if isinstance(document, dict) else None


def write_html(uri: str, html: str) -> None:
    """Write the page atomically: a reader sees the old report or the new one."""
    storage.write_bytes_atomic(uri, html.encode("utf-8"))


def _as_fetched(fetched: Fetched) -> Any:
    return fetched


def fetch_outputs(
    uris: Iterable[str], limits: Limits, convert: Callable[[Fetched], Any] = _as_fetched
) -> dict[str, Any]:
    """The written images, by URI, each passed through ``convert`` as soon as it is read."""
    return {uri: convert(_fetch_file(uri, limits)) for uri in dict.fromkeys(uris) if uri}


def fetch_sources(
    uris: Iterable[str],
    limits: Limits,
    key_column: str = "key",
    image_column: str = "image",
    convert: Callable[[Fetched], Any] = _as_fetched,
) -> dict[str, Any]:
    """The input images, by ``source_uri``; each tar or Parquet shard is read once.

    Each is passed through ``convert`` (a thumbnail maker) as soon as it is
    read, so that at most one image's bytes are held at a time, not every
    worst image's at the limit of ``max_file_bytes`` each.
    """
    by_shard: dict[str, set[str]] = {}
    fetched: dict[str, Any] = {}
    for uri in dict.fromkeys(uris):
        if uri and storage.redact(uri) == uri and "***" in uri:
            # the row holds a redacted URL: its credentials were never stored,
            # so asking the server again could only be refused
            note = "source behind credentials that the report does not keep"
            fetched[uri] = convert(Fetched(None, note))
            continue
        match = _MEMBER_URI.match(uri) if uri else None
        if match:
            by_shard.setdefault(match["shard"], set()).add(uri)
        elif uri:
            fetched[uri] = convert(_fetch_file(uri, limits))
    for shard_url, wanted in by_shard.items():
        members = _fetch_members(shard_url, wanted, limits, key_column, image_column, convert)
        fetched.update(members)
    return fetched


def _parts(folder: str) -> list[str]:
    names = storage.list_files(folder)
    return [
        url
        for url in names
        if url.endswith(".parquet") and not url.rsplit("/", 1)[-1].startswith(".tmp-")
    ]


def _read_tables(parts: list[str], schema: pa.Schema) -> pa.Table:
    """One table over every part, with only ``schema``'s columns, typed as the job writes them."""
    tables = [
        pq.read_table(io.BytesIO(storage.read_bytes(url)), columns=schema.names).cast(schema)
        for url in parts
    ]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _fetch_file(uri: str, limits: Limits) -> Fetched:
    try:
        return Fetched(storage.read_bytes(uri, max_bytes=limits.max_file_bytes))
    except Exception as exc:  # noqa: BLE001 - a missing image is a placeholder, not a failure
        log.warning("report: cannot read %s: %s", storage.redact(uri), exc)
        return Fetched(None, f"cannot read: {type(exc).__name__}: {storage.redact(str(exc))}")


def _fetch_members(
    shard_url: str,
    wanted: set[str],
    limits: Limits,
    key_column: str,
    image_column: str,
    convert: Callable[[Fetched], Any],
) -> dict[str, Any]:
    """Stream one shard through the job's reader until every wanted member is found."""
    kind = "tar" if shard_url.lower().endswith(TAR_SUFFIXES) else "parquet"
    spec = ShardSpec(name="report", kind=kind, urls=(shard_url,))
    found: dict[str, Any] = {}
    why = "not found in the shard"
    items = read_shard(spec, limits=limits, key_column=key_column, image_column=image_column)
    try:
        with closing(items):  # stopping early closes the shard at once
            for item in items:
                if item.source_uri in wanted:
                    found[item.source_uri] = convert(_from_item(item))
                elif isinstance(item, ReadFailure) and item.source_uri == shard_url:
                    why = f"shard unreadable: {item.message}"
                if len(found) == len(wanted):
                    break
    except Exception as exc:  # noqa: BLE001 - a shard that broke since the run
        why = f"shard unreadable: {type(exc).__name__}: {storage.redact(str(exc))}"
    for uri in wanted - found.keys():
        log.warning("report: cannot read %s: %s", storage.redact(uri), why)
        found[uri] = convert(Fetched(None, why))
    return found


def _from_item(item: ShardMember | ReadFailure) -> Fetched:
    if isinstance(item, ShardMember):
        return Fetched(item.data)
    return Fetched(None, f"cannot read: {item.error_type}: {item.message}")
