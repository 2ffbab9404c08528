"""GPU mode: images/s of the ceiling and of the Beam job, and how busy the GPU was.

Utilisation comes from the driver (``torch.cuda.utilization``, which needs
pynvml) sampled while the work runs. Without pynvml the ceiling's figure is
the GPU time between CUDA events recorded around each engine call, divided
by wall time: an upper bound, since it also counts gaps between kernels
inside a call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import jobs
from bench.data import BenchInput
from bench.timing import Samples, interleaved, rate
from stylefix_core.bundle import load_bundle
from stylefix_core.config import BatchConfig, Mode
from stylefix_core.engine import Engine


@dataclass(frozen=True)
class GpuResult:
    """Images/s (medians) and utilisation in percent (None where not measurable)."""

    size: int
    images: int
    ceiling: Samples
    job: Samples
    ceiling_busy: float | None
    job_busy: float | None
    method: str


def missing_cuda() -> str | None:
    """Why the GPU benchmark cannot run here, or None where it can."""
    if torch.cuda.is_available():
        return None
    built = torch.version.cuda or "none (a CPU build)"
    return f"no CUDA device is available (torch {torch.__version__}, CUDA build: {built})"


def driver_utilisation_available() -> bool:
    try:
        torch.cuda.utilization()
    except Exception:  # noqa: BLE001 - pynvml missing or the driver refuses: fall back
        return False
    return True


class UtilisationSampler:
    """Samples the driver's utilisation percentage every ``period`` seconds."""

    def __init__(self, period: float = 0.05):
        self._period = period
        self._values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            self._values.append(torch.cuda.utilization())

    @property
    def mean(self) -> float | None:
        return sum(self._values) / len(self._values) if self._values else None


def event_busy_share(engine: Engine, decoded: list) -> float:
    """GPU time between events around each engine call, over the loop's wall time."""
    step, spans = engine.batch.max_batch_size, []
    torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, len(decoded), step):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        engine.process(decoded[first : first + step])
        end.record()
        spans.append((begin, end))
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - start) * 1000.0
    return 100.0 * sum(b.elapsed_time(e) for b, e in spans) / wall_ms


def _sampled(work: Callable[[], None]) -> float | None:
    with UtilisationSampler() as sampler:
        work()
    return sampler.mean


def measure(source: BenchInput, repeats: int, workdir: Path) -> GpuResult:
    """Ceiling and job on CUDA in turns, then one pass measuring utilisation."""
    engine = Engine(load_bundle(""), Mode.STYLE, torch.device("cuda"), BatchConfig())
    decoded, n = source.decoded(), source.images
    jobs.ceiling(engine, decoded[: engine.batch.max_batch_size])

    def job(out: Path) -> None:
        jobs.beam_job(source.folder, out, n, "--device=cuda")

    samples = interleaved(
        {
            "ceiling": lambda: rate(n, lambda: jobs.ceiling(engine, decoded)),
            "job": jobs.timed_run(n, workdir / "gpu-job", job),
        },
        repeats,
    )
    if driver_utilisation_available():
        busy_ceiling = _sampled(lambda: jobs.ceiling(engine, decoded))
        busy_job = _sampled(lambda: job(jobs.fresh(workdir / "gpu-job")))
        method = "driver utilisation (pynvml), sampled every 50 ms"
    else:
        busy_ceiling, busy_job = event_busy_share(engine, decoded), None
        method = "CUDA-event time inside engine calls / wall time (no pynvml)"
    return GpuResult(
        source.size, n, samples["ceiling"], samples["job"], busy_ceiling, busy_job, method
    )
