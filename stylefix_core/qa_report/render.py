"""The QA report page: a :class:`ReportPage` in, one self-contained HTML string out.

Pure: no I/O, no clock, no randomness, so the same tables always give the
same bytes (a re-run of the job rewrites an identical ``report.html``). Every
string from the data is escaped; images arrive as ``data:`` URIs and charts
as inline SVG, so the page needs no network. The only script is an image's
``onerror``, which swaps a thumbnail the browser cannot show for a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from stylefix_core.qa_report.compare import Breach, Comparison, KeyChange
from stylefix_core.qa_report.stats import Histogram
from stylefix_core.qa_report.summary import Counts
from stylefix_core.qa_report.svg import bars_svg, ecdf_svg, fmt, histogram_svg
from stylefix_core.qa_report.thumbnails import Thumbnail

MAX_TABLE_ROWS = 100
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class RunInfo:
    """Who and what the run was, from the rows and (where present) the manifest."""

    run_id: str
    output: str
    mode: str = "-"
    style: str = "-"
    model_version: str = "-"
    input: str = "-"
    runner: str = "-"
    devices: tuple[str, ...] = ()
    target_false_positive_rate: float | None = None


@dataclass(frozen=True)
class WorstImage:
    """One card of the before/after sheet."""

    row: dict[str, Any]
    before: Thumbnail
    after: Thumbnail


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows, computed beforehand."""

    info: RunInfo
    counts: Counts
    threshold: float | None
    histogram: Histogram
    reasons: dict[str, int]
    worst: list[WorstImage]
    errors: list[dict[str, Any]]
    comparison: Comparison | None = None
    breaches: list[Breach] = field(default_factory=list)
    limits_checked: bool = False


def render_html(page: ReportPage) -> str:
    """The whole page."""
    sections = [
        _counts_section(page.counts),
        _scores_section(page),
        _reasons_section(page.reasons, page.counts),
        _worst_section(page.worst),
        _errors_section(page.errors, page.counts.errors),
    ]
    if page.comparison is not None:
        sections.append(_comparison_section(page.comparison, page.counts, page.threshold))
    sections.append(_run_section(page.info, page.threshold))
    title = f"StyleFix QA report: {page.info.run_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"{_header(page)}<main>{''.join(sections)}</main>"
        "<footer>Tables: <code>report/part-*.parquet</code> (one row per image) and "
        "<code>errors/part-*.parquet</code> (one row per input that failed) under the "
        "output prefix.</footer></body></html>\n"
    )


def _header(page: ReportPage) -> str:
    info = page.info
    facts = [info.style, info.mode + " mode", "model " + info.model_version, info.run_id]
    return (
        f"<header><h1>StyleFix QA report</h1>"
        f'<p class="sub">{" · ".join(escape(f) for f in facts)}</p>'
        f"{_verdict(page)}</header>"
    )


def _verdict(page: ReportPage) -> str:
    if page.breaches:
        items = "".join(f"<li>{escape(b.describe())}</li>" for b in page.breaches)
        return (
            '<div class="banner alert" id="verdict"><strong>Limits crossed</strong>'
            f"<ul>{items}</ul></div>"
        )
    if page.limits_checked:
        return '<div class="banner ok" id="verdict"><strong>Within limits</strong></div>'
    return ""


def _counts_section(counts: Counts) -> str:
    cards = [
        ("inputs", counts.inputs, "report rows + error rows"),
        ("read", counts.read, "inputs the readers could read"),
        ("styled", counts.styled, "styled by the generator"),
        ("scored", counts.scored, "images with a report row"),
        ("flagged", counts.flagged, f"{_pct(counts.flagged_share)} of scored"),
        ("corrected", counts.corrected, "correction lowered the score"),
        ("errors", counts.errors, f"{_pct(counts.error_share)} of inputs"),
    ]
    html = "".join(
        f'<div class="card" id="count-{name}"><div class="value">{value}</div>'
        f'<div class="name">{name}</div><div class="note">{escape(note)}</div></div>'
        for name, value, note in cards
    )
    stages = ", ".join(f"{escape(s)}: {n}" for s, n in counts.errors_by_stage.items()) or "none"
    return (
        f'<section id="counts"><h2>Counts</h2><div class="cards">{html}</div>'
        f'<p class="caption">Errors by stage: {stages}</p></section>'
    )


def _scores_section(page: ReportPage) -> str:
    if page.counts.scored == 0:
        return _section("scores", "Anomaly scores", _empty("No image was scored."))
    threshold = page.threshold
    caption = f"{page.counts.scored} images; higher is worse."
    if threshold is not None:
        caption += (
            f" Scores above the threshold {fmt(threshold)} are flagged: "
            f"{page.counts.flagged} ({_pct(page.counts.flagged_share)})."
        )
    if page.histogram.overflow:
        caption += f" The last bar holds {page.histogram.overflow} score(s) far above the rest."
    chart = histogram_svg(page.histogram, threshold, "histogram of anomaly scores")
    return _section("scores", "Anomaly scores", f'{chart}<p class="caption">{escape(caption)}</p>')


def _reasons_section(reasons: dict[str, int], counts: Counts) -> str:
    if not reasons:
        return _section("reasons", "Reasons", _empty("No image was flagged."))
    chart = bars_svg(list(reasons.items()), "flagged images per reason")
    rows = [
        [escape(reason), str(n), _pct(n / counts.flagged if counts.flagged else 0.0)]
        for reason, n in reasons.items()
    ]
    table = _table(["reason", "images", "share of flagged"], rows, "reasons-table", numeric=(1, 2))
    note = "An image flagged for several reasons counts once for each."
    return _section("reasons", "Reasons", f'{chart}{table}<p class="caption">{note}</p>')


def _worst_section(worst: Sequence[WorstImage]) -> str:
    if not worst:
        return ""
    cards = "".join(_worst_card(item) for item in worst)
    return (
        f'<section id="worst"><h2>Worst {len(worst)} images</h2>'
        '<p class="caption">Highest anomaly scores first: the input as read (before) '
        f'and the image written (after).</p><div class="sheet">{cards}</div></section>'
    )


def _worst_card(item: WorstImage) -> str:
    row = item.row
    score = f"score {fmt(row['anomaly_score'])}"
    if row.get("corrected"):
        how = row.get("correction") or "correction"
        score += f" → {fmt(row['score_after_correction'])} after {how}"
    status = (
        '<span class="flag">flagged</span>'
        if row.get("is_anomaly")
        else '<span class="pass">passed</span>'
    )
    reasons = "".join(f'<span class="chip">{escape(r)}</span>' for r in row.get("reasons") or ())
    return (
        '<figure class="pair">'
        f'<div class="images">{_thumb(item.before, "before", row["key"])}'
        f"{_thumb(item.after, 'after', row['key'])}</div>"
        f'<figcaption><div class="key" title="{escape(row["shard"])}">{escape(row["key"])}</div>'
        f'<div>{status} {escape(score)}</div><div class="chips">{reasons}</div>'
        f'<div class="shard">{escape(row["shard"])} · {row["width"]}×{row["height"]}</div>'
        "</figcaption></figure>"
    )


def _thumb(thumb: Thumbnail, which: str, key: str) -> str:
    if not thumb.data_uri:
        return (
            f'<div class="thumb missing"><span class="label">{which}</span>'
            f'<span class="why">{escape(_clip(thumb.note))}</span></div>'
        )
    return (
        f'<div class="thumb"><span class="label">{which}</span>'
        f'<img src="{thumb.data_uri}" width="{thumb.width}" height="{thumb.height}" '
        f'alt="{which}: {escape(key)}" onerror="this.parentNode.classList.add(\'broken\')"></div>'
    )


def _errors_section(errors: Sequence[dict[str, Any]], total: int) -> str:
    if not total:
        return _section("errors", "Errors", _empty("No errors: every input has a report row."))
    rows = [
        [
            escape(e["stage"]),
            escape(e["error_type"]),
            escape(e["shard"]),
            escape(e["key"]),
            f'<span title="{escape(e["message"])}">{escape(_clip(e["message"]))}</span>',
        ]
        for e in errors[:MAX_TABLE_ROWS]
    ]
    table = _table(["stage", "error", "shard", "key", "message"], rows, "errors-table")
    more = _more(total, len(rows), "errors/")
    return _section("errors", f"Errors ({total})", table + more)


def _comparison_section(comparison: Comparison, counts: Counts, threshold: float | None) -> str:
    parts = [
        '<section id="comparison"><h2>Compared with the previous run</h2>',
        f'<p class="caption">Previous run: {escape(comparison.previous_run_id)}. '
        "Images are matched by shard and key.</p>",
        _share_table(comparison.previous_counts, counts),
        _drift_block(comparison, threshold),
        "<h3>Flagged per reason</h3>",
        _reason_change_table(comparison),
        f"<h3>New anomalies ({len(comparison.new_anomalies)})</h3>",
        _changes_table(comparison.new_anomalies, "new-table", "not in the previous run", True),
        f"<h3>Resolved anomalies ({len(comparison.resolved_anomalies)})</h3>",
        _changes_table(comparison.resolved_anomalies, "resolved-table", "not in this run", False),
        "</section>",
    ]
    return "".join(parts)


def _share_table(previous: Counts, current: Counts) -> str:
    def line(name: str, before: float, now: float, as_share: bool) -> list[str]:
        show = _pct if as_share else (lambda v: str(int(v)))
        delta = now - before
        sign = "+" if delta > 0 else ""
        change = f"{sign}{delta * 100:.1f} pt" if as_share else f"{sign}{int(delta)}"
        return [name, show(before), show(now), change]

    rows = [
        line("inputs", previous.inputs, current.inputs, False),
        line("scored", previous.scored, current.scored, False),
        line("flagged", previous.flagged, current.flagged, False),
        line("flagged share", previous.flagged_share, current.flagged_share, True),
        line("errors", previous.errors, current.errors, False),
        line("error share", previous.error_share, current.error_share, True),
    ]
    return _table(["", "previous", "this run", "change"], rows, "shares-table", numeric=(1, 2, 3))


def _drift_block(comparison: Comparison, threshold: float | None) -> str:
    drift = comparison.drift
    if drift is None:
        return '<h3>Score drift</h3><p class="empty">Not tested: a run without scores.</p>'
    verdict = (
        f"Kolmogorov-Smirnov statistic D = {drift.statistic:.4f}, p = {drift.pvalue:.3g} "
        f"({drift.method}, {drift.m} previous and {drift.n} current scores). "
        "D is the largest gap between the two cumulative distributions; "
        "a small p says the scores no longer look like the previous run's."
    )
    chart = ecdf_svg(comparison.previous_scores, comparison.current_scores, drift, threshold)
    return f'<h3>Score drift</h3><p id="drift">{escape(verdict)}</p>{chart}'


def _reason_change_table(comparison: Comparison) -> str:
    if not comparison.reasons:
        return '<p class="empty">Neither run flagged anything.</p>'
    rows = [
        [
            escape(c.reason),
            str(c.previous),
            str(c.current),
            f"{'+' if c.delta > 0 else ''}{c.delta}",
        ]
        for c in comparison.reasons
    ]
    return _table(
        ["reason", "previous", "this run", "change"], rows, "reason-change-table", numeric=(1, 2, 3)
    )


def _changes_table(changes: Sequence[KeyChange], css_id: str, absent: str, new: bool) -> str:
    if not changes:
        return '<p class="empty">None.</p>'

    def score(value: float | None) -> str:
        return absent if value is None else fmt(value)

    rows = [
        [
            escape(c.key),
            escape(c.shard),
            score(c.previous_score),
            score(c.current_score),
            escape(", ".join(c.reasons)),
        ]
        for c in changes[:MAX_TABLE_ROWS]
    ]
    reasons = "reasons" if new else "previous reasons"
    table = _table(
        ["key", "shard", "previous score", "score", reasons], rows, css_id, numeric=(2, 3)
    )
    return table + _more(len(changes), len(rows), "the report tables")


def _run_section(info: RunInfo, threshold: float | None) -> str:
    items = [
        ("run id", info.run_id),
        ("input", info.input),
        ("output", info.output),
        ("mode", info.mode),
        ("style", info.style),
        ("model version", info.model_version),
        ("threshold", "-" if threshold is None else fmt(threshold)),
        (
            "target false-positive rate",
            "-"
            if info.target_false_positive_rate is None
            else _pct(info.target_false_positive_rate),
        ),
        ("runner", info.runner),
        ("devices", ", ".join(info.devices) or "-"),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in items)
    return f'<section id="run"><h2>Run</h2><dl>{rows}</dl></section>'


def _section(css_id: str, title: str, body: str) -> str:
    """A titled section; ``body`` is markup built here."""
    return f'<section id="{css_id}"><h2>{escape(title)}</h2>{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], css_id: str, numeric: Sequence[int] = ()
) -> str:
    """Cells arrive escaped (or as trusted markup built here)."""
    head = "".join(
        f'<th class="{"num" if i in numeric else ""}">{escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if i in numeric else ""}">{c}</td>' for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _more(total: int, shown: int, where: str) -> str:
    if total <= shown:
        return ""
    return f'<p class="caption">{total - shown} more in {escape(where)}.</p>'


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


_CSS = """
:root{--ink:#1d2433;--muted:#5d6577;--line:#e3e6ec;--bg:#f6f7f9;--card:#fff;
--bar:#4c78a8;--over:#e45756;--ok:#2e7d4f;--warn:#b3261e}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1d2433;color:#fff;padding:22px 32px}
header h1{margin:0;font-size:24px;font-weight:600}
header .sub{margin:4px 0 0;color:#c5cad6}
main{max-width:1200px;margin:0 auto;padding:8px 24px 24px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:18px 0}
h2{margin:0 0 12px;font-size:19px}h3{margin:18px 0 8px;font-size:16px}
.banner{margin-top:14px;padding:10px 14px;border-radius:8px;font-size:15px}
.banner ul{margin:6px 0 0;padding-left:20px}
.banner.alert{background:#fde7e6;color:var(--warn)}.banner.ok{background:#e3f4ea;color:var(--ok)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card .value{font-size:28px;font-weight:600}.card .name{font-weight:600;text-transform:capitalize}
.card .note,.caption,.empty,.shard{color:var(--muted);font-size:13px}
#count-flagged .value{color:var(--over)}#count-errors .value{color:var(--warn)}
svg.chart{width:100%;height:auto;display:block;margin:4px 0}
svg .bar{fill:var(--bar)}svg .bar.over{fill:var(--over)}svg .bar.overflow{opacity:.75}
svg .axis{stroke:#8a91a0;stroke-width:1}svg .grid{stroke:#eef0f4;stroke-width:1}
svg .tick,svg .legend,svg .bar-value{font-size:12px;fill:var(--muted)}
svg .bar-label{font-size:13px;fill:var(--ink)}svg .axis-label{font-size:12px;fill:var(--muted)}
svg .threshold{stroke:var(--warn);stroke-width:2;stroke-dasharray:6 4}
svg .threshold-label{font-size:12px;fill:var(--warn);font-weight:600}
svg .ecdf{fill:none;stroke-width:2}svg .ecdf.previous{stroke:#9aa1ae;stroke-dasharray:5 3}
svg .ecdf.current{stroke:var(--bar)}svg .ks-gap{stroke:var(--over);stroke-width:3}
svg .ks-label{font-size:12px;fill:var(--over);font-weight:600}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:break-word}
#errors-table td:not(:last-child){white-space:nowrap}
th{background:#f0f2f6;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:14px}
figure.pair{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px}
.images{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.thumb{position:relative;height:180px;background:#eceef2;border-radius:6px;display:flex;align-items:center;justify-content:center;overflow:hidden}
.thumb img{width:100%;height:100%;object-fit:contain}
.thumb .label{position:absolute;top:4px;left:4px;background:rgba(29,36,51,.75);color:#fff;font-size:11px;padding:1px 6px;border-radius:4px}
.thumb.broken img{display:none}.thumb.broken::after{content:"the browser could not show this image";font-size:12px;color:var(--muted)}
.thumb.missing .why{padding:20px 10px 6px;font-size:12px;color:var(--muted);text-align:center;overflow-wrap:anywhere}
figcaption{margin-top:8px;font-size:14px}.key{font-weight:600;overflow-wrap:anywhere}
.flag{color:#fff;background:var(--over);border-radius:4px;padding:0 6px;font-size:12px}
.pass{color:#fff;background:var(--ok);border-radius:4px;padding:0 6px;font-size:12px}
.chip{display:inline-block;background:#eef1f7;border-radius:10px;padding:0 8px;margin:3px 4px 0 0;font-size:12px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
footer{max-width:1200px;margin:0 auto;padding:0 24px 28px;color:var(--muted);font-size:13px}
"""
