"""The sample catalog: what it holds matches its truth, and rebuilds are byte-identical."""

from __future__ import annotations

import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stylefix_core.inject import CORRECTOR_TRAINING_KINDS, HELD_OUT_KINDS, INJECTORS
from stylefix_core.sample_catalog import (
    CatalogTruth,
    Status,
    TruthEntry,
    build_sample_catalog,
    load_truth,
    main,
)

TARS = ("assets-00000.tar", "assets-00001.tar")
PARQUET = "assets-00002.parquet"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CatalogTruth]:
    root = tmp_path_factory.mktemp("catalog") / "sample"
    return root, build_sample_catalog(root, seed=7)


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _image_bytes(root: Path, entry: TruthEntry) -> bytes:
    if entry.source in TARS:
        return _tar_members(root / entry.source)[entry.member]
    if entry.source == PARQUET:
        rows = pq.read_table(root / PARQUET).to_pylist()
        return next(r["image"] for r in rows if r["key"] == entry.member)
    return (root / entry.source).read_bytes()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_counts_and_fates(catalog: tuple[Path, CatalogTruth]) -> None:
    _, truth = catalog
    assert len(truth.entries) == 48
    assert len({e.key for e in truth.entries}) == 48
    assert [(e.source, e.format) for e in truth.corrupt] == [(TARS[0], "png")]
    assert 0.15 <= len(truth.anomalous) / len(truth.entries) <= 0.25
    kinds = [e.kind for e in truth.anomalous]
    assert len(set(kinds)) == len(kinds), "anomalies should spread across kinds"
    assert set(HELD_OUT_KINDS) <= set(kinds)
    assert len(set(kinds) & set(CORRECTOR_TRAINING_KINDS)) >= 5
    assert all(
        k in INJECTORS and 0.6 <= e.severity <= 1.0
        for k, e in zip(kinds, truth.anomalous, strict=True)
    )
    assert all(e.kind is None and e.severity is None for e in truth.clean + truth.corrupt)
    sizes = {(e.height, e.width) for e in truth.entries}
    assert len(sizes) >= 4
    assert {e.format for e in truth.entries} == {"png", "jpeg"}


def test_layout_on_disk(catalog: tuple[Path, CatalogTruth]) -> None:
    root, truth = catalog
    loose = sorted(
        p.relative_to(root).as_posix() for p in (root / "loose").rglob("*") if p.is_file()
    )
    assert loose == sorted(e.source for e in truth.entries if e.source.startswith("loose/"))
    assert any(name.startswith("loose/banners/") for name in loose)
    assert {p.suffix for p in (root / "loose").rglob("*.*")} == {".png", ".jpg"}
    assert not list(root.rglob("*.tmp"))
    assert load_truth(root) == truth


def test_tars_are_webdataset_shards_with_clean_headers(catalog: tuple[Path, CatalogTruth]) -> None:
    root, truth = catalog
    for shard in TARS:
        with tarfile.open(root / shard) as tar:
            infos = tar.getmembers()
        assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.uname == "" for i in infos)
        groups: dict[str, list[str]] = defaultdict(list)
        for info in infos:
            key, ext = info.name.split(".", 1)
            groups[key].append(ext)
        assert sorted(groups) == sorted(e.key for e in truth.entries if e.source == shard)
        assert all(sorted(exts) in (["json", "png"], ["jpg", "json"]) for exts in groups.values())
        members = _tar_members(root / shard)
        for key in groups:
            meta = json.loads(members[f"{key}.json"])
            assert meta["asset_id"] == key and meta["title"]


def test_parquet_shard_columns(catalog: tuple[Path, CatalogTruth]) -> None:
    root, truth = catalog
    table = pq.read_table(root / PARQUET)
    assert table.column_names == ["key", "image", "metadata"]
    assert [str(t) for t in table.schema.types] == ["string", "binary", "string"]
    assert table.column("key").to_pylist() == [e.key for e in truth.entries if e.source == PARQUET]
    assert all(
        json.loads(m)["asset_id"] == k
        for k, m in zip(table["key"].to_pylist(), table["metadata"].to_pylist(), strict=True)
    )


def test_every_image_matches_its_truth(catalog: tuple[Path, CatalogTruth]) -> None:
    root, truth = catalog
    for entry in truth.entries:
        data = _image_bytes(root, entry)
        assert data[:4] == (b"\x89PNG" if entry.format == "png" else b"\xff\xd8\xff\xe0")
        if entry.is_corrupt:
            with pytest.raises(OSError):
                _decode(data)
            continue
        pixels = _decode(data)
        assert pixels.shape == (entry.height, entry.width, 3)
        diff = np.abs(pixels.astype(np.int16) - truth.clean_image(entry.key)).mean()
        if entry.is_anomaly:
            assert diff > 2.0, f"{entry.key} ({entry.kind}) barely differs from its clean asset"
        elif entry.format == "png":
            assert diff == 0.0
        else:
            assert diff < 2.0  # JPEG at quality 95


def test_entry_lookup_accepts_every_spelling_of_a_key(catalog: tuple[Path, CatalogTruth]) -> None:
    _, truth = catalog
    loose = next(e for e in truth.entries if e.source.startswith("loose/banners/"))
    for spelling in (loose.key, loose.member, loose.member.rsplit(".", 1)[0]):
        assert truth.entry_for(spelling) == loose
    with pytest.raises(KeyError):
        truth.entry_for("asset-999999")
    assert CatalogTruth.from_json(truth.to_json()) == truth
    assert truth.entry_for(truth.corrupt[0].key).status is Status.CORRUPT


def test_rebuild_is_byte_identical_even_over_another_seed(
    catalog: tuple[Path, CatalogTruth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, truth = catalog
    other = tmp_path / "again"
    assert main([str(other), "--seed", "3"]) == 0
    assert str(other.resolve()) in capsys.readouterr().out
    assert load_truth(other) != truth
    assert _all_files(other) != _all_files(root)
    assert build_sample_catalog(other, seed=7) == truth
    assert _all_files(other) == _all_files(root)
