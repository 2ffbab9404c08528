"""Many styles in one job: routing per image, a bounded set of resident models, provenance."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from bad_inputs import pixels, save, tar_file
from PIL import Image

from pipelines.main import run
from stylefix_core.bundle import load_bundle, save_bundle
from stylefix_core.config import BatchConfig, Limits, Mode
from stylefix_core.engine import Engine
from stylefix_core.engine_cache import EngineCache
from stylefix_core.errors import BundleError
from stylefix_core.imaging import decode_image, encode_image, read_image_text
from stylefix_core.records import DecodedImage, ShardMember
from stylefix_core.styles import RouteError, StyleTable, build_style_table, parse_pairs

RUNNER = ["--runner=FnApiRunner"]
# Each style's bundle is the default bundle with the generator's last bias
# moved by this much per channel, so each style writes visibly different pixels.
BIAS_SHIFT = {"riso": (0.0, 0.0, 0.0), "ink": (0.8, -0.4, 0.0), "wash": (-0.5, 0.3, 0.8)}
RULES = "banners/*=ink,promo-*=wash"
CPU = torch.device("cpu")


def _version(style: str) -> str:
    return f"{style}-test-1"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, str]:
    """Three small real bundles with their own style name, version and generator."""
    root = tmp_path_factory.mktemp("bundles")
    made = {}
    for style, shift in BIAS_SHIFT.items():
        bundle = load_bundle()
        with torch.no_grad():
            bundle.generator.decoder[-1].bias += torch.tensor(shift)
        manifest = replace(bundle.manifest, style=style, version=_version(style))
        save_bundle(str(root / style), manifest, bundle.networks())
        made[style] = str(root / style)
    return made


def _image(key: str, metadata: dict) -> DecodedImage:
    member = ShardMember("s.tar", key, "s.tar#" + key, b"", ".png", metadata)
    return DecodedImage(member, np.zeros((4, 4, 3), np.uint8), "")


def test_style_comes_from_metadata_then_the_first_matching_rule_then_the_default():
    table = build_style_table(
        "riso", "", {"ink": "gs://b/ink", "wash": "gs://b/wash"}, parse_pairs(RULES, "--r")
    )
    cases = {
        ("banners/a/b", "{}"): "ink",  # * crosses "/"
        ("promo-1", "{}"): "wash",
        ("promo-1", '{"style": "ink"}'): "ink",  # metadata beats the rule
        ("banner", "{}"): "riso",
        ("x", '{"style": ""}'): "riso",
    }
    for (key, metadata), style in cases.items():
        routed = table.route(_image(key, json.loads(metadata)))
        assert (routed.style, routed.bundle) == (style, table.bundles[style]), key
    with pytest.raises(RouteError, match="'oil' has no bundle.*known styles: ink, riso, wash"):
        table.route(_image("x", {"style": "oil"}))
    with pytest.raises(RouteError, match="must be a style name"):
        table.route(_image("x", {"style": 3}))
    with pytest.raises(ValueError, match="oil have no bundle"):
        StyleTable(default="riso", bundles={"riso": ""}, rules=(("*", "oil"),))
    with pytest.raises(ValueError, match="--bundle instead"):
        build_style_table("riso", "", {"riso": "gs://b/other"}, ())
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_pairs("ink=gs://b/ink,wash", "--bundles")
    assert parse_pairs("a=gs://b/x?token=1, b=y,", "--bundles") == (
        ("a", "gs://b/x?token=1"),
        ("b", "y"),
    )


def test_engine_cache_keeps_the_most_recently_used_and_evicts_the_oldest(bundles):
    def load(url: str) -> Engine:
        return Engine(load_bundle(url), Mode.STYLE, CPU, BatchConfig())

    cache = EngineCache(load, capacity=2)
    riso, ink, wash = (bundles[s] for s in ("riso", "ink", "wash"))
    first = cache.get(riso)
    cache.get(ink)
    assert cache.get(riso) is first  # a hit, and riso is now the most recent
    assert cache.get(wash).bundle.manifest.version == _version("wash")
    assert cache.resident() == [riso, wash] and (cache.loads, cache.evictions) == (3, 1)
    assert cache.get(ink).bundle.manifest.version == _version("ink")
    assert cache.resident() == [wash, ink] and (cache.loads, cache.evictions) == (4, 2)


def test_a_bad_bundle_of_any_style_stops_the_job_before_it_starts(tmp_path):
    argv = [f"--input={tmp_path}", f"--output={tmp_path / 'out'}", *RUNNER]
    with pytest.raises(BundleError, match="no bundle at"):
        run([*argv, f"--bundles=ink={tmp_path / 'missing'}"])
    with pytest.raises(ValueError, match="oil have no bundle"):
        run([*argv, "--style_rules=promo-*=oil"])
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------- one mixed job


def _catalog(root: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tar, Parquet and plain-file shards mixing three styles; returns pixels and styles by key."""
    images, styles = {}, {}

    def add(key: str, style: str, seed: int) -> bytes:
        images[key] = pixels(seed, 24 + 8 * (seed % 2), 20)
        styles[key] = style
        return save(Image.fromarray(images[key]), "PNG")

    meta = {"a": "ink", "b": "wash", "e": "riso", "g": "ink", "d": "oil"}
    members = []
    for seed, key in enumerate(["a", "b", "c", "e", "promo-f", "g"]):
        members.append((f"{key}.png", add(key, meta.get(key) or _by_rule(key), seed)))
        if key in meta:
            members.append((f"{key}.json", json.dumps({"style": meta[key]}).encode()))
    members += [
        ("d.png", save(Image.fromarray(pixels(9, 24, 20)), "PNG")),
        ("d.json", b'{"style": "oil"}'),
    ]
    tar_file(root / "mixed.tar", members)
    rows = [("r1", "ink"), ("r2", None), ("r3", "wash")]
    data = [add(key, style or "riso", 10 + i) for i, (key, style) in enumerate(rows)]
    table = pa.table({"key": [k for k, _ in rows], "image": data, "style": [s for _, s in rows]})
    pq.write_table(table, root / "rows.parquet")
    (root / "banners").mkdir()
    (root / "banners" / "x.png").write_bytes(add("banners/x", "ink", 20))
    (root / "banners" / "y.png").write_bytes(add("banners/y", "wash", 21))
    (root / "banners" / "y.json").write_text('{"style": "wash"}')
    return images, styles


def _by_rule(key: str) -> str:
    return "wash" if key.startswith("promo-") else "riso"


@pytest.fixture(scope="module")
def mixed_job(bundles, tmp_path_factory):
    root, output = tmp_path_factory.mktemp("mixed"), tmp_path_factory.mktemp("mixed-out")
    images, styles = _catalog(root)
    argv = [
        f"--input={root}",
        f"--output={output}",
        f"--bundle={bundles['riso']}",
        f"--bundles=ink={bundles['ink']},wash={bundles['wash']}",
        f"--style_rules={RULES}",
        "--max_models_per_worker=2",
        "--max_batch_size=4",
        "--output_format=webp",
        *RUNNER,
    ]
    records, logger = _LogRecords(), logging.getLogger("stylefix_core.engine_cache")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        summary = run(argv)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return output, summary, images, styles, records.messages


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _rows(output: Path, folder: str) -> list[dict]:
    return [
        r for p in sorted((output / folder).glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


@pytest.mark.slow
def test_each_image_is_written_by_its_own_styles_model_with_provenance(bundles, mixed_job):
    output, summary, images, styles, _ = mixed_job
    rows = {r["key"]: r for r in _rows(output, "report")}
    assert rows.keys() == styles.keys() and summary.report_rows == len(styles)
    engines = {
        s: Engine(load_bundle(u), Mode.STYLE, CPU, BatchConfig()) for s, u in bundles.items()
    }
    for key, row in rows.items():
        style = styles[key]
        assert (row["style"], row["model_version"]) == (style, _version(style)), key
        data = Path(row["output_uri"]).read_bytes()
        assert read_image_text(data) == {
            "Software": "StyleFix",
            "stylefix:action": "styled+corrected" if row["corrected"] else "styled",
            "stylefix:style": style,
            "stylefix:model_version": _version(style),
            "stylefix:run_id": summary.run_id,
            "stylefix:source_shard": row["shard"],
            "stylefix:source_key": key,
        }
        written = decode_image(data, Limits())
        by_style = {
            s: decode_image(encode_image(e.process([images[key]])[0].output, "webp"), Limits())
            for s, e in engines.items()
        }
        np.testing.assert_array_equal(written, by_style[style], err_msg=key)
        assert all(not np.array_equal(written, by_style[s]) for s in by_style if s != style), key


@pytest.mark.slow
def test_an_unknown_style_is_one_route_error_and_models_were_evicted(mixed_job):
    output, summary, _, _, log_messages = mixed_job
    (error,) = _rows(output, "errors")
    assert (error["key"], error["stage"], error["error_type"]) == ("d", "route", "RouteError")
    assert "'oil'" in error["message"] and "known styles: ink, riso, wash" in error["message"]
    assert summary.errors_by_stage == {"route": 1}
    assert any(m.startswith("evicted bundle") for m in log_messages), log_messages
    manifest = json.loads((output / "run_manifest.json").read_text())
    assert {s: v["version"] for s, v in manifest["styles"].items()} == {
        s: _version(s) for s in BIAS_SHIFT
    }
