"""The small sample catalog that ``make run`` processes, with its ground truth.

It exercises every input path of the job at once (two WebDataset tars, a
Parquet shard, loose files in nested folders, PNG and JPEG, mixed sizes, one
corrupt member) and records what is in it, so a run can be checked against the
truth: which images carry a deliberate anomaly (kind and severity) and which
one must end as an error row.

Every file is a pure function of the seed: tar headers carry fixed times and
owners, images are encoded with fixed settings, and file names depend only on
the layout, so rebuilding overwrites the same files with the same bytes.
Shards are written with tarfile/pyarrow/PIL directly, not with the job's own
I/O, so the catalog does not share bugs with the code it tests.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from stylefix_core.inject import inject
from stylefix_core.synthetic import make_asset

logger = logging.getLogger(__name__)

TRUTH_FILE = "truth.json"
TRUTH_VERSION = 1
TAR_SHARDS = ("assets-00000.tar", "assets-00001.tar")
PARQUET_SHARD = "assets-00002.parquet"
LOOSE_DIRS = ("loose", "loose/banners")
CORRUPT_SHARD = TAR_SHARDS[0]

# (where, how many images) in catalog order; 16 + 16 + 10 + 3 + 3 = 48 images.
_LAYOUT: tuple[tuple[str, int], ...] = (
    (TAR_SHARDS[0], 16),
    (TAR_SHARDS[1], 16),
    (PARQUET_SHARD, 10),
    (LOOSE_DIRS[0], 3),
    (LOOSE_DIRS[1], 3),
)
_SIZES: tuple[tuple[int, int], ...] = ((128, 128), (128, 160), (96, 128), (192, 192))  # (H, W)
_BANNER_SIZE = (64, 192)
# Seven kinds the models train on and the three held out: ten anomalous images.
ANOMALY_KINDS: tuple[str, ...] = (
    "colour_cast",
    "blur",
    "texture_loss",
    "noise",
    "jpeg_blocking",
    "checkerboard",
    "collapse",
    "hue_shift",
    "over_sharpen",
    "vignette_dark",
)
_SEVERITY_RANGE = (0.6, 1.0)
_ADJECTIVES = (
    "Amber",
    "Coastal",
    "Quiet",
    "Bold",
    "Velvet",
    "Paper",
    "Cedar",
    "Neon",
    "Linen",
    "Sunlit",
)
_NOUNS = ("Lantern", "Tote", "Poster", "Mug", "Cushion", "Badge", "Card", "Tile", "Scarf", "Print")


class Status(str, Enum):
    """What the truth says about one image."""

    CLEAN = "clean"
    ANOMALY = "anomaly"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class TruthEntry:
    """One image of the catalog and what was done to it.

    ``source`` is the file under the root that holds the image (a shard, or the
    loose file itself); ``member`` is the tar member name, the Parquet key, or
    the loose file's path relative to the root (the key plain-file readers use).
    """

    key: str
    index: int
    source: str
    member: str
    format: str  # "png" | "jpeg"
    height: int
    width: int
    status: Status
    kind: str | None = None
    severity: float | None = None

    @property
    def is_anomaly(self) -> bool:
        return self.status is Status.ANOMALY

    @property
    def is_corrupt(self) -> bool:
        return self.status is Status.CORRUPT


@dataclass(frozen=True)
class CatalogTruth:
    """The ground truth of one sample catalog (what ``truth.json`` holds)."""

    seed: int
    entries: tuple[TruthEntry, ...]

    def entry_for(self, key: str) -> TruthEntry:
        """Find an entry by asset key, tar member, or loose path (with or without extension).

        Readers name plain files by their path below the input root, and may or
        may not keep the extension; all of those spellings find the entry.
        """
        for entry in self.entries:
            names = {entry.key, entry.member, os.path.splitext(entry.member)[0]}
            if key in names:
                return entry
        raise KeyError(f"no image {key!r} in the sample catalog")

    @property
    def anomalous(self) -> tuple[TruthEntry, ...]:
        return tuple(e for e in self.entries if e.status is Status.ANOMALY)

    @property
    def corrupt(self) -> tuple[TruthEntry, ...]:
        return tuple(e for e in self.entries if e.status is Status.CORRUPT)

    @property
    def clean(self) -> tuple[TruthEntry, ...]:
        return tuple(e for e in self.entries if e.status is Status.CLEAN)

    def clean_image(self, key: str) -> np.ndarray:
        """Regenerate the undamaged asset behind ``key``, e.g. to score a correction."""
        entry = self.entry_for(key)
        return _clean_asset(self.seed, entry.index, entry.height, entry.width)

    def to_json(self) -> str:
        """Stable JSON (sorted keys, fixed indentation) so rebuilds are byte-identical."""
        images = [{**asdict(e), "status": e.status.value} for e in self.entries]
        doc = {"version": TRUTH_VERSION, "seed": self.seed, "images": images}
        return json.dumps(doc, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CatalogTruth:
        doc = json.loads(text)
        if doc.get("version") != TRUTH_VERSION:
            raise ValueError(f"unsupported truth.json version {doc.get('version')!r}")
        entries = tuple(
            TruthEntry(**{**img, "status": Status(img["status"])}) for img in doc["images"]
        )
        return cls(seed=int(doc["seed"]), entries=entries)


def load_truth(root: str | os.PathLike[str]) -> CatalogTruth:
    """Read ``truth.json`` from a catalog built by :func:`build_sample_catalog`."""
    return CatalogTruth.from_json((Path(root) / TRUTH_FILE).read_text(encoding="utf-8"))


def build_sample_catalog(root: str | os.PathLike[str], seed: int = 7) -> CatalogTruth:
    """Write the sample catalog under ``root`` (created if needed) and return its truth."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    root = Path(root)
    for folder in LOOSE_DIRS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    truth = CatalogTruth(seed=seed, entries=_plan(seed))
    payloads = {entry.key: _payload(seed, entry) for entry in truth.entries}
    titles = _titles(seed, len(truth.entries))
    for name in TAR_SHARDS:
        _write_tar(root / name, _tar_members(truth.entries, name, payloads, titles))
    _write_parquet(root / PARQUET_SHARD, truth.entries, payloads, titles)
    for entry in truth.entries:
        if entry.source.startswith(LOOSE_DIRS[0] + "/"):
            _write_atomic(root / entry.source, payloads[entry.key])
    _write_atomic(root / TRUTH_FILE, truth.to_json().encode("utf-8"))
    logger.info(
        "sample catalog: %d images (%d anomalous, %d corrupt) under %s",
        len(truth.entries),
        len(truth.anomalous),
        len(truth.corrupt),
        root,
    )
    return truth


# ----------------------------------------------------------------------------- planning


def _plan(seed: int) -> tuple[TruthEntry, ...]:
    """Decide every image's place, size, format and fate; no pixels yet."""
    rng = np.random.default_rng([seed, 0x5A17])
    slots = _slots()
    tar0_pngs = [
        i for i, (src, _, fmt) in enumerate(slots) if src == CORRUPT_SHARD and fmt == "png"
    ]
    corrupt = int(rng.choice(tar0_pngs))
    candidates = np.array([i for i in range(len(slots)) if i != corrupt])
    chosen = rng.permutation(candidates)[: len(ANOMALY_KINDS)]
    kinds = rng.permutation(len(ANOMALY_KINDS))
    fates: dict[int, tuple[str, float]] = {}
    for slot, kind_index in zip(chosen.tolist(), kinds.tolist(), strict=True):
        severity = round(float(rng.uniform(*_SEVERITY_RANGE)), 3)
        fates[slot] = (ANOMALY_KINDS[kind_index], severity)
    return tuple(_entry(i, slots[i], i == corrupt, fates.get(i)) for i in range(len(slots)))


def _slots() -> list[tuple[str, tuple[int, int], str]]:
    """(source, (height, width), format) per image index; a function of the layout only."""
    slots = []
    for source, count in _LAYOUT:
        for _ in range(count):
            index = len(slots)
            size = _BANNER_SIZE if source == LOOSE_DIRS[1] else _SIZES[index % len(_SIZES)]
            fmt = "jpeg" if index % 4 == 3 and source != PARQUET_SHARD else "png"
            slots.append((source, size, fmt))
    return slots


def _entry(
    index: int,
    slot: tuple[str, tuple[int, int], str],
    corrupt: bool,
    fate: tuple[str, float] | None,
) -> TruthEntry:
    source, (height, width), fmt = slot
    key = f"asset-{index:06d}"
    filename = key + (".jpg" if fmt == "jpeg" else ".png")
    if source in LOOSE_DIRS:
        source = member = f"{source}/{filename}"
    else:
        member = key if source == PARQUET_SHARD else filename
    status = Status.CORRUPT if corrupt else Status.ANOMALY if fate else Status.CLEAN
    kind, severity = fate if fate else (None, None)
    return TruthEntry(key, index, source, member, fmt, height, width, status, kind, severity)


def _titles(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng([seed, 0x717])
    adjectives = rng.integers(len(_ADJECTIVES), size=n)
    nouns = rng.integers(len(_NOUNS), size=n)
    return [f"{_ADJECTIVES[a]} {_NOUNS[b]}" for a, b in zip(adjectives, nouns, strict=True)]


# ----------------------------------------------------------------------------- pixels and bytes


def _clean_asset(seed: int, index: int, height: int, width: int) -> np.ndarray:
    return make_asset(np.random.default_rng([seed, index]), height, width)


def _payload(seed: int, entry: TruthEntry) -> bytes:
    """The encoded file for one entry: clean, damaged, or a truncated PNG."""
    pixels = _clean_asset(seed, entry.index, entry.height, entry.width)
    if entry.kind is not None and entry.severity is not None:
        pixels = _damage(pixels, entry.kind, entry.severity, seed * 1000 + entry.index)
    data = _encode(pixels, entry.format)
    if entry.is_corrupt:
        return data[: len(data) * 3 // 5]  # header and part of the IDAT, no IEND
    return data


def _damage(pixels: np.ndarray, kind: str, severity: float, seed: int) -> np.ndarray:
    x = torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32) / 255.0
    y = inject(x, kind, severity, seed=seed)
    return (y * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    """PNG or JPEG with fixed settings and no metadata, so bytes are reproducible."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=6, optimize=False)
    else:
        image.save(buffer, format="JPEG", quality=95, subsampling=0, optimize=False)
    return buffer.getvalue()


def _metadata(entry: TruthEntry, title: str) -> str:
    doc = {"asset_id": entry.key, "title": title, "width": entry.width, "height": entry.height}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------- writers


def _tar_members(
    entries: Sequence[TruthEntry], shard: str, payloads: dict[str, bytes], titles: Sequence[str]
) -> list[tuple[str, bytes]]:
    """WebDataset grouping: ``KEY.json`` then the image, keys in order."""
    members = []
    for entry in entries:
        if entry.source == shard:
            members.append((f"{entry.key}.json", _metadata(entry, titles[entry.index]).encode()))
            members.append((entry.member, payloads[entry.key]))
    return members


def _write_tar(path: Path, members: Sequence[tuple[str, bytes]]) -> None:
    """A plain (uncompressed) USTAR tar whose headers carry no time or owner."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    _write_atomic(path, buffer.getvalue())


def _write_parquet(
    path: Path, entries: Sequence[TruthEntry], payloads: dict[str, bytes], titles: Sequence[str]
) -> None:
    rows = [e for e in entries if e.source == PARQUET_SHARD]
    table = pa.table(
        {
            "key": pa.array([e.key for e in rows], pa.string()),
            "image": pa.array([payloads[e.key] for e in rows], pa.binary()),
            "metadata": pa.array([_metadata(e, titles[e.index]) for e in rows], pa.string()),
        }
    )
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="snappy", use_dictionary=False)
    _write_atomic(path, buffer.getvalue().to_pybytes())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary name so a reader never sees half a shard."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stylefix_core.sample_catalog OUT_DIR [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the catalog into (created if needed)")
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of every random choice (default 7)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    truth = build_sample_catalog(args.out_dir, seed=args.seed)
    sys.stdout.write(
        f"wrote {len(truth.entries)} images ({len(truth.anomalous)} anomalous, "
        f"{len(truth.corrupt)} corrupt) to {Path(args.out_dir).resolve()}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
