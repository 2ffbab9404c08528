"""Pipeline options, and their translation into the one typed JobConfig.

Options are declared once here; Flex Template metadata and the schedule in
``infra/`` are tested against this parser.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from stylefix_core.config import DEVICES, OUTPUT_FORMATS, BatchConfig, JobConfig, Limits, Mode
from stylefix_core.styles import parse_pairs

REQUIRED_OPTIONS = ("input", "output")


def _flag(value: str) -> bool:
    """``--resume=true`` as well as ``--resume``: templates pass every parameter with a value."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class StyleFixOptions(PipelineOptions):
    """``--input`` and ``--output`` are required; everything else has a default."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        defaults = JobConfig(input="-", output="-")
        add = parser.add_argument
        add(
            "--input",
            default=None,
            help="shard URL, glob or folder (file, gs://, s3://, memory://)",
        )
        add("--output", default=None, help="output prefix URL")
        add("--bundle", default="", help="model bundle folder URL; empty: the bundled default")
        add(
            "--bundles",
            default="",
            help="more styles: 'NAME=URL,NAME=URL' (the default style is --bundle's)",
        )
        add(
            "--style_rules",
            default="",
            help="'PATTERN=STYLE,...': style by key (fnmatch) where metadata names none",
        )
        add(
            "--max_models_per_worker",
            type=int,
            default=defaults.max_models_per_worker,
            help="bundles resident per worker process; the least recently used is evicted",
        )
        add(
            "--mode",
            default=defaults.mode.value,
            choices=[m.value for m in Mode],
            help="style: style, score, correct; qa: score and correct",
        )
        add("--output_format", default=defaults.output_format, choices=OUTPUT_FORMATS)
        add(
            "--png_compress_level",
            type=int,
            default=defaults.png_compress_level,
            choices=range(10),
            help="zlib level of PNG outputs: 1 is fastest, 9 smallest (pixels are the same)",
        )
        add(
            "--device",
            default=defaults.device,
            choices=DEVICES,
            help="auto, cpu, or cuda (an error where absent)",
        )
        add(
            "--run_id",
            default="",
            help="empty: derived from the settings, so re-runs write identical files",
        )
        add(
            "--resume",
            nargs="?",
            const=True,
            default=False,
            type=_flag,
            help="skip shards whose completion marker exists (also --resume=true|false)",
        )
        add(
            "--files_per_shard",
            type=int,
            default=defaults.files_per_shard,
            help="plain image files grouped per output part",
        )
        add("--parquet_key_column", default=defaults.parquet_key_column)
        add("--parquet_image_column", default=defaults.parquet_image_column)
        add("--max_batch_size", type=int, default=defaults.batch.max_batch_size)
        add("--max_batch_pixels", type=int, default=defaults.batch.max_batch_pixels)
        add(
            "--gpu_memory_share",
            type=float,
            default=defaults.batch.gpu_memory_share,
            help="share of a GPU's memory one worker process's batches may use",
        )
        add(
            "--max_pixels",
            type=int,
            default=defaults.limits.max_pixels,
            help="refuse images with more pixels",
        )
        add("--max_file_bytes", type=int, default=defaults.limits.max_file_bytes)
        add("--max_shard_bytes", type=int, default=defaults.limits.max_shard_bytes)
        add(
            "--torch_threads",
            type=int,
            default=defaults.torch_threads,
            help="per worker process; 0: one on Dataflow (one process per vCPU), a fair "
            "share of the cores when the local runner starts several workers, else torch's default",
        )
        add(
            "--progress_interval_s",
            type=float,
            default=defaults.progress_interval_s,
            help="seconds between progress lines while the job runs",
        )


def refuse_misspelt_options(argv: Sequence[str] | None) -> None:
    """A ValueError for a flag no option class knows that looks like one of ours.

    Beam drops flags it cannot parse with only a warning, so ``--max-pixels``
    (the hyphens of ``stylefix report``) or ``--devic cuda`` would run with
    the default instead. Other unknown flags still pass as Beam lets them
    (a runner may read flags from option classes this process never imports).
    """
    flags = sys.argv[1:] if argv is None else argv
    known = set(PipelineOptions([]).get_all_options())
    ours = list(StyleFixOptions([]).get_all_options(current_only=True))
    for flag in flags:
        if not flag.startswith("--") or flag == "--":
            continue
        name = flag[2:].split("=", 1)[0]
        if name in known:
            continue
        close = difflib.get_close_matches(name.replace("-", "_"), ours, n=1, cutoff=0.8)
        if close:
            raise ValueError(f"unknown option --{name}; did you mean --{close[0]}?")


def to_job_config(options: PipelineOptions) -> JobConfig:
    """Validate and convert; a missing or bad option is a ValueError naming it."""
    opts = options.view_as(StyleFixOptions)
    missing = [name for name in REQUIRED_OPTIONS if not getattr(opts, name)]
    if missing:
        raise ValueError("missing required option(s): " + ", ".join("--" + m for m in missing))
    return JobConfig(
        input=opts.input,
        output=opts.output.rstrip("/"),
        bundle=opts.bundle,
        bundles=_style_bundles(opts.bundles),
        style_rules=parse_pairs(opts.style_rules, "--style_rules"),
        max_models_per_worker=opts.max_models_per_worker,
        mode=Mode(opts.mode),
        output_format=opts.output_format,
        png_compress_level=opts.png_compress_level,
        device=opts.device,
        run_id=opts.run_id,
        resume=opts.resume,
        files_per_shard=opts.files_per_shard,
        parquet_key_column=opts.parquet_key_column,
        parquet_image_column=opts.parquet_image_column,
        torch_threads=torch_threads(options, opts.torch_threads),
        progress_interval_s=opts.progress_interval_s,
        batch=BatchConfig(
            max_batch_size=opts.max_batch_size,
            max_batch_pixels=opts.max_batch_pixels,
            gpu_memory_share=opts.gpu_memory_share,
        ),
        limits=Limits(
            max_pixels=opts.max_pixels,
            max_file_bytes=opts.max_file_bytes,
            max_shard_bytes=opts.max_shard_bytes,
        ),
    )


def torch_threads(options: PipelineOptions, requested: int) -> int:
    """Torch threads per worker process; 0 leaves torch's default (one per core).

    Several worker processes on one machine must not each take one thread per
    core: torch's OpenMP threads spin at every layer's barrier while they wait
    for a thread that has lost its core, and measured with one core taken by
    another process the engine ran at half the speed of a single thread
    (docs/benchmarks.md, ``python -m bench.omp_wait``). So:

    * Dataflow starts one SDK process per vCPU: one thread each.
    * The local runner with several workers (``--direct_num_workers`` in
      multi-processing or multi-threading mode): a fair share of the cores each.
    * Otherwise torch's default, which is fastest on idle cores.

    An explicit ``--torch_threads`` always wins.
    """
    if requested > 0:
        return requested
    if _runs_on_dataflow(options):
        return 1
    direct = options.view_as(DirectOptions)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    workers = direct.direct_num_workers or cores  # 0 means one worker per core
    if direct.direct_running_mode == "in_memory" or workers <= 1:
        return requested
    return max(1, cores // workers)


def _runs_on_dataflow(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return isinstance(runner, str) and runner.lower().removesuffix("runner") == "dataflow"


def _style_bundles(text: str) -> dict[str, str]:
    """``--bundles`` as a dict; a style named twice is refused, not silently overridden."""
    pairs = parse_pairs(text, "--bundles")
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--bundles: style(s) named more than once: {', '.join(repeated)}")
    return dict(pairs)
