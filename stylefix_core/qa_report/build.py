"""Build ``report.html`` for a run's output prefix, optionally against a previous run.

The job calls :func:`build_report` after it writes the run manifest, and
``stylefix report`` calls it again later: both read only what the run left in
storage (the Parquet tables, the images, the manifest where there is one), so
a report can be rebuilt, or compared, at any time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stylefix_core.config import Limits
from stylefix_core.io import storage
from stylefix_core.qa_report.compare import AlertLimits, Breach, check_limits, compare_runs
from stylefix_core.qa_report.loader import (
    HTML_NAME,
    Fetched,
    RunTables,
    fetch_outputs,
    fetch_sources,
    load_run,
    write_html,
)
from stylefix_core.qa_report.render import (
    MAX_TABLE_ROWS,
    ReportPage,
    RunInfo,
    WorstImage,
    render_html,
)
from stylefix_core.qa_report.stats import score_histogram
from stylefix_core.qa_report.summary import (
    anomaly_scores,
    count_outcomes,
    reason_counts,
    run_threshold,
    worst_rows,
)
from stylefix_core.qa_report.thumbnails import Thumbnail, make_thumbnail, missing

log = logging.getLogger(__name__)

DEFAULT_TOP = 12


@dataclass(frozen=True)
class ReportResult:
    """Where the page went and what it found."""

    uri: str
    page: ReportPage

    @property
    def breaches(self) -> list[Breach]:
        return self.page.breaches


def build_report(
    output: str,
    *,
    previous: str | None = None,
    limits: AlertLimits | None = None,
    top: int = DEFAULT_TOP,
    html_uri: str | None = None,
) -> ReportResult:
    """Read the run at ``output`` (and ``previous``), write the page, return the verdict.

    The page goes to ``html_uri``, by default ``OUTPUT/report.html``.
    """
    current = load_run(output)
    earlier = load_run(previous) if previous else None
    worst = worst_images(worst_rows(current.report, top), current.manifest)
    page = assemble_page(current, earlier, worst, limits or AlertLimits())
    uri = html_uri or storage.join(output, HTML_NAME)
    write_html(uri, render_html(page))
    log.info("wrote QA report %s", storage.redact(uri))
    return ReportResult(uri=uri, page=page)


def worst_images(rows: list[dict[str, Any]], manifest: dict[str, Any] | None) -> list[WorstImage]:
    """Before (the input, read back from its source) and after (the written image) per row."""
    limits = _limits(manifest)
    options = (manifest or {}).get("options", {})

    def thumbnail(fetched: Fetched | None) -> Thumbnail:
        return _thumbnail(fetched, limits)

    sources = fetch_sources(
        [row["source_uri"] for row in rows],
        limits,
        key_column=options.get("parquet_key_column", "key"),
        image_column=options.get("parquet_image_column", "image"),
        convert=thumbnail,
    )
    written = fetch_outputs([row["output_uri"] for row in rows], limits, convert=thumbnail)
    return [
        WorstImage(
            row=row,
            before=sources.get(row["source_uri"]) or thumbnail(None),
            after=written.get(row["output_uri"]) or thumbnail(None),
        )
        for row in rows
    ]


def assemble_page(
    current: RunTables, previous: RunTables | None, worst: list[WorstImage], limits: AlertLimits
) -> ReportPage:
    """Everything the page shows, from the tables alone (pure)."""
    counts = count_outcomes(current.report, current.errors)
    threshold = run_threshold(current.report)
    comparison = None
    if previous is not None:
        comparison = compare_runs(current.report, current.errors, previous.report, previous.errors)
    return ReportPage(
        info=run_info(current),
        counts=counts,
        threshold=threshold,
        histogram=score_histogram(anomaly_scores(current.report), threshold),
        reasons=reason_counts(current.report),
        worst=worst,
        errors=first_errors(current.errors, MAX_TABLE_ROWS),
        comparison=comparison,
        breaches=check_limits(counts, comparison, limits),
        limits_checked=any(getattr(limits, f.name) is not None for f in fields(limits)),
    )


def run_info(run: RunTables) -> RunInfo:
    """The run's identity from its rows, completed from the manifest where there is one."""
    manifest = run.manifest or {}
    options = manifest.get("options", {})
    bundle = manifest.get("bundle", {})
    first = run.report.slice(0, 1).to_pylist()
    row = first[0] if first else {}
    run_ids = sorted(
        {str(r) for r in run.report.column("run_id").unique().to_pylist()}
        | {str(r) for r in run.errors.column("run_id").unique().to_pylist()}
    )
    return RunInfo(
        run_id=manifest.get("run_id") or ", ".join(run_ids) or "-",
        output=storage.redact(run.output),
        mode=row.get("mode") or options.get("mode") or "-",
        style=_distinct(run.report, "style") or bundle.get("style") or "-",
        model_version=_distinct(run.report, "model_version") or bundle.get("version") or "-",
        input=storage.redact(str(options.get("input", "-"))),
        runner=str(manifest.get("runner", "-")),
        devices=tuple(
            sorted(str(d) for d in run.report.column("device").unique().to_pylist() if d)
        ),
        target_false_positive_rate=bundle.get("target_false_positive_rate"),
    )


def _distinct(report: pa.Table, column: str) -> str:
    """Every value of a per-image column, sorted and joined: a job may serve several styles."""
    return ", ".join(sorted(str(v) for v in report.column(column).unique().to_pylist() if v))


def first_errors(errors: pa.Table, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` error rows by stage, shard and key."""
    if errors.num_rows == 0:
        return []
    order = pc.sort_indices(
        errors, sort_keys=[("stage", "ascending"), ("shard", "ascending"), ("key", "ascending")]
    )
    return errors.take(order.slice(0, limit)).to_pylist()


def _thumbnail(fetched: Fetched | None, limits: Limits) -> Thumbnail:
    if fetched is None:
        return missing("no image recorded")
    if fetched.data is None:
        return missing(fetched.note)
    return make_thumbnail(fetched.data, limits)


def _limits(manifest: dict[str, Any] | None) -> Limits:
    """The run's own input limits where the manifest records them, else the defaults."""
    recorded = ((manifest or {}).get("options") or {}).get("limits") or {}
    known = {f.name for f in fields(Limits)}
    return Limits(**{k: int(v) for k, v in recorded.items() if k in known})
