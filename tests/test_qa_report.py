"""The QA report from a real run: the page the job writes, ``stylefix report``, progress.

One job runs on the sample catalog for the whole module, on the portable
runner (embedded job service, loopback workers), which is asynchronous: the
launcher polls it, as it polls Dataflow or Flink.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from headless_chromium import Elements, find_chromium, load_page, screenshot
from PIL import Image

from pipelines.cli import LIMIT_CROSSED
from pipelines.cli import main as cli
from pipelines.main import run
from pipelines.run_manifest import RunSummary
from stylefix_core.config import Limits
from stylefix_core.imaging import sha256_hex
from stylefix_core.qa_report.build import DEFAULT_TOP
from stylefix_core.qa_report.loader import fetch_sources
from stylefix_core.qa_report.svg import fmt
from stylefix_core.sample_catalog import build_sample_catalog

pytestmark = pytest.mark.slow
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian package 'chromium'; `make test` installs it "
    "where it runs as root with apt-get)",
)


@dataclass(frozen=True)
class Run:
    catalog: Path
    output: Path
    summary: RunSummary
    progress: list[str]


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Run:
    catalog = tmp_path_factory.mktemp("catalog")
    build_sample_catalog(catalog)
    output = tmp_path_factory.mktemp("run")
    progress_log = logging.getLogger("stylefix.progress")
    handler, level = _Messages(), progress_log.level
    progress_log.addHandler(handler)
    progress_log.setLevel(logging.INFO)
    try:
        summary = run(
            [
                f"--input={catalog}",
                f"--output={output}",
                "--runner=PortableRunner",
                "--job_endpoint=embed",
                "--environment_type=LOOPBACK",
                "--progress_interval_s=0",
            ]
        )
    finally:
        progress_log.removeHandler(handler)
        progress_log.setLevel(level)
    return Run(catalog, output, summary, handler.messages)


def _table(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])


def _cards(html: str) -> dict[str, int]:
    found = re.findall(r'id="count-(\w+)"><div class="value">(\d+)</div>', html)
    return {name: int(value) for name, value in found}


def _inline_images(html: str) -> list[Image.Image]:
    uris = re.findall(r'<img src="data:image/(?:webp|png);base64,([A-Za-z0-9+/=]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(uri))) for uri in uris]


def _table_html(html: str, table_id: str) -> str:
    start = html.index(f'<table id="{table_id}">')
    return html[start : html.index("</table>", start)]


def _copy(job: Run, where: Path) -> Path:
    shutil.copytree(job.output, where)
    return where


# ----------------------------------------------------------------- the page


def test_the_run_writes_a_self_contained_page(job: Run):
    html = (job.output / "report.html").read_text()
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []
    assert "<link" not in html and "@import" not in html and "url(" not in html
    images = _inline_images(html)
    assert len(images) == 2 * min(DEFAULT_TOP, job.summary.report_rows)
    for image in images:
        image.load()
        assert max(image.size) <= 192 and min(image.size) > 8


def test_counts_on_the_page_are_the_tables_counts(job: Run):
    report, errors = _table(job.output / "report"), _table(job.output / "errors")
    cards = _cards((job.output / "report.html").read_text())
    read_errors = errors.filter(pc.equal(errors["stage"], "read")).num_rows
    assert cards == {
        "inputs": report.num_rows + errors.num_rows,
        "read": report.num_rows + errors.num_rows - read_errors,
        "styled": report.filter(pc.equal(report["mode"], "style")).num_rows,
        "scored": report.num_rows,
        "flagged": report.filter(report["is_anomaly"]).num_rows,
        "corrected": report.filter(report["corrected"]).num_rows,
        "errors": errors.num_rows,
    }
    assert cards["flagged"] == job.summary.flagged and cards["errors"] == job.summary.error_rows


def test_histogram_holds_every_score_and_marks_the_threshold(job: Run):
    html = (job.output / "report.html").read_text()
    report = _table(job.output / "report")
    histogram = html[html.index('<section id="scores">') : html.index('<section id="reasons">')]
    bars = re.findall(
        r"<title>(?:[-\d.]+ to [-\d.]+|above [-\d.]+): (\d+) image\(s\)</title>", histogram
    )
    assert sum(int(n) for n in bars) == report.num_rows
    threshold = report["threshold"][0].as_py()
    assert '<line class="threshold"' in histogram
    assert f"threshold {fmt(threshold)}" in histogram


def test_reasons_are_counted_per_reason(job: Run):
    html = (job.output / "report.html").read_text()
    flagged = [r for r in _table(job.output / "report").to_pylist() if r["is_anomaly"]]
    expected: dict[str, int] = {}
    for row in flagged:
        for reason in row["reasons"]:
            expected[reason] = expected.get(reason, 0) + 1
    table = html[html.index('<table id="reasons-table">') :]
    shown = re.findall(r'<tr><td class="">([a-z_]+)</td><td class="num">(\d+)</td>', table)
    assert {name: int(n) for name, n in shown} == expected


def test_worst_images_come_first_by_score_with_their_reasons(job: Run):
    html = (job.output / "report.html").read_text()
    rows = sorted(
        _table(job.output / "report").to_pylist(),
        key=lambda r: (-r["anomaly_score"], r["shard"], r["key"]),
    )[:DEFAULT_TOP]
    sheet = html[html.index('<section id="worst">') : html.index('<section id="errors">')]
    assert re.findall(r'<div class="key" title="[^"]*">([^<]+)</div>', sheet) == [
        r["key"] for r in rows
    ]
    for row in rows:
        assert f"score {fmt(row['anomaly_score'])}" in sheet
        for reason in row["reasons"]:
            assert f'<span class="chip">{reason}</span>' in sheet


def test_before_images_are_read_back_from_every_kind_of_shard(job: Run):
    report = _table(job.output / "report").to_pylist()
    one_per_kind = {}
    for row in report:
        kind = (
            ".tar#"
            if ".tar#" in row["source_uri"]
            else ".parquet#"
            if ".parquet#" in row["source_uri"]
            else "file"
        )
        one_per_kind.setdefault(kind, row)
    assert set(one_per_kind) == {".tar#", ".parquet#", "file"}
    fetched = fetch_sources([row["source_uri"] for row in one_per_kind.values()], Limits())
    for row in one_per_kind.values():
        data = fetched[row["source_uri"]].data
        assert data is not None and sha256_hex(data) == row["input_sha256"]
    # converted as each is read (thumbnails), so no image's bytes are kept
    digests = fetch_sources(
        [row["source_uri"] for row in one_per_kind.values()],
        Limits(),
        convert=lambda f: sha256_hex(f.data),
    )
    assert digests == {row["source_uri"]: row["input_sha256"] for row in one_per_kind.values()}


def test_unreadable_sources_become_notes_not_failures(job: Run, tmp_path: Path):
    real_tar = next(job.catalog.glob("*.tar"))
    uris = [f"{tmp_path}/gone.tar#a.png", f"{real_tar}#no-such-member.png", f"{tmp_path}/gone.png"]
    fetched = fetch_sources(uris, Limits())
    assert [fetched[u].data for u in uris] == [None, None, None]
    assert "not found in the shard" in fetched[uris[1]].note
    assert "FileNotFoundError" in fetched[uris[2]].note


def test_errors_table_lists_every_error(job: Run):
    html = (job.output / "report.html").read_text()
    errors = _table(job.output / "errors").to_pylist()
    table = _table_html(html, "errors-table")
    assert table.count("<tr>") == len(errors) + 1
    for error in errors:
        assert error["key"] in table and error["error_type"] in table


# ------------------------------------------------------------ stylefix report


def test_report_command_rebuilds_the_same_page(job: Run, tmp_path: Path, capsys):
    copy = _copy(job, tmp_path / "out")
    (copy / "report.html").unlink()
    assert cli(["report", str(copy)]) == 0
    original = (job.output / "report.html").read_text()
    assert (copy / "report.html").read_text() == original.replace(str(job.output), str(copy))
    assert f"wrote {copy}/report.html" in capsys.readouterr().out


def test_report_command_needs_only_the_parquet_tables(job: Run, tmp_path: Path):
    copy = _copy(job, tmp_path / "out")
    (copy / "report.html").unlink()
    (copy / "run_manifest.json").unlink()
    assert cli(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    assert _cards(html) == _cards((job.output / "report.html").read_text())
    assert job.summary.run_id in html


def test_report_reads_and_writes_through_the_storage_bridge(job: Run):
    import uuid

    import fsspec

    memory = fsspec.filesystem("memory")
    prefix = f"memory://qa-{uuid.uuid4().hex}/out"
    for path in [*job.output.glob("report/*.parquet"), *job.output.glob("errors/*.parquet")]:
        memory.pipe(f"{prefix}/{path.relative_to(job.output)}", path.read_bytes())
    try:
        assert cli(["report", prefix]) == 0
        html = memory.cat(f"{prefix}/report.html").decode()
    finally:
        memory.rm(prefix.rsplit("/", 1)[0], recursive=True)
    assert _cards(html) == _cards((job.output / "report.html").read_text())
    assert len(_inline_images(html)) == 2 * min(DEFAULT_TOP, job.summary.report_rows)


def test_report_command_on_an_empty_prefix_says_so(tmp_path: Path, capsys):
    assert cli(["report", str(tmp_path)]) == 2
    assert "no report or error parts" in capsys.readouterr().err


def test_an_optional_comparison_with_no_previous_run_is_noted_not_fatal(
    job: Run, tmp_path: Path, capsys
):
    """The nightly check on its first night: nothing under yesterday's prefix yet."""
    missing = str(tmp_path / "yesterday")
    page = str(tmp_path / "page.html")
    assert cli(["report", str(job.output), "--compare", missing, "--html", page]) == 2
    capsys.readouterr()
    optional = ["--compare", missing, "--compare-optional", "--html", page]
    assert cli(["report", str(job.output), *optional]) == 0
    assert "not compared" in capsys.readouterr().err


# ----------------------------------------------------------------- comparison


def _previous_run(job: Run, where: Path, unflag: bool, shift: float) -> Path:
    """A copy of the run as if last night had flagged nothing and scored ``shift`` lower."""
    previous = _copy(job, where)
    for part in sorted((previous / "report").glob("part-*.parquet")):
        table = pq.read_table(part)
        scores = pc.subtract(table["anomaly_score"], shift)
        table = table.set_column(
            table.schema.get_field_index("anomaly_score"), "anomaly_score", scores
        )
        if unflag:
            index = table.schema.get_field_index("is_anomaly")
            table = table.set_column(index, "is_anomaly", pa.array([False] * table.num_rows))
            index = table.schema.get_field_index("reasons")
            empty = pa.array([[]] * table.num_rows, type=table.schema.field("reasons").type)
            table = table.set_column(index, "reasons", empty)
        pq.write_table(table, part)
    return previous


@pytest.fixture(scope="module")
def previous(job: Run, tmp_path_factory) -> Path:
    return _previous_run(job, tmp_path_factory.mktemp("prev") / "out", unflag=True, shift=1.0)


def test_comparison_lists_new_anomalies_and_reason_changes(job: Run, previous: Path, tmp_path):
    page = tmp_path / "compare.html"
    assert cli(["report", str(job.output), "--compare", str(previous), "--html", str(page)]) == 0
    html = page.read_text()
    flagged = [r for r in _table(job.output / "report").to_pylist() if r["is_anomaly"]]
    assert flagged, "the sample run must flag something for this test to mean anything"
    new = _table_html(html, "new-table")
    assert sorted(re.findall(r'<tr><td class="">([^<]+)</td>', new)) == sorted(
        r["key"] for r in flagged
    )
    assert "Resolved anomalies (0)" in html
    changes = html[html.index('<table id="reason-change-table">') :]
    for reason in {reason for row in flagged for reason in row["reasons"]}:
        count = sum(reason in row["reasons"] for row in flagged)
        assert (
            f'<td class="">{reason}</td><td class="num">0</td><td class="num">{count}</td><td class="num">+{count}</td>'
            in changes
        )
    assert re.search(r"D = 0\.\d{4}, p = ", html)
    assert html.count('class="ecdf ') >= 2


def test_compare_limits_set_the_exit_code(job: Run, previous: Path, tmp_path, capsys):
    report = _table(job.output / "report")
    share = report.filter(report["is_anomaly"]).num_rows / report.num_rows
    base = [
        "report",
        str(job.output),
        "--compare",
        str(previous),
        "--html",
        str(tmp_path / "p.html"),
    ]
    within = ["--max-flagged-share", f"{share + 0.01}", "--max-error-share", "0.5"]
    assert cli([*base, *within, "--max-drift-ks", "0.99"]) == 0
    assert "Within limits" in (tmp_path / "p.html").read_text()
    capsys.readouterr()
    assert cli([*base, "--max-flagged-share", f"{share - 0.01}"]) == LIMIT_CROSSED
    assert "LIMIT CROSSED: flagged share" in capsys.readouterr().err
    assert cli([*base, "--max-error-share", "0"]) == LIMIT_CROSSED
    assert "--max-error-share" in capsys.readouterr().err
    assert cli([*base, "--max-drift-ks", "0.2"]) == LIMIT_CROSSED
    err = capsys.readouterr().err
    assert "drift KS statistic" in err and "--max-drift-ks 0.2" in err
    assert "Limits crossed" in (tmp_path / "p.html").read_text()


def test_an_unchanged_run_shows_no_drift(job: Run, tmp_path, capsys):
    page = tmp_path / "same.html"
    args = ["report", str(job.output), "--compare", str(job.output), "--html", str(page)]
    assert cli([*args, "--max-drift-ks", "0", "--min-drift-p", "0.999"]) == 0
    assert "D = 0.0000, p = 1 " in page.read_text()


def test_drift_limits_need_a_comparison(job: Run):
    with pytest.raises(SystemExit) as stopped:
        cli(["report", str(job.output), "--max-drift-ks", "0.1"])
    assert stopped.value.code == 2


# ------------------------------------------------------------------- progress


def test_workers_and_launcher_log_progress(job: Run):
    worker = [m for m in job.progress if m.startswith("progress (this process): ")]
    final = [m for m in job.progress if m.startswith("finished (all workers): ")]
    summary = job.summary
    # with --progress_interval_s=0 the worker logs every finished image
    assert len(worker) == summary.images
    assert (
        worker[-1]
        .split(": ", 1)[1]
        .startswith(
            f"{summary.images} images processed ({summary.report_rows} reported, "
            f"{summary.error_rows} errors), {summary.flagged} flagged, "
        )
    )
    assert len(final) == 1 and final[0].split(": ", 1)[1].startswith(
        f"{summary.images} images processed ({summary.report_rows} reported, "
        f"{summary.error_rows} errors), {summary.flagged} flagged, "
    )
    assert re.search(r", \d+\.\d images/s$", final[0])


# -------------------------------------------------------------- in a browser


@needs_chromium
def test_the_page_renders_in_chromium(job: Run, tmp_path: Path):
    page = job.output / "report.html"
    loaded = load_page(CHROMIUM, page, tmp_path / "profile-dom")
    assert loaded.console == []
    dom = Elements(loaded.dom)
    assert len(dom.find("svg", class_="chart")) >= 2  # histogram and reasons
    for table in ("reasons-table", "errors-table"):
        assert dom.find("table", id=table), table
    images = dom.find("img")
    assert len(images) == 2 * min(DEFAULT_TOP, job.summary.report_rows)
    assert dom.find("div", class_="broken") == []  # every thumbnail decoded
    png = tmp_path / "report.png"
    screenshot(CHROMIUM, page, png, tmp_path / "profile-shot", "1280,2200")
    with Image.open(png) as shot:
        pixels = np.asarray(shot.convert("RGB"))
    packed = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    colours = np.unique(packed)
    assert len(colours) > 500, "a blank or unstyled page"
    bar = np.all(pixels == (0x4C, 0x78, 0xA8), axis=-1)  # the histogram's bar colour
    assert bar.sum() > 1000, "the histogram was not painted"


@needs_chromium
def test_chromium_check_sees_console_messages_and_broken_images(job: Run, tmp_path: Path):
    """The browser checks above can fail: a console message and an undecodable image show."""
    html = (job.output / "report.html").read_text()
    broken = re.sub(
        r'src="data:image/(webp|png);base64,[^"]+"',
        'src="data:image/png;base64,iVBORw0KGgo="',
        html,
        count=1,
    )
    broken = broken.replace("</body>", "<script>console.error('probe')</script></body>")
    page = tmp_path / "broken.html"
    page.write_text(broken)
    loaded = load_page(CHROMIUM, page, tmp_path / "profile")
    assert any("probe" in message for message in loaded.console)
    assert len(Elements(loaded.dom).find("div", class_="broken")) == 1


def test_the_report_counts_only_its_own_run_where_another_left_parts(tmp_path):
    """Three loose files in three groups, then one file alone into the same prefix."""
    from stylefix_core.imaging import encode_image
    from stylefix_core.qa_report.loader import load_run

    rng = np.random.default_rng(5)
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    for folder, names in ((first, "abc"), (second, "z")):
        folder.mkdir()
        for name in names:
            pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            (folder / f"{name}.png").write_bytes(encode_image(pixels, "png"))
    grouped = ["--files_per_shard=1", "--runner=FnApiRunner"]
    run([f"--input={first}", f"--output={out}", *grouped])
    summary = run([f"--input={second}", f"--output={out}", *grouped])
    assert len(list((out / "report").glob("part-*.parquet"))) == 3  # two left by the first run
    tables = load_run(str(out))
    assert tables.report.column("key").to_pylist() == ["z"]
    assert set(tables.report.column("run_id").to_pylist()) == {summary.run_id}


def test_the_report_leaves_out_groups_the_same_job_no_longer_plans(tmp_path):
    """The same settings over a folder that lost a file: one group fewer, same run id."""
    from stylefix_core.imaging import encode_image
    from stylefix_core.qa_report.loader import load_run

    rng = np.random.default_rng(6)
    folder, out = tmp_path / "catalog", tmp_path / "out"
    folder.mkdir()
    for name in "abc":
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        (folder / f"{name}.png").write_bytes(encode_image(pixels, "png"))
    argv = [f"--input={folder}", f"--output={out}", "--files_per_shard=1", "--runner=FnApiRunner"]
    first = run(argv)
    (folder / "c.png").unlink()
    second = run(argv)
    assert first.run_id == second.run_id
    assert (out / "report" / "part-files-00002.parquet").exists()  # left by the first run
    assert sorted(load_run(str(out)).report.column("key").to_pylist()) == ["a", "b"]


def test_a_drift_limit_is_not_met_by_a_run_without_scores():
    """A night on which every image failed has nothing to test: no silent pass."""
    from stylefix_core.qa_report.compare import AlertLimits, check_limits, compare_runs
    from stylefix_core.qa_report.loader import REPORT_COLUMNS
    from stylefix_core.qa_report.summary import Counts
    from stylefix_core.report import ERROR_SCHEMA, REPORT_SCHEMA

    schema = pa.schema([REPORT_SCHEMA.field(name) for name in REPORT_COLUMNS])
    previous = pa.Table.from_pylist(
        [{"run_id": "r0", "shard": "s", "key": "k", "anomaly_score": 1.0, "reasons": []}],
        schema=schema,
    )
    comparison = compare_runs(
        schema.empty_table(), ERROR_SCHEMA.empty_table(), previous, ERROR_SCHEMA.empty_table()
    )
    counts = Counts(inputs=1, read=1, scored=0, styled=0, flagged=0, corrected=0, errors=1)
    breaches = check_limits(counts, comparison, AlertLimits(max_drift_ks=0.1))
    assert [b.option for b in breaches] == ["--max-drift-ks"]
    assert "could not be measured" in breaches[0].describe()
    assert check_limits(counts, comparison, AlertLimits()) == []


def test_a_manifest_of_another_run_than_the_rows_is_an_input_error(tmp_path, capsys):
    """A later run to the prefix died before its manifest: the page would show nothing of it."""
    import json

    from stylefix_core.imaging import encode_image

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    pixels = np.random.default_rng(8).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    (folder / "a.png").write_bytes(encode_image(pixels, "png"))
    run([f"--input={folder}", f"--output={out}", "--runner=FnApiRunner"])
    manifest = json.loads((out / "run_manifest.json").read_text())
    (out / "run_manifest.json").write_text(json.dumps({**manifest, "run_id": "run-elsewhere"}))
    assert cli(["report", str(out)]) == 2
    assert "names run run-elsewhere, but no row there is of it" in capsys.readouterr().err
