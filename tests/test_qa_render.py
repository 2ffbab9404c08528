"""The report page from hand-made tables: edge cases a sample run does not reach."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stylefix_core.config import Limits
from stylefix_core.qa_report.build import assemble_page
from stylefix_core.qa_report.compare import AlertLimits, compare_runs
from stylefix_core.qa_report.loader import RunTables
from stylefix_core.qa_report.render import WorstImage, render_html
from stylefix_core.qa_report.svg import fmt, nice_ticks
from stylefix_core.qa_report.thumbnails import make_thumbnail, missing
from stylefix_core.report import ERROR_SCHEMA, REPORT_SCHEMA


def _rows(scores: list[float], flagged: list[bool], reasons: list[list[str]]) -> pa.Table:
    empty = {name: None for name in REPORT_SCHEMA.names}
    rows = [
        {
            **empty,
            "run_id": "run-a",
            "shard": "s.tar",
            "key": f"k{i}",
            "mode": "qa",
            "anomaly_score": score,
            "threshold": 2.0,
            "is_anomaly": flag,
            "reasons": why,
            "corrected": False,
            "device": "cpu",
        }
        for i, (score, flag, why) in enumerate(zip(scores, flagged, reasons, strict=True))
    ]
    return pa.Table.from_pylist(rows, schema=REPORT_SCHEMA)


def _run(report: pa.Table) -> RunTables:
    return RunTables("memory://out", report, ERROR_SCHEMA.empty_table(), None)


def test_an_empty_run_renders_without_charts():
    tables = _run(REPORT_SCHEMA.empty_table())
    html = render_html(assemble_page(tables, tables, [], AlertLimits(max_flagged_share=0.1)))
    assert "No image was scored." in html and "Not tested: a run without scores." in html
    assert "No errors" in html and "Within limits" in html


def test_new_and_resolved_anomalies_are_matched_by_shard_and_key():
    before = _rows([3.0, 1.0, 2.5], [True, False, True], [["blur"], [], ["noise"]])
    now = _rows([1.0, 2.2, 2.6], [False, True, True], [[], ["noise"], ["noise", "blur"]])
    comparison = compare_runs(now, ERROR_SCHEMA.empty_table(), before, ERROR_SCHEMA.empty_table())
    assert [(c.key, c.previous_score, c.current_score) for c in comparison.new_anomalies] == [
        ("k1", 1.0, 2.2)
    ]
    assert [(c.key, c.reasons) for c in comparison.resolved_anomalies] == [("k0", ("blur",))]
    assert {c.reason: (c.previous, c.current) for c in comparison.reasons} == {
        "blur": (1, 1),
        "noise": (1, 2),
    }


def test_a_key_missing_from_either_run_is_named_so():
    before = _rows([3.0], [True], [["blur"]])
    now = _rows([2.5], [True], [["noise"]]).set_column(2, "key", pa.array(["other"]))
    comparison = compare_runs(now, ERROR_SCHEMA.empty_table(), before, ERROR_SCHEMA.empty_table())
    page = assemble_page(_run(now), _run(before), [], AlertLimits())
    html = render_html(page)
    assert comparison.new_anomalies[0].previous_score is None
    assert comparison.resolved_anomalies[0].current_score is None
    assert "not in the previous run" in html and "not in this run" in html


def test_text_from_the_data_is_escaped():
    report = _rows([5.0], [True], [["<script>x</script>"]])
    report = report.set_column(2, "key", pa.array(['a"<b>']))
    row = report.to_pylist()[0]
    worst = [WorstImage(row, missing("cannot read: <gone>"), missing("gone & lost"))]
    html = render_html(assemble_page(_run(report), None, worst, AlertLimits()))
    assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'a"<b>' not in html and "a&quot;&lt;b&gt;" in html
    assert "cannot read: &lt;gone&gt;" in html and "gone &amp; lost" in html


def test_thumbnails_keep_the_aspect_ratio_and_name_what_failed():
    from io import BytesIO

    from PIL import Image

    sink = BytesIO()
    Image.fromarray(np.full((300, 600, 3), 120, dtype=np.uint8)).save(sink, format="PNG")
    thumb = make_thumbnail(sink.getvalue(), Limits())
    assert (thumb.width, thumb.height) == (192, 96) and thumb.data_uri.startswith("data:image/")
    broken = make_thumbnail(b"not an image", Limits())
    assert broken.data_uri == "" and "DecodeError" in broken.note


def test_numbers_and_ticks_read_well():
    assert [fmt(v) for v in (0, 3.4347, 0.25, 12.0, 1234.5, -0.5)] == [
        "0",
        "3.43",
        "0.25",
        "12",
        "1.23e+03",
        "-0.5",
    ]
    assert nice_ticks(0.39, 7.41, 6) == [2, 4, 6]  # steps of 1, 2 or 5 x 10^k, at most ~6
    assert nice_ticks(0, 13, 4) == [0, 5, 10]
