"""The things the benchmark times: the Beam job, the naive job, the compute ceiling.

Each returns nothing and leaves its outputs in the folder it is given; the
caller times it and cleans up, so that deleting files is never timed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.naive import run_naive
from bench.timing import rate
from pipelines.main import run
from stylefix_core.engine import Engine

RUNNER = "--runner=FnApiRunner"


def job_args(source: Path, output: Path, *extra: str) -> list[str]:
    """Pipeline arguments of a benchmark run: Beam's batch runner, style mode, PNG."""
    return [f"--input={source}", f"--output={output}", RUNNER, *extra]


def beam_job(source: Path, output: Path, images: int, *extra: str) -> None:
    """The production entry point, read to written; checks every image was reported."""
    summary = run(job_args(source, output, *extra))
    if summary.report_rows != images or summary.error_rows:
        raise RuntimeError(
            f"benchmark job reported {summary.report_rows} of {images} images "
            f"with {summary.error_rows} errors"
        )


def naive_job(source: Path, output: Path, images: int, *extra: str) -> None:
    """The per-element baseline on the same input and runner."""
    run_naive(job_args(source, output, *extra))
    written = len(list((output / "images").rglob("*.png")))
    if written != images:
        raise RuntimeError(f"naive job wrote {written} of {images} images")


def ceiling(engine: Engine, images: Sequence[np.ndarray]) -> None:
    """The same engine on already decoded images, batches as the job forms them."""
    step = engine.batch.max_batch_size
    for start in range(0, len(images), step):
        engine.process(images[start : start + step])


def fresh(folder: Path) -> Path:
    """An empty folder at ``folder`` (what a timed run writes into)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def timed_run(count: int, out: Path, work: Callable[[Path], None]) -> Callable[[], float]:
    """A contender that empties its output folder (untimed), then times ``work``."""

    def measure() -> float:
        folder = fresh(out)
        return rate(count, lambda: work(folder))

    return measure
