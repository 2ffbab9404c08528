"""The figures ``make bench`` prints, each a ratio measured side by side.

(1) the Beam job against the compute ceiling, (2) against the naive DoFn,
(3) peak memory of a large run against a small one, (4) two worker processes
against one, (5) model FLOPs per image and the share of the machine's matmul
peak that the engine reaches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import jobs
from bench.data import BenchInput, write_shards
from bench.memory import peak_rss_mib
from bench.timing import Samples, interleaved, rate
from stylefix_core.bundle import load_bundle
from stylefix_core.config import BatchConfig, Mode
from stylefix_core.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """One figure: a subject against its baseline, medians of interleaved runs."""

    figure: str
    case: str
    subject: Samples
    baseline: Samples
    unit: str
    target: float
    at_most: bool = False  # the ratio must stay at or below the target

    @property
    def ratio(self) -> float:
        return self.subject.median / self.baseline.median

    @property
    def met(self) -> bool:
        return self.ratio <= self.target if self.at_most else self.ratio >= self.target


@dataclass(frozen=True)
class Flops:
    """Figure (5) for one image size."""

    size: int
    gflop_per_image: float
    by_network: dict[str, float]  # GFLOP per image
    images_per_second: float  # the compute ceiling, measured alongside
    matmul_gflops: float
    conv_gflops: float  # a large 3x3 convolution: what these networks are made of

    @property
    def achieved_gflops(self) -> float:
        return self.gflop_per_image * self.images_per_second

    @property
    def share_of_peak(self) -> float:
        return self.achieved_gflops / self.matmul_gflops


def cpu_engine() -> Engine:
    """The engine the job builds on a CPU worker, with the default bundle."""
    return Engine(load_bundle(""), Mode.STYLE, torch.device("cpu"), BatchConfig())


def throughput(source: BenchInput, repeats: int, workdir: Path, *flags: str) -> list[Comparison]:
    """Figures (1) and (2) at one size: ceiling, Beam job and naive job in turns.

    ``flags`` are extra pipeline options for both jobs (``--torch_threads=1``).
    """
    engine, decoded, n = cpu_engine(), source.decoded(), source.images
    jobs.ceiling(engine, decoded[:2])  # first calls pay one-time allocation costs
    contenders = {
        "ceiling": lambda: rate(n, lambda: jobs.ceiling(engine, decoded)),
        "job": jobs.timed_run(
            n, workdir / "job", lambda o: jobs.beam_job(source.folder, o, n, *flags)
        ),
        "naive": jobs.timed_run(
            n, workdir / "naive", lambda o: jobs.naive_job(source.folder, o, n, *flags)
        ),
    }
    samples = interleaved(contenders, repeats)
    case = f"{source.size} px, {n} images"
    return [
        Comparison(
            "(1) Beam job / compute ceiling",
            case,
            samples["job"],
            samples["ceiling"],
            "img/s",
            0.85,
        ),
        Comparison(
            "(2) Beam job / naive DoFn", case, samples["job"], samples["naive"], "img/s", 2.0
        ),
    ]


def memory(small: int, large: int, size: int, workdir: Path) -> Comparison:
    """Figure (3): peak resident memory of a job on ``large`` against ``small`` images."""
    sources = {
        n: write_shards(workdir / f"mem-in-{n}", n, size, per_shard=500, distinct=32)
        for n in (small, large)
    }
    peaks = {
        n: Samples(f"{n} images", (peak_rss_mib(s.folder, jobs.fresh(workdir / "mem-out"), n),))
        for n, s in sources.items()
    }
    case = f"{size} px, {large} vs {small} images"
    return Comparison(
        "(3) peak RSS, large / small run",
        case,
        peaks[large],
        peaks[small],
        "MiB",
        1.2,
        at_most=True,
    )


def workers(source: BenchInput, repeats: int, workdir: Path, *extra: str) -> Comparison:
    """Figure (4): DirectRunner multi-processing, 2 worker processes against 1."""
    n = source.images

    def job(count: int) -> Callable[[], float]:
        flags = [
            f"--direct_num_workers={count}",
            "--direct_running_mode=multi_processing",
            *extra,
        ]
        return jobs.timed_run(
            n, workdir / f"workers-{count}", lambda o: jobs.beam_job(source.folder, o, n, *flags)
        )

    samples = interleaved({"1 worker": job(1), "2 workers": job(2)}, repeats)
    case = f"{source.size} px, {n} images" + (f" ({' '.join(extra)})" if extra else "")
    return Comparison(
        "(4) 2 workers / 1 worker", case, samples["2 workers"], samples["1 worker"], "img/s", 1.6
    )


def flops(source: BenchInput, repeats: int, images_per_second: float | None = None) -> Flops:
    """Figure (5): FLOPs the engine's networks spend per image, and the share of peak.

    ``images_per_second`` is the ceiling measured by figure (1) in this run;
    without it the ceiling is measured here, interleaved with the matmul.
    """
    engine, decoded = cpu_engine(), source.decoded()
    counter = FlopCounterMode(display=False, depth=1)
    with counter:
        jobs.ceiling(engine, decoded)
    per_image = 1e-9 / len(decoded)
    by_network = {
        name: sum(ops.values()) * per_image
        for name, ops in counter.get_flop_counts().items()
        if name != "Global" and "." not in name  # top-level modules: the networks
    }
    contenders = {"matmul": matmul_gflops, "conv": conv_gflops}
    if images_per_second is None:
        contenders["ceiling"] = lambda: rate(len(decoded), lambda: jobs.ceiling(engine, decoded))
    samples = interleaved(contenders, repeats)
    return Flops(
        size=source.size,
        gflop_per_image=counter.get_total_flops() * per_image,
        by_network=by_network,
        images_per_second=images_per_second or samples["ceiling"].median,
        matmul_gflops=samples["matmul"].median,
        conv_gflops=samples["conv"].median,
    )


def matmul_gflops(n: int = 2048, calls: int = 3) -> float:
    """GFLOP/s of a float32 ``n x n`` matmul, the best of ``calls`` after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best * 1e-9


def conv_gflops(channels: int = 64, size: int = 256, calls: int = 3) -> float:
    """GFLOP/s of a ``channels`` to ``channels`` 3x3 convolution on one image.

    On some CPUs the BLAS behind matmul takes a slow path that the convolution
    library does not, so this second reference shows what conv layers can reach.
    """
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn(1, channels, size, size)
    best = float("inf")
    with torch.inference_mode():
        conv(x)
        for _ in range(calls):
            start = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - start)
    return 2.0 * channels * channels * 9 * size * size / best * 1e-9
