"""Conservation: whatever mix of good and bad inputs, one row per input item, unique keys.

Hypothesis draws a mix of good images and bad items (empty, truncated, text,
bombs, duplicates, and for tar shards unsafe names, links, keyless and
image-less members) spread over two tar shards, a Parquet shard and loose
files. Many examples go through the core path every runner shares (plan,
read, decode, engine); a few go through the whole Beam job.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import bad_inputs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines.main import run
from stylefix_core.bundle import load_bundle
from stylefix_core.config import BatchConfig, Limits, Mode
from stylefix_core.engine import Engine, ImageResult
from stylefix_core.errors import StyleFixError
from stylefix_core.io.shards import plan_shards, read_shard
from stylefix_core.members import decode_member
from stylefix_core.records import ReadFailure

CONTAINERS = ("a.tar", "b.tar", "rows.parquet", "loose")
GOOD = ("png", "jpeg", "webp", "animated-gif", "rgba", "gray16", "1x1", "1x40")
BAD = ("empty", "cut-png", "cut-jpeg", "text", "bomb")
TAR_ONLY = ("unsafe-name", "symlink", "keyless", "no-image")
LIMITS = Limits()


@dataclass(frozen=True)
class Item:
    """One drawn input item: where it goes, what it is, and the key it is written under."""

    container: str
    kind: str
    key: str
    seed: int

    @property
    def good(self) -> bool:
        """Only a good original reports; a duplicate is always an error row."""
        return self.kind in GOOD

    @property
    def content(self) -> str:
        """The kind of bytes (a duplicate repeats its original's)."""
        return self.kind.removeprefix("duplicate:")


def _content(kind: str, seed: int) -> bytes:
    png = bad_inputs.rgb(seed, 12, 10)
    jpeg = bad_inputs.rgb(seed, 12, 10, "JPEG")
    makers = {
        "png": lambda: png,
        "jpeg": lambda: jpeg,
        "webp": lambda: bad_inputs.rgb(seed, 12, 10, "WEBP"),
        "animated-gif": lambda: bad_inputs.animated("GIF", 12, 10),
        "rgba": lambda: bad_inputs.mode_image("RGBA", 12, 10),
        "gray16": lambda: bad_inputs.mode_image("I;16", 12, 10),
        "1x1": lambda: bad_inputs.rgb(seed, 1, 1),
        "1x40": lambda: bad_inputs.rgb(seed, 1, 40),
        "empty": lambda: b"",
        "cut-png": lambda: png[: len(png) // 2],
        "cut-jpeg": lambda: jpeg[: len(jpeg) // 2],
        "text": lambda: b"a list of things, not an image",
        "bomb": lambda: bad_inputs.png_by_hand(100_000, 100_000, 8, 2, b"\x00" * 32),
    }
    return makers[kind]()


@st.composite
def mixes(draw, max_items: int = 12) -> list[Item]:
    """Items spread over the containers; a "duplicate" repeats an earlier item's key."""
    items: list[Item] = []
    for index in range(draw(st.integers(1, max_items))):
        container = draw(st.sampled_from(CONTAINERS))
        earlier = [item for item in items if item.container == container]
        if container == "loose":  # one duplicate per loose file: see write_inputs
            taken = {item.key for item in earlier if item.kind.startswith("duplicate:")}
            earlier = [item for item in earlier if item.key not in taken]
        if earlier and draw(st.integers(0, 5)) == 0:
            original = draw(st.sampled_from(earlier))
            items.append(
                Item(container, "duplicate:" + original.content, original.key, original.seed)
            )
            continue
        kinds = GOOD + BAD + (TAR_ONLY if container.endswith(".tar") else ())
        items.append(
            Item(container, draw(st.sampled_from(kinds)), f"k{index}", draw(st.integers(0, 999)))
        )
    return items


def _tar_member(item: Item) -> tuple[str, bytes] | tarfile.TarInfo:
    kind = item.content
    if kind == "unsafe-name":
        return (f"../{item.key}.png", _content("png", item.seed))
    if kind == "symlink":
        return bad_inputs.link(f"{item.key}.png", tarfile.SYMTYPE, "/etc/passwd")
    if kind == "keyless":
        return (f"{item.key}/.png", _content("png", item.seed))
    if kind == "no-image":
        return (f"{item.key}.json", b"{}")
    return (f"{item.key}.png", _content(kind, item.seed))


def write_inputs(root: Path, items: list[Item]) -> None:
    """Each container of the mix as a shard (or folder) under ``root``."""
    for name in ("a.tar", "b.tar"):
        members = [_tar_member(item) for item in items if item.container == name]
        if members:
            bad_inputs.tar_file(root / name, members)
    rows = [item for item in items if item.container == "rows.parquet"]
    if rows:
        table = pa.table(
            {
                "key": pa.array([item.key for item in rows], pa.string()),
                "image": pa.array(
                    [_content(item.content, item.seed) for item in rows],
                    pa.binary(),
                ),
            }
        )
        pq.write_table(table, root / "rows.parquet")
    for item in items:
        if item.container == "loose":
            # A duplicate is the same bytes under an upper-case extension: it sorts
            # first, so either file of the pair may be the one processed.
            ext = ".PNG" if item.kind.startswith("duplicate:") else ".png"
            path = root / "loose" / (item.key + ext)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_content(item.content, item.seed))


def expected_counts(items: list[Item]) -> Counter:
    """Rows per container and outcome: every item is one row; only good originals report."""
    counts: Counter = Counter()
    for item in items:
        outcome = "report" if item.good else "error"
        counts[(_shard_of(item.container), outcome)] += 1
    return counts


def _shard_of(container: str) -> str:
    return "files-00000" if container == "loose" else container


def check(rows: list[tuple[str, str, str]], items: list[Item]) -> None:
    """The conservation law: the rows are the items, one each, under unique keys."""
    keys = [(shard, key) for shard, key, _ in rows]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    got = Counter((shard, outcome) for shard, _, outcome in rows)
    assert got == expected_counts(items), [(i.container, i.kind, i.key) for i in items]


# ---------------------------------------------------------------- core path

# One explicit example holds every kind in every container it fits, plus
# duplicates of a good and a bad item, so each kind is tried on every run.
EVERY_KIND = [
    Item(container, kind, f"e{index}-{n}", index)
    for n, container in enumerate(CONTAINERS)
    for index, kind in enumerate(GOOD + BAD + (TAR_ONLY if container.endswith(".tar") else ()))
]
EVERY_KIND += [
    Item(item.container, "duplicate:" + item.kind, item.key, item.seed)
    for item in EVERY_KIND
    if item.kind in ("png", "empty", "symlink", "no-image")
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_bundle(""), Mode.STYLE, torch.device("cpu"), BatchConfig())


def core_rows(root: Path, engine: Engine) -> list[tuple[str, str, str]]:
    """(shard, key, "report" | "error") from plan, read, decode and the engine."""
    rows, decoded = [], []
    for spec in plan_shards(str(root), files_per_shard=256).shards:
        for item in read_shard(spec, limits=LIMITS):
            if isinstance(item, ReadFailure):
                rows.append((item.shard, item.key, "error"))
                continue
            try:
                decoded.append(decode_member(item, LIMITS))
            except StyleFixError:
                rows.append((item.shard, item.key, "error"))
    outcomes = engine.process([image.pixels for image in decoded])
    for image, outcome in zip(decoded, outcomes, strict=True):
        kind = "report" if isinstance(outcome, ImageResult) else "error"
        rows.append((image.member.shard, image.member.key, kind))
    return rows


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(items=mixes())
@example(items=EVERY_KIND)
def test_core_path_conserves_items(engine, items):
    with tempfile.TemporaryDirectory() as folder:
        write_inputs(Path(folder), items)
        check(core_rows(Path(folder), engine), items)


# ------------------------------------------------------------ the Beam job


def job_rows(output: Path) -> list[tuple[str, str, str]]:
    rows = []
    for folder, outcome in (("report", "report"), ("errors", "error")):
        for part in sorted((output / folder).glob("part-*.parquet")):
            table = pq.read_table(part, columns=["shard", "key"])
            rows += [(s, k, outcome) for s, k in zip(*table.to_pydict().values(), strict=True)]
    return rows


@pytest.mark.slow
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(items=mixes(max_items=10))
def test_the_beam_job_conserves_items(items):
    with tempfile.TemporaryDirectory() as folder:
        root, output = Path(folder) / "in", Path(folder) / "out"
        root.mkdir()
        write_inputs(root, items)
        summary = run([f"--input={root}", f"--output={output}", "--runner=FnApiRunner"])
        rows = job_rows(output)
        check(rows, items)
        assert summary.images == len(items) == len(rows)
