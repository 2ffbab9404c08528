"""The report and error tables: their Arrow schemas and how rows are made.

The schemas are explicit so every part file has the same column types whatever
its rows hold (an all-null column would otherwise be typed ``null``), which is
what lets analysts read ``report/*.parquet`` as one table. URLs in rows are
redacted (no ``user:password@`` or tokens), since reports are shared widely.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pyarrow as pa

from stylefix_core.engine import ImageResult
from stylefix_core.io.storage import redact
from stylefix_core.records import DecodedImage, ErrorRow
from stylefix_core.scoring.run_collapse import average_hash
from stylefix_core.scoring.scorer import DETECTORS

REPORT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("shard", pa.string()),
        ("key", pa.string()),
        ("source_uri", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("style", pa.string()),
        ("model_version", pa.string()),
        ("anomaly_score", pa.float64()),
        ("threshold", pa.float64()),
        ("is_anomaly", pa.bool_()),
        *[(f"score_{d}", pa.float64()) for d in DETECTORS],
        ("reasons", pa.list_(pa.string())),
        ("run_collapse", pa.bool_()),
        ("corrected", pa.bool_()),
        ("correction", pa.string()),
        ("score_after_correction", pa.float64()),
        ("output_uri", pa.string()),
        ("input_sha256", pa.string()),
        ("input_hash", pa.string()),
        ("styled_hash", pa.string()),
        ("device", pa.string()),
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("shard", pa.string()),
        ("key", pa.string()),
        ("source_uri", pa.string()),
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
    ]
)


def report_row(
    run_id: str,
    mode: str,
    style: str,
    model_version: str,
    image: DecodedImage,
    result: ImageResult,
    output_uri: str,
) -> dict[str, Any]:
    """One report row; keys and types follow REPORT_SCHEMA.

    ``run_collapse`` starts False; the run-level collapse check may set it
    (and ``is_anomaly``) once every output of the job has been seen.
    """
    height, width = image.pixels.shape[:2]
    member = image.member
    return _encodable(
        {
            "run_id": run_id,
            "shard": member.shard,
            "key": member.key,
            "source_uri": redact(member.source_uri),
            "width": int(width),
            "height": int(height),
            "mode": mode,
            "style": style,
            "model_version": model_version,
            "anomaly_score": result.anomaly_score,
            "threshold": result.threshold,
            "is_anomaly": result.is_anomaly,
            **{f"score_{d}": result.scores[d] for d in DETECTORS},
            "reasons": list(result.reasons),
            "run_collapse": False,
            "corrected": result.corrected,
            "correction": result.correction,
            "score_after_correction": result.score_after_correction,
            "output_uri": redact(output_uri),
            "input_sha256": image.input_sha256,
            "input_hash": average_hash(image.pixels),
            "styled_hash": result.styled_hash,
            "device": result.device,
        }
    )


def error_row(row: ErrorRow) -> dict[str, Any]:
    """One error row; URLs and messages with credentials in them are redacted."""
    data = asdict(row)
    for column in ("source_uri", "message"):
        data[column] = redact(data[column])
    return _encodable(data)


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows sorted by key, so a part file's bytes do not depend on arrival order."""
    ordered = sorted(rows, key=lambda r: (r["key"], r.get("stage", "")))
    return pa.Table.from_pylist(ordered, schema=schema)


def _encodable(row: dict[str, Any]) -> dict[str, Any]:
    """The row with text that cannot be UTF-8 written with backslash escapes.

    A lone surrogate (a local file name of Latin-1 bytes, a ``\\ud800``
    escape in an input's JSON metadata) cannot cross a runner's shuffle nor
    go into Parquet: one such value would fail its whole shard.
    """
    return {column: _encodable_text(value) for column, value in row.items()}


def _encodable_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable_text(v) for v in value]
    return value
