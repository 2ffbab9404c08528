"""The one typed configuration that every stage reads.

Beam pipeline options, the CLI and tests all build a :class:`JobConfig`; core
code never reads globals or environment variables for its settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import Enum

# zlib level of written PNGs. Measured on 256 and 512 px photographs and styled
# outputs: level 4 takes about half the time of zlib's usual 6 (8 vs 15 ms at
# 256 px, 33 vs 62 ms at 512 px) for files within 1 % of the size; level 1 is
# faster again (5.5 ms) but files grow by 14 %.
PNG_LEVEL = 4


class Mode(str, Enum):
    """What the job does to each image."""

    STYLE = "style"  # style, score, correct
    QA = "qa"  # score and correct images that are already styled


OUTPUT_FORMATS = ("png", "jpeg", "webp")
DEVICES = ("auto", "cpu", "cuda")


# The networks look at no side shorter than this: the discriminator scales a
# shorter one up to it. A 1 x 250,000 strip costs them what 32 x 250,000 does.
MODEL_MIN_SIDE = 32


def working_pixels(height: int, width: int) -> int:
    """The pixels the networks work on for an image: each side at least MODEL_MIN_SIDE."""
    return max(height, MODEL_MIN_SIDE) * max(width, MODEL_MIN_SIDE)


@dataclass(frozen=True)
class Limits:
    """Safety limits on untrusted input; each violation is one error row."""

    # ``working_pixels``: width * height, each side counted as at least
    # MODEL_MIN_SIDE. The networks need about 0.55 GB of CPU memory per
    # megapixel (measured), so 16 Mpx (4096 x 4096) keeps one image under ~9 GB;
    # counted as decoded, a 1 x 16M strip would have needed some 75 GB.
    max_pixels: int = 4096 * 4096
    max_file_bytes: int = 64 * 1024 * 1024  # one member
    max_shard_bytes: int = 8 * 1024 * 1024 * 1024  # one shard file


@dataclass(frozen=True)
class BatchConfig:
    """How images are grouped for one model call.

    Batches are bounded both by count and by pixels, so a batch of large images
    does not take more memory than a batch of thumbnails.
    """

    max_batch_size: int = 8
    max_batch_pixels: int = 8 * 512 * 512
    # On a GPU, batches are also cut to fit this share of its memory (measured
    # per pixel when the models load); with N worker processes per GPU, 1/N at most.
    gpu_memory_share: float = 0.8


@dataclass(frozen=True)
class JobConfig:
    """Everything one StyleFix run needs to know."""

    input: str
    output: str
    bundle: str = ""  # empty: the default bundle shipped with the package
    # More styles in the same job: style name -> bundle URL (the default
    # style is the one --bundle's manifest names), and (key pattern, style)
    # rules tried in order for images whose metadata names no style.
    bundles: dict[str, str] = field(default_factory=dict)
    style_rules: tuple[tuple[str, str], ...] = ()
    max_models_per_worker: int = 4  # bundles resident per worker process, LRU evicted
    mode: Mode = Mode.STYLE
    output_format: str = "png"
    png_compress_level: int = PNG_LEVEL  # zlib level, 0-9: time against size
    device: str = "auto"
    run_id: str = ""  # empty: derived from the other settings (see resolved_run_id)
    resume: bool = False
    files_per_shard: int = 256
    parquet_key_column: str = "key"
    parquet_image_column: str = "image"
    torch_threads: int = 0  # 0: torch's default for the process
    progress_interval_s: float = 10.0  # how often a running job logs its progress
    batch: BatchConfig = field(default_factory=BatchConfig)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}"
            )
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError(f"png_compress_level must be in 0..9, got {self.png_compress_level}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if not self.input or not self.output:
            raise ValueError("input and output are both required")
        if self.files_per_shard < 1:
            raise ValueError("files_per_shard must be at least 1")
        if self.batch.max_batch_size < 1 or self.batch.max_batch_pixels < 1:
            raise ValueError("batch sizes must be positive")
        if self.progress_interval_s < 0:
            raise ValueError("progress_interval_s must not be negative")
        if not 0.0 < self.batch.gpu_memory_share <= 1.0:
            raise ValueError("gpu_memory_share must be in (0, 1]")
        if self.max_models_per_worker < 1:
            raise ValueError("max_models_per_worker must be at least 1")

    def to_dict(self) -> dict:
        """A JSON-ready view, for the run manifest."""
        data = asdict(self)
        data["mode"] = self.mode.value
        return data

    def resolved_run_id(self) -> str:
        """A run id that is a pure function of the settings.

        Deriving it (instead of using a timestamp) is what lets a re-run of the
        same job write byte-identical outputs.
        """
        if self.run_id:
            return self.run_id
        settings = self.to_dict()
        for volatile in ("run_id", "resume", "torch_threads", "device", "progress_interval_s"):
            settings.pop(volatile)
        settings.pop("batch")
        settings.pop("max_models_per_worker")  # memory, not results
        blob = json.dumps(settings, sort_keys=True).encode()
        return "run-" + hashlib.sha256(blob).hexdigest()[:12]
