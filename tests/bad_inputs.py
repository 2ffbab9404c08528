"""Hostile and unusual inputs, generated at test time, with what the job must make of each.

:func:`build_catalog` writes one input folder that holds every kind of bad
input the job is expected to survive (tar shards with escaping names, links
and bombs, damaged and odd-format images, broken Parquet, loose files) and
returns one :class:`Expect` per input item: the (shard, key) of the row the job
must write for it, and whether that is a report row or an error row with a
given stage, error type and message. Nothing is checked in; everything comes
from a seed.

Limits the catalog is built for are in :data:`LIMIT_OPTIONS`: small enough
that a shard, a file and an image each cross one, so that one job run covers
every limit as well.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

MAX_PIXELS = 1_000_000
MAX_FILE_BYTES = 1_000_000
MAX_SHARD_BYTES = 3_000_000
LIMIT_OPTIONS = (
    f"--max_pixels={MAX_PIXELS}",
    f"--max_file_bytes={MAX_FILE_BYTES}",
    f"--max_shard_bytes={MAX_SHARD_BYTES}",
)
SHARD_KEY = "<shard>"


@dataclass(frozen=True)
class Expect:
    """One input item and the one row the job must write for it.

    ``stage`` empty means a report row; otherwise an error row whose
    ``error_type`` is as given and whose message contains ``message``.
    ``size`` (width, height), where given, is what the report row must say.
    """

    kind: str
    shard: str
    key: str
    stage: str = ""
    error_type: str = ""
    message: str = ""
    size: tuple[int, int] | None = None

    @property
    def is_report(self) -> bool:
        return not self.stage


@dataclass
class Catalog:
    """The input folder, the places hostile names aim at, and the expectations."""

    root: Path
    escape_targets: list[Path] = field(default_factory=list)
    expected: list[Expect] = field(default_factory=list)

    def by_row(self) -> dict[tuple[str, str], Expect]:
        return {(e.shard, e.key): e for e in self.expected}


# ------------------------------------------------------------------ image bytes


def pixels(seed: int, width: int, height: int) -> np.ndarray:
    """A smooth gradient with some noise: content the models treat as an image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // max(width, 1), yy * 255 // max(height, 1), (xx + yy) % 256], 2)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rgb(seed: int, width: int = 24, height: int = 20, fmt: str = "PNG") -> bytes:
    return save(Image.fromarray(pixels(seed, width, height)), fmt)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_by_hand(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk, for what Pillow will not write (bombs, 16-bit RGB)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_rgb16(width: int, height: int) -> bytes:
    values = (pixels(5, width, height).astype(">u2") * 257).reshape(height, width * 3)
    rows = b"".join(b"\x00" + row.tobytes() for row in values)
    return png_by_hand(width, height, 16, 2, rows)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A valid small JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(rgb(6, 16, 16, "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A valid small GIF whose logical screen claims ``width`` x ``height``."""
    data = bytearray(save(Image.fromarray(pixels(7, 8, 8)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def exif_rotated_jpeg(width: int, height: int) -> bytes:
    """Stored ``width`` x ``height``, tagged "rotate 90 clockwise to view" (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(Image.fromarray(pixels(8, width, height)), "JPEG", exif=exif.tobytes())


def animated(fmt: str, width: int = 20, height: int = 16) -> bytes:
    frames = [Image.fromarray(pixels(seed, width, height)) for seed in (9, 10, 11)]
    return save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)


def mode_image(mode: str, width: int = 22, height: int = 18) -> bytes:
    """A PNG (TIFF for CMYK-less modes it cannot hold) in Pillow mode ``mode``."""
    base = Image.fromarray(pixels(12, width, height))
    if mode == "LA":
        image = Image.merge("LA", (base.convert("L"), base.convert("L").point(lambda v: v // 2)))
    elif mode == "RGBA":
        alpha = Image.fromarray(np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1)))
        image = Image.merge("RGBA", (*base.split(), alpha))
    elif mode == "I;16":
        image = Image.fromarray(pixels(13, width, height)[:, :, 0].astype(np.uint16) * 257)
    else:
        image = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    return save(image, fmt, **({"transparency": 0} if mode == "P" else {}))


# ----------------------------------------------------------------------- shards


def tar_file(path: Path, members: list[tuple[str, bytes] | tarfile.TarInfo]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


class _Shard:
    """Members of one shard and the expectation for each, side by side."""

    def __init__(self, catalog: Catalog, name: str):
        self.catalog = catalog
        self.name = name
        self.members: list[tuple[str, bytes] | tarfile.TarInfo] = []

    def ok(self, member, kind: str, key: str, size: tuple[int, int] | None = None) -> None:
        """``member`` must end as a report row under ``key``."""
        self._add(member, Expect(kind, self.name, key, size=size))

    def error(self, member, kind: str, key: str, stage: str, error_type: str, message: str):
        """``member`` must end as one error row under ``key``."""
        self._add(member, Expect(kind, self.name, key, stage, error_type, message))

    def _add(self, member, expect: Expect) -> None:
        if member is not None:
            self.members.append(member)
        self.catalog.expected.append(expect)


def _hostile_tar(catalog: Catalog, token: str) -> None:
    """Names that would escape, links, duplicates, keys that cannot be file names."""
    shard = _Shard(catalog, "hostile.tar")
    up = f"../../escape-{token}.png"
    absolute = str(catalog.root.parent / f"abs-{token}.png")
    catalog.escape_targets += [catalog.root.parent / f"escape-{token}.png", Path(absolute)]
    shard.ok(("fine.png", rgb(1)), "control: a plain PNG", "fine", (24, 20))
    unsafe = ("read", "UnsafeMemberError")
    shard.error((up, rgb(2)), "member name climbing out with ../", up, *unsafe, "unsafe member")
    shard.error((absolute, rgb(3)), "absolute member name", absolute, *unsafe, "unsafe member")
    symlink = link("sym.png", tarfile.SYMTYPE, "/etc/passwd")
    shard.error(symlink, "symbolic link member", "sym", *unsafe, "symbolic link")
    hardlink = link("hard.png", tarfile.LNKTYPE, "fine.png")
    shard.error(hardlink, "hard link member", "hard", *unsafe, "hard link")
    shard.ok(("dup.png", rgb(4)), "duplicate key, first occurrence", "dup", (24, 20))
    shard.ok(("between.png", rgb(5)), "control between the duplicates", "between")
    duplicate = ("read", "DuplicateKey")
    later = "duplicate key, later occurrence"
    shard.error(("dup.jpg", rgb(6, fmt="JPEG")), later, "dup (duplicate 2)", *duplicate, "again")
    shard.ok(("same.png", rgb(7)), "member name repeated, first", "same")
    repeated = "member name repeated, second"
    shard.error(("same.png", rgb(8)), repeated, "same (duplicate 2)", *duplicate, "repeats")
    shard.error(
        (".png", rgb(9)), "image member without a key", ".png", "read", "MissingKey", "no key"
    )
    no_image = ("read", "MissingImageMember", "no image member")
    shard.error(("only.json", b"{}"), "key with metadata but no image", "only", *no_image)
    control = ("read", "UnsafeMemberError", "not a safe relative name")
    shard.error(("new\nline.png", rgb(10)), "control character in a key", "new\nline", *control)
    long_key = "l" * 300
    too_long = ("write", "OutputWriteError", "could not write")
    shard.error((long_key + ".png", rgb(11)), "key too long for a file name", long_key, *too_long)
    _hostile_metadata(shard)
    tar_file(catalog.root / shard.name, shard.members)


def _hostile_metadata(shard: _Shard) -> None:
    """Metadata a JSON parser chokes on, and a style no Parquet file can hold."""
    deep = b"[" * 100_000 + b"]" * 100_000
    shard.members.append(("deep.json", deep))
    shard.ok(("deep.png", rgb(12)), "metadata nested 100000 arrays deep (ignored)", "deep")
    shard.ok(("after-deep.png", rgb(13)), "control after the deep metadata", "after-deep")
    shard.members.append(("surrogate.json", b'{"style": "\\ud800"}'))
    route = ("route", "RouteError", "no bundle")
    lone = "style named by a lone UTF-16 surrogate"
    shard.error(("surrogate.png", rgb(14)), lone, "surrogate", *route)


def _formats_tar(catalog: Catalog) -> None:
    """Every colour mode, depth, orientation and shape that must simply work."""
    shard = _Shard(catalog, "formats.tar")
    for mode, kind in (
        ("I;16", "16-bit grayscale PNG"),
        ("CMYK", "CMYK JPEG"),
        ("P", "palette PNG with a transparent index"),
        ("L", "8-bit grayscale PNG"),
        ("LA", "grayscale + alpha PNG"),
        ("RGBA", "RGBA PNG (alpha)"),
        ("1", "bilevel PNG"),
    ):
        name = "m-" + mode.replace(";", "")
        ext = ".jpg" if mode == "CMYK" else ".png"
        shard.ok((name + ext, mode_image(mode)), kind, name, (22, 18))
    shard.ok(("rgb16.png", png_rgb16(20, 14)), "16-bit RGB PNG", "rgb16", (20, 14))
    shard.ok(("rotated.jpg", exif_rotated_jpeg(40, 24)), "EXIF-rotated JPEG", "rotated", (24, 40))
    shard.ok(("anim-gif.gif", animated("GIF")), "animated GIF", "anim-gif", (20, 16))
    shard.ok(("anim-webp.webp", animated("WEBP")), "animated WebP", "anim-webp", (20, 16))
    for name, (width, height) in {"dot": (1, 1), "wide": (2000, 1), "tall": (1, 2000)}.items():
        kind = f"{width}x{height} image"
        shard.ok((name + ".png", rgb(20, width, height)), kind, name, (width, height))
    shard.ok(("sliver.jpg", rgb(21, 3, 900, "JPEG")), "3x900 JPEG", "sliver", (3, 900))
    for fmt, ext in (("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")):
        shard.ok((f"f-{fmt}{ext}", rgb(22, fmt=fmt)), f"{fmt} image", f"f-{fmt}", (24, 20))
    tar_file(catalog.root / shard.name, shard.members)


def _damaged_tar(catalog: Catalog) -> None:
    """Bytes that are not (acceptable) images, under image names."""
    shard = _Shard(catalog, "damaged.tar")
    png, jpeg = rgb(30, 64, 48), rgb(31, 64, 48, "JPEG")
    decode = ("decode", "DecodeError")
    shard.error(("empty.png", b""), "zero-byte image", "empty", *decode, "empty input")
    shard.error(
        ("cut-png.png", png[: len(png) // 2]), "truncated PNG", "cut-png", *decode, "truncated PNG"
    )
    shard.error(
        ("cut-jpg.jpg", jpeg[: len(jpeg) // 2]),
        "truncated JPEG",
        "cut-jpg",
        *decode,
        "truncated JPEG",
    )
    text = b"this is a shopping list, not an image\n"
    shard.error(
        ("text.png", text), "text bytes named .png", "text", *decode, "not a supported image"
    )
    shard.error(
        ("text-jpg.jpg", text),
        "text bytes named .jpg",
        "text-jpg",
        *decode,
        "not a supported image",
    )
    limit = ("decode", "InputLimitError")
    bomb = png_by_hand(100_000, 100_000, 8, 2, b"\x00" * 64)
    shard.error(
        ("bomb-png.png", bomb), "PNG declaring 100000x100000", "bomb-png", *limit, "100000x100000"
    )
    shard.error(
        ("bomb-jpg.jpg", jpeg_declaring(60_000, 60_000)),
        "JPEG declaring 60000x60000",
        "bomb-jpg",
        *limit,
        "60000x60000",
    )
    shard.error(
        ("bomb-gif.gif", gif_declaring(65_535, 65_535)),
        "GIF declaring 65535x65535",
        "bomb-gif",
        *limit,
        "65535x65535",
    )
    large = save(Image.new("RGB", (1001, 1000)), "PNG")
    shard.error(("large.png", large), "image above --max_pixels", "large", *limit, "1001x1000")
    heavy = np.random.default_rng(32).bytes(MAX_FILE_BYTES + 1000)
    shard.error(
        ("heavy.png", heavy),
        "member above --max_file_bytes",
        "heavy",
        "read",
        "InputLimitError",
        "above the limit",
    )
    shard.ok(("fine.png", rgb(33)), "control: a plain PNG", "fine")
    tar_file(catalog.root / shard.name, shard.members)


def _truncated_tar(catalog: Catalog) -> None:
    """A tar cut inside its fourth member: what was read whole, then one shard row."""
    shard = _Shard(catalog, "truncated.tar")
    members = [(f"t{i}.png", rgb(40 + i)) for i in range(5)]
    for i in range(3):
        shard.ok(None, "member before the cut of a truncated tar", f"t{i}")
    message = "truncated or corrupt tar"
    shard.error(None, "tar shard cut short", SHARD_KEY, "read", "ShardReadError", message)
    path = catalog.root / shard.name
    data = tar_file(path, members)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        cut = tar.getmember("t3.png").offset_data + 10
    path.write_bytes(data[:cut])


def _oversized_tar(catalog: Catalog) -> None:
    shard = _Shard(catalog, "oversized.tar")
    rng = np.random.default_rng(50)
    members = [(f"o{i}.png", rng.bytes(MAX_SHARD_BYTES // 3)) for i in range(4)]
    tar_file(catalog.root / shard.name, members)
    limit = ("read", "InputLimitError", f"above the limit of {MAX_SHARD_BYTES}")
    shard.error(None, "shard above --max_shard_bytes", SHARD_KEY, *limit)


def _parquet_shards(catalog: Catalog) -> None:
    corrupt = _Shard(catalog, "corrupt.parquet")
    (catalog.root / corrupt.name).write_bytes(b"PAR1" + np.random.default_rng(60).bytes(900))
    unusable = ("read", "ShardReadError")
    corrupt.error(None, "corrupt Parquet shard", SHARD_KEY, *unusable, "unreadable parquet")
    typed = _Shard(catalog, "wrong-types.parquet")
    table = pa.table({"key": pa.array([[1], [2]]), "image": pa.array(["a", "b"])})
    pq.write_table(table, catalog.root / typed.name)
    typed.error(None, "Parquet with wrong column types", SHARD_KEY, *unusable, "columns found")
    _parquet_cells(catalog)


def _parquet_cells(catalog: Catalog) -> None:
    """A readable Parquet shard whose cells are bad one by one."""
    shard = _Shard(catalog, "cells.parquet")
    # (key cell, image cell, key of the row, kind, expectation: a size or an error)
    rows = [
        ("p-ok", rgb(61), "p-ok", "Parquet row", (24, 20)),
        (None, rgb(62), "<row 1>", "Parquet row without a key", ("read", "MissingKey", "no key")),
        (
            "p-ok",
            rgb(63),
            "p-ok (duplicate 2)",
            "Parquet duplicate key",
            ("read", "DuplicateKey", "appears again"),
        ),
        (
            "../p-up",
            rgb(64),
            "../p-up",
            "Parquet key climbing out",
            ("read", "UnsafeMemberError", "unsafe key"),
        ),
        (
            "p-null",
            None,
            "p-null",
            "Parquet row without image bytes",
            ("read", "MissingImageMember", "no image"),
        ),
        (
            "p-text",
            b"not an image",
            "p-text",
            "Parquet cell of text bytes",
            ("decode", "DecodeError", "not a supported image"),
        ),
        (
            "p-rotated",
            exif_rotated_jpeg(30, 10),
            "p-rotated",
            "Parquet EXIF-rotated JPEG",
            (10, 30),
        ),
        ("p-listed", rgb(65), "p-listed", "Parquet metadata cell of numbers (ignored)", (24, 20)),
        ("p-after", rgb(66), "p-after", "Parquet row after the numbers", (24, 20)),
    ]
    for _, _, key, kind, expect in rows:
        if isinstance(expect[0], int):
            shard.ok(None, kind, key, expect)
        else:
            shard.error(None, kind, key, *expect)
    keys = pa.array([row[0] for row in rows], pa.string())
    images = pa.array([row[1] for row in rows], pa.binary())
    # a metadata column of lists of numbers: neither JSON text, a struct nor a map
    listed = [[1, 2] if row[0] == "p-listed" else None for row in rows]
    metadata = pa.array(listed, pa.list_(pa.int64()))
    table = pa.table({"key": keys, "image": images, "metadata": metadata})
    pq.write_table(table, catalog.root / shard.name)


def _loose_files(catalog: Catalog) -> None:
    """Plain files under the input root: one ``files-00000`` shard, keys are paths."""
    shard = _Shard(catalog, "files-00000")
    folder = catalog.root / "loose"
    folder.mkdir(parents=True)
    png = rgb(70, 40, 30)
    decode = ("decode", "DecodeError")
    files = {
        "cut.png": (png[:-30], ("loose/cut", *decode, "truncated PNG")),
        "empty.png": (b"", ("loose/empty", *decode, "empty input")),
        "heavy.png": (
            np.random.default_rng(71).bytes(MAX_FILE_BYTES + 1),
            ("loose/heavy", "read", "InputLimitError", "above the limit"),
        ),
        "notes.jpg": (b"meeting notes\n", ("loose/notes", *decode, "not a supported image")),
        "ok.png": (png, None),
        "ok.webp": (
            rgb(72, fmt="WEBP"),
            ("loose/ok (duplicate 2)", "read", "DuplicateKey", "another file"),
        ),
    }
    for name, (data, expect) in files.items():
        (folder / name).write_bytes(data)
        kind = f"loose file {name}"
        if expect is None:
            shard.ok(None, kind, "loose/" + name.rsplit(".", 1)[0], (40, 30))
        else:
            shard.error(None, kind, *expect)
    (folder / "README.txt").write_text("not an image: ignored, counted in the run manifest\n")
    latin1 = os.fsdecode(b"caf\xe9")  # a Latin-1 file name: its byte is not UTF-8
    (folder / f"{latin1}.png").write_bytes(png)
    unsafe = ("read", "UnsafeMemberError", "is not UTF-8")
    shard.error(None, "loose file named in Latin-1 bytes", "loose/caf\\udce9", *unsafe)


def build_catalog(root: Path, token: str) -> Catalog:
    """Write every bad input under ``root`` (a new folder); ``token`` marks escape targets."""
    root.mkdir(parents=True)
    catalog = Catalog(root)
    for build in (_hostile_tar, _formats_tar, _damaged_tar, _truncated_tar, _oversized_tar):
        build(catalog, token) if build is _hostile_tar else build(catalog)
    _parquet_shards(catalog)
    _loose_files(catalog)
    return catalog
