"""Shard planning and the tar / Parquet / plain-file readers (stylefix_core.io.shards)."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylefix_core.config import Limits
from stylefix_core.imaging import encode_image
from stylefix_core.io import storage
from stylefix_core.io.shards import SHARD_KEY, plan_shards, read_shard
from stylefix_core.records import ReadFailure, ShardMember, ShardSpec

LIMITS = Limits()


# ----------------------------------------------------------------------- helpers


def image_bytes(seed: int, fmt: str = "png", size: int = 4) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_image(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8), fmt)


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    """A tar (``mode="w:gz"`` for gzip) of (name, data) files and raw TarInfo members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
                continue
            name, data = entry
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def tar_spec(url: str, name: str = "s.tar") -> ShardSpec:
    return ShardSpec(name=name, kind="tar", urls=(url,))


def outline(items: list[ShardMember | ReadFailure]) -> list[tuple[str, str]]:
    """(key, "ok" or the failure's error_type) per item, in order."""
    return [(i.key, "ok" if isinstance(i, ShardMember) else i.error_type) for i in items]


def simple_entries(count: int) -> list[tuple[str, bytes]]:
    entries = []
    for index in range(count):
        entries.append((f"k{index}.png", image_bytes(index, size=16)))
        entries.append((f"k{index}.json", json.dumps({"index": index}).encode()))
    return entries


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://stylefix-test-{uuid.uuid4().hex[:8]}"
    yield root
    storage.remove(root, recursive=True)


# --------------------------------------------------------------------------- tar


@pytest.mark.parametrize(("suffix", "mode"), [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_tar_members_with_metadata(tmp_path, caplog, suffix, mode):
    entries = [
        ("k0.png", image_bytes(0)),
        ("k0.json", b'{"caption": "zero"}'),
        ("k1.jpg", image_bytes(1, "jpeg")),
        ("k1.json", b"{not json"),
        ("k1.txt", b"a caption"),
        ("k2.json", b'{"caption": "no image"}'),
        ("dir/k3.seg.png", b"mask"),
        ("dir/k3.webp", image_bytes(3, "webp")),
        ("dir/k3.cls", b"7"),
        ("k4.y.png", b"\x89PNG not really"),  # a corrupt member is still read; decode fails later
        ("README", b"no key.field name: ignored"),
    ]
    url = write(tmp_path / f"assets{suffix}", tar_bytes(entries, mode))
    with caplog.at_level(logging.WARNING):
        items = list(read_shard(tar_spec(url), limits=LIMITS))
    assert outline(items) == [
        ("k0", "ok"),
        ("k1", "ok"),
        ("k2", "MissingImageMember"),
        ("dir/k3", "ok"),
        ("k4", "ok"),
    ]
    k0, k1, _, k3, k4 = items
    assert (k0.metadata, k0.ext, k0.data) == ({"caption": "zero"}, ".png", image_bytes(0))
    assert (k1.metadata, k1.ext) == ({}, ".jpg")
    assert "k1.json" in caplog.text
    assert (k3.ext, k3.data, k3.source_uri) == (
        ".webp",
        image_bytes(3, "webp"),
        url + "#dir/k3.webp",
    )
    assert (k4.ext, k4.source_uri) == (".png", url + "#k4.y.png")
    assert all(item.shard == "s.tar" and item.stage == "read" for item in items[2:3])
    assert {item.shard for item in items} == {"s.tar"}


def test_unsafe_and_non_regular_members_are_never_extracted(tmp_path):
    entries = [
        ("../evil.png", image_bytes(0)),
        ("/abs.png", image_bytes(1)),
        ("a/../../up.png", image_bytes(2)),
        ("good.png", image_bytes(3)),
        special("link.png", tarfile.SYMTYPE, "good.png"),
        special("hard.png", tarfile.LNKTYPE, "good.png"),
        special("dev.png", tarfile.CHRTYPE),
        ("ok/./x.png", image_bytes(4)),
    ]
    shard_dir = tmp_path / "shards"
    url = write(shard_dir / "s.tar", tar_bytes(entries))
    items = list(read_shard(tar_spec(url), limits=LIMITS))
    assert outline(items) == [
        ("../evil.png", "UnsafeMemberError"),
        ("/abs.png", "UnsafeMemberError"),
        ("a/../../up.png", "UnsafeMemberError"),
        ("good", "ok"),
        ("link", "UnsafeMemberError"),
        ("hard", "UnsafeMemberError"),
        ("dev", "UnsafeMemberError"),
        ("ok/x", "ok"),
    ]
    assert "symbolic link" in items[4].message and "hard link" in items[5].message
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["s.tar", "shards"]


def test_duplicate_key_keeps_the_first(tmp_path):
    entries = [
        ("a.png", image_bytes(0)),
        ("b.png", image_bytes(1)),
        ("a.jpg", image_bytes(2, "jpeg")),
        ("a.json", b"{}"),
        ("c.png", image_bytes(3)),
    ]
    url = write(tmp_path / "s.tar", tar_bytes(entries))
    items = list(read_shard(tar_spec(url), limits=LIMITS))
    assert outline(items) == [
        ("a", "ok"),
        ("b", "ok"),
        ("a (duplicate 2)", "DuplicateKey"),
        ("c", "ok"),
    ]
    assert items[0].data == image_bytes(0)


def test_member_over_the_size_limit(tmp_path):
    big = image_bytes(1, size=64)
    entries = [("small.png", image_bytes(0)), ("big.png", big), ("after.png", image_bytes(2))]
    url = write(tmp_path / "s.tar", tar_bytes(entries))
    limits = Limits(max_file_bytes=len(big) - 1)
    items = list(read_shard(tar_spec(url), limits=limits))
    assert outline(items) == [("small", "ok"), ("big", "InputLimitError"), ("after", "ok")]


def test_shard_over_the_size_limit(tmp_path):
    url = write(tmp_path / "s.tar", tar_bytes(simple_entries(2)))
    items = list(read_shard(tar_spec(url), limits=Limits(max_shard_bytes=1000)))
    assert outline(items) == [(SHARD_KEY, "InputLimitError")]


def test_missing_shard_file_is_one_failure(tmp_path):
    items = list(read_shard(tar_spec(str(tmp_path / "gone.tar")), limits=LIMITS))
    assert outline(items) == [(SHARD_KEY, "ShardReadError")]
    assert "FileNotFoundError" in items[0].message


def member_offsets(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {info.name: info for info in tar.getmembers()}


@pytest.mark.parametrize(
    "where",
    ["inside k3 data", "at k3 header", "inside k3 header", "before end marker"],
)
def test_truncated_tar_yields_what_was_read_then_one_failure(tmp_path, where):
    data = tar_bytes(simple_entries(5))
    k3 = member_offsets(data)["k3.png"]
    last = member_offsets(data)["k4.json"]
    cut = {
        "inside k3 data": k3.offset_data + 10,
        "at k3 header": k3.offset,
        "inside k3 header": k3.offset + 100,
        "before end marker": last.offset_data + 512,
    }[where]
    url = write(tmp_path / "s.tar", data[:cut])
    items = list(read_shard(tar_spec(url), limits=LIMITS))
    expected_keys = (
        ["k0", "k1", "k2", "k3", "k4"] if where == "before end marker" else ["k0", "k1", "k2"]
    )
    assert outline(items) == [(k, "ok") for k in expected_keys] + [(SHARD_KEY, "ShardReadError")]
    assert "truncated or corrupt tar" in items[-1].message
    assert items[-1].source_uri == url


def test_truncated_gzip_tar(tmp_path):
    data = tar_bytes(simple_entries(20), "w:gz")
    url = write(tmp_path / "s.tar.gz", data[: len(data) // 2])
    items = list(read_shard(tar_spec(url), limits=LIMITS))
    assert outline(items)[-1] == (SHARD_KEY, "ShardReadError")
    keys = [item.key for item in items[:-1]]
    assert 0 < len(keys) < 20
    assert keys == [f"k{i}" for i in range(len(keys))]
    assert all(isinstance(item, ShardMember) for item in items[:-1])


def test_garbage_named_tar_is_one_failure(tmp_path):
    url = write(tmp_path / "s.tar", np.random.default_rng(5).bytes(3000))
    assert outline(list(read_shard(tar_spec(url), limits=LIMITS))) == [
        (SHARD_KEY, "ShardReadError")
    ]


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown shard kind"):
        read_shard(ShardSpec(name="x", kind="zip", urls=("x.zip",)), limits=LIMITS)


# ----------------------------------------------------------------------- parquet


def parquet_spec(url: str) -> ShardSpec:
    return ShardSpec(name="p.parquet", kind="parquet", urls=(url,))


def write_parquet(path: Path, table: pa.Table) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=50)
    return str(path)


def test_parquet_rows(tmp_path):
    keys = [f"r{i:03d}" for i in range(70)]
    images = [image_bytes(i % 3) for i in range(70)]
    metadata = [json.dumps({"i": i}) for i in range(70)]
    keys += ["nullimg", None, "r001", "jpg", "junk", "../up"]
    images += [None, image_bytes(0), image_bytes(1), image_bytes(9, "jpeg"), b"junk", b"x"]
    metadata += [None, None, None, "not json", None, None]
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "image": pa.array(images, pa.binary()),
            "metadata": pa.array(metadata, pa.string()),
            "style": pa.array(["ink"] * len(keys), pa.string()),
            "unused": pa.array(range(len(keys)), pa.int64()),
        }
    )
    url = write_parquet(tmp_path / "p.parquet", table)
    items = list(read_shard(parquet_spec(url), limits=LIMITS))
    assert outline(items) == [(k, "ok") for k in keys[:70]] + [
        ("nullimg", "MissingImageMember"),
        ("<row 71>", "MissingKey"),
        ("r001 (duplicate 2)", "DuplicateKey"),
        ("jpg", "ok"),
        ("junk", "ok"),
        ("../up", "UnsafeMemberError"),
    ]
    first = items[0]
    assert (first.data, first.ext, first.source_uri) == (images[0], ".png", url + "#r000")
    assert first.metadata == {"i": 0, "style": "ink"}
    assert (items[73].ext, items[73].metadata) == (".jpg", {"style": "ink"})
    assert items[74].ext == ""


def test_parquet_struct_metadata_and_custom_columns(tmp_path):
    table = pa.table(
        {
            "id": pa.array([7, 8], pa.int64()),
            "jpg": pa.array([image_bytes(1, "jpeg"), image_bytes(2, "webp")], pa.large_binary()),
            "metadata": pa.array([{"w": 1}, {"w": 2}]),
        }
    )
    url = write_parquet(tmp_path / "p.parquet", table)
    items = list(read_shard(parquet_spec(url), limits=LIMITS, key_column="id", image_column="jpg"))
    assert outline(items) == [("7", "ok"), ("8", "ok")]
    assert [(i.ext, i.metadata) for i in items] == [(".jpg", {"w": 1}), (".webp", {"w": 2})]


@pytest.mark.parametrize(
    ("columns", "found"),
    [
        ({"key": pa.array(["a"]), "image": pa.array(["not bytes"])}, "image (string)"),
        ({"name": pa.array(["a"]), "image": pa.array([b"x"])}, "name (string)"),
        ({"key": pa.array([[1]]), "image": pa.array([b"x"])}, "key (list<"),
    ],
)
def test_parquet_wrong_columns_is_one_failure_naming_them(tmp_path, columns, found):
    url = write_parquet(tmp_path / "p.parquet", pa.table(columns))
    items = list(read_shard(parquet_spec(url), limits=LIMITS))
    assert outline(items) == [(SHARD_KEY, "ShardReadError")]
    assert found in items[0].message and "columns found" in items[0].message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_parquet_is_one_failure(tmp_path, damage):
    table = pa.table({"key": ["a", "b"], "image": [image_bytes(0), image_bytes(1)]})
    good = tmp_path / "good.parquet"
    pq.write_table(table, good)
    data = good.read_bytes()
    bad = np.random.default_rng(3).bytes(500) if damage == "garbage" else data[: len(data) - 20]
    url = write(tmp_path / "bad.parquet", bad)
    assert outline(list(read_shard(parquet_spec(url), limits=LIMITS))) == [
        (SHARD_KEY, "ShardReadError")
    ]


def test_parquet_row_over_the_size_limit(tmp_path):
    big = image_bytes(1, size=64)
    url = write_parquet(tmp_path / "p.parquet", pa.table({"key": ["a", "b"], "image": [b"x", big]}))
    items = list(read_shard(parquet_spec(url), limits=Limits(max_file_bytes=100)))
    assert outline(items) == [("a", "ok"), ("b", "InputLimitError")]


# ------------------------------------------------------------- files and planning


def make_file_tree(root: Path) -> None:
    write(root / "a.png", image_bytes(0))
    write(root / "a.json", b'{"x": 1}')
    write(root / "d.PNG", image_bytes(1))
    write(root / "e.jpg", image_bytes(2, "jpeg"))
    write(root / "e.png", image_bytes(3))
    write(root / "sub" / "b.jpg", image_bytes(4, "jpeg"))
    write(root / "sub" / "b.json", b"[broken")
    write(root / "sub" / "deeper" / "c.webp", image_bytes(5, "webp"))
    write(root / "notes.txt", b"hello")
    write(root / "orphan.json", b"{}")


def test_plan_and_read_plain_files(tmp_path, caplog):
    root = tmp_path / "in"
    make_file_tree(root)
    with caplog.at_level(logging.WARNING):
        plan = plan_shards(str(root), files_per_shard=3)
    assert plan.root == str(root)
    assert plan.ignored == (str(root / "notes.txt"), str(root / "orphan.json"))
    assert "ignoring 2 input file(s)" in caplog.text
    assert [(s.name, s.kind, len(s.urls)) for s in plan.shards] == [
        ("files-00000", "files", 4),  # e.jpg and e.png share key "e": kept in one group
        ("files-00001", "files", 2),
    ]
    first, second = (list(read_shard(spec, limits=LIMITS)) for spec in plan.shards)
    assert outline(first) == [
        ("a", "ok"),
        ("d", "ok"),
        ("e", "ok"),
        ("e (duplicate 2)", "DuplicateKey"),
    ]
    assert outline(second) == [("sub/b", "ok"), ("sub/deeper/c", "ok")]
    a, d, e, _ = first
    assert (a.metadata, a.ext, a.source_uri, a.shard) == (
        {"x": 1},
        ".png",
        str(root / "a.png"),
        "files-00000",
    )
    assert (d.ext, e.ext, e.data) == (".png", ".jpg", image_bytes(2, "jpeg"))
    assert second[0].metadata == {} and "b.json" in caplog.text
    assert second[1].ext == ".webp"


def test_file_over_the_size_limit_and_vanished_file(tmp_path):
    root = tmp_path / "in"
    write(root / "big.png", image_bytes(0, size=64))
    write(root / "small.png", image_bytes(1))
    spec = plan_shards(str(root), files_per_shard=10).shards[0]
    (root / "small.png").unlink()
    items = list(read_shard(spec, limits=Limits(max_file_bytes=200)))
    assert outline(items) == [("big", "InputLimitError"), ("small", "FileNotFoundError")]


def test_plan_mixed_inputs_names_and_order(tmp_path):
    root = tmp_path / "in"
    write(root / "assets-00001.tar", tar_bytes(simple_entries(1)))
    write(root / "assets-00000.tar", tar_bytes(simple_entries(1)))
    write(root / "more" / "part.tar.gz", tar_bytes(simple_entries(1), "w:gz"))
    write(root / "sub" / "x.parquet", b"PAR1")
    write(root / "sub" / "y.tgz", b"")
    write(root / "img" / "p.png", image_bytes(0))
    plan = plan_shards(str(root), files_per_shard=256)
    assert [(s.name, s.kind) for s in plan.shards] == [
        ("assets-00000.tar", "tar"),
        ("assets-00001.tar", "tar"),
        ("more__part.tar.gz", "tar"),
        ("sub__x.parquet", "parquet"),
        ("sub__y.tgz", "tar"),
        ("files-00000", "files"),
    ]
    assert plan.shards[0].urls == (str(root / "assets-00000.tar"),)
    assert plan.ignored == ()
    again = plan_shards(str(root), files_per_shard=256)
    assert again == plan


def test_plan_globs_and_single_files(tmp_path, monkeypatch):
    root = tmp_path / "in"
    write(root / "a.tar", tar_bytes(simple_entries(1)))
    write(root / "sub" / "b.tar", tar_bytes(simple_entries(1)))
    write(root / "sub" / "c.png", image_bytes(0))
    names = lambda pattern: [s.name for s in plan_shards(pattern, 10).shards]  # noqa: E731
    assert names(str(root / "*.tar")) == ["a.tar"]
    assert names(str(root / "**" / "*.tar")) == ["a.tar", "sub__b.tar"]
    assert names(str(root / "sub" / "b.tar")) == ["b.tar"]
    assert names(str(root / "s*" / "*")) == ["sub__b.tar", "files-00000"]
    monkeypatch.chdir(tmp_path)
    plan = plan_shards("in/sub", 10)
    assert plan.root == str(root / "sub")
    assert plan.shards[1].urls == (str(root / "sub" / "c.png"),)
    assert list(read_shard(plan.shards[1], limits=LIMITS))[0].key == "c"


def test_plan_with_nothing_matching_raises(tmp_path):
    from stylefix_core.errors import ShardReadError

    with pytest.raises(ShardReadError, match="no input files match"):
        plan_shards(str(tmp_path / "nothing-*.tar"), 10)
    with pytest.raises(ValueError):
        plan_shards(str(tmp_path), 0)


def test_memory_urls(memory_root):
    in_root = memory_root + "/in"
    storage.write_bytes_atomic(in_root + "/assets-00000.tar", tar_bytes(simple_entries(3)))
    storage.write_bytes_atomic(in_root + "/imgs/p.png", image_bytes(0))
    storage.write_bytes_atomic(in_root + "/imgs/p.json", b'{"m": true}')
    plan = plan_shards(in_root, files_per_shard=10)
    assert [(s.name, s.kind) for s in plan.shards] == [
        ("assets-00000.tar", "tar"),
        ("files-00000", "files"),
    ]
    tar_items = list(read_shard(plan.shards[0], limits=LIMITS))
    assert outline(tar_items) == [("k0", "ok"), ("k1", "ok"), ("k2", "ok")]
    assert tar_items[0].source_uri.startswith("memory://") and tar_items[0].metadata == {"index": 0}
    (file_item,) = read_shard(plan.shards[1], limits=LIMITS)
    assert (file_item.key, file_item.metadata) == ("imgs/p", {"m": True})
    assert file_item.source_uri.startswith("memory://")


def test_every_item_of_a_shard_gets_its_own_key(tmp_path):
    entries = [
        ("../x.png", image_bytes(0)),
        ("../x.png", image_bytes(1)),
        (".png", image_bytes(2)),
        ("dir/.hidden.png", image_bytes(3)),
        ("a.png", image_bytes(4)),
        ("a.png", image_bytes(5)),
        ("a.json", b"{}"),
        (".notes", b"ignored: no key and not an image"),
        ("b.png", image_bytes(6)),
    ]
    url = write(tmp_path / "s.tar", tar_bytes(entries))
    items = list(read_shard(tar_spec(url), limits=LIMITS))
    assert outline(items) == [
        ("../x.png", "UnsafeMemberError"),
        ("../x.png (duplicate 2)", "UnsafeMemberError"),
        (".png", "MissingKey"),
        ("dir/.hidden.png", "MissingKey"),
        ("a", "ok"),
        ("a (duplicate 2)", "DuplicateKey"),
        ("b", "ok"),
    ]
    assert items[4].data == image_bytes(4)
    assert "no key" in items[2].message and "repeats" in items[5].message


def test_a_member_whose_key_a_failure_row_took_is_a_duplicate(tmp_path):
    entries = [("a.png", image_bytes(0)), ("c.png", b""), ("a.png", image_bytes(1))]
    entries += [("a (duplicate 2).png", image_bytes(2))]
    url = write(tmp_path / "s.tar", tar_bytes(entries))
    keys = [item.key for item in read_shard(tar_spec(url), limits=LIMITS)]
    assert keys == ["a", "c", "a (duplicate 2)", "a (duplicate 2) (duplicate 2)"]


def test_parquet_that_would_decompress_past_the_shard_limit_is_refused(tmp_path):
    bombs = [b"\x00" * 300_000 + bytes([i]) for i in range(4)]  # compress to almost nothing
    table = pa.table({"key": [f"k{i}" for i in range(4)], "image": bombs})
    url = str(tmp_path / "p.parquet")
    pq.write_table(table, url, compression="zstd")
    limits = Limits(max_shard_bytes=1_000_000)
    assert (tmp_path / "p.parquet").stat().st_size < 20_000  # so only the new check can refuse it
    items = list(read_shard(parquet_spec(url), limits=limits))
    assert outline(items) == [(SHARD_KEY, "InputLimitError")]
    assert "would decompress to" in items[0].message
    assert outline(list(read_shard(parquet_spec(url), limits=Limits()))) == [
        (f"k{i}", "ok") for i in range(4)
    ]
