"""Per-image compute of the engine, measured here, and the Dataflow fleet it implies.

``python -m infra.capacity --save docs/scaling_measurements.json`` measures,
with the default bundle on CPU:

* FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``): the style
  generator, one scoring pass, and an image that is flagged and corrected,
  each counted through the engine's own networks and scorer. FLOP counts
  depend only on image size and path, so they are exact and repeatable;
* CPU seconds per image for what stays on the CPU of a GPU worker (decode
  and hash the input, encode the output), the time to load the bundle, and
  the share of clean generated assets the bundle flags at each size;

then prints the tables of ``docs/scaling.md`` from those measurements and the
stated :class:`Assumptions` (GPU throughput, utilisation, prices); ``--load``
prints them again from saved measurements. Timings are this machine's;
everything else follows by arithmetic in :func:`fleet`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from stylefix_core.bundle import load_bundle
from stylefix_core.config import BatchConfig, Limits, Mode
from stylefix_core.device import inference_context, to_batch
from stylefix_core.engine import Engine, ImageResult
from stylefix_core.imaging import decode_image, encode_image, sha256_hex
from stylefix_core.inject import inject
from stylefix_core.synthetic import make_assets

log = logging.getLogger(__name__)

SIDES = (256, 512)
# (mode, share of images flagged, output format) for each size in the fleet table.
ROWS: tuple[tuple[Mode, float, str], ...] = (
    (Mode.STYLE, 0.1, "png"),
    (Mode.STYLE, 1.0, "png"),
    (Mode.STYLE, 0.1, "jpeg"),
    (Mode.STYLE, 1.0, "jpeg"),
    (Mode.QA, 0.1, "png"),
    (Mode.QA, 1.0, "png"),
)
FORMATS = ("png", "jpeg", "webp")
SEED = 2026


@dataclass(frozen=True)
class Assumptions:
    """What is not measured here; every figure in docs/scaling.md rests on these."""

    gpu: str = "NVIDIA L4"
    # L4 datasheet: 242 TFLOPS FP16 tensor "with sparsity", so 121 dense.
    gpu_peak_tflops: float = 121.0
    # Share of that peak the networks reach under fp16 autocast: small channel
    # counts (32-128) and instance norms keep convolutions far from peak.
    gpu_utilisation: float = 0.10
    machine_type: str = "g2-standard-8"
    vcpus: int = 8
    memory_gb: float = 32.0
    disk_gb: float = 25.0
    # Share of the vCPUs that decode/encode get (hyper-threads, harness, I/O waits).
    cpu_efficiency: float = 0.7
    # us-central1 on-demand list prices, USD per hour (Dataflow batch worker
    # vCPU and memory, Persistent Disk, and the L4's Compute Engine rate).
    price_vcpu_hour: float = 0.056
    price_memory_gb_hour: float = 0.003557
    price_disk_gb_hour: float = 0.000054
    price_gpu_hour: float = 0.56
    prices_as_of: str = "mid-2025 list prices, not re-checked (this machine is offline)"

    def worker_price_per_hour(self) -> float:
        return (
            self.vcpus * self.price_vcpu_hour
            + self.memory_gb * self.price_memory_gb_hour
            + self.disk_gb * self.price_disk_gb_hour
            + self.price_gpu_hour
        )


@dataclass(frozen=True)
class Compute:
    """Measured cost of one image of one size (GFLOP exact, seconds on this CPU)."""

    side: int
    generator_gflop: float
    score_gflop: float  # one scoring pass: autoencoder, discriminator, statistics
    flagged_extra_gflop: float  # correction candidates and their scoring
    decode_seconds: float  # decode and SHA-256 of a PNG input, on one CPU core
    encode_seconds: dict[str, float]  # encode of the output by format, on one CPU core

    def gflop(self, mode: Mode, flagged_share: float) -> float:
        """Expected GFLOP per image when ``flagged_share`` of images are flagged."""
        styled = self.generator_gflop if mode is Mode.STYLE else 0.0
        return styled + self.score_gflop + flagged_share * self.flagged_extra_gflop

    def cpu_seconds(self, mode: Mode, flagged_share: float, fmt: str) -> float:
        """CPU seconds per image; qa mode writes unflagged inputs back without encoding."""
        encoded = 1.0 if mode is Mode.STYLE else flagged_share
        return self.decode_seconds + encoded * self.encode_seconds[fmt]


@dataclass(frozen=True)
class Estimate:
    """One row of the fleet table."""

    side: int
    mode: Mode
    flagged_share: float
    output_format: str
    gflop_per_image: float
    gpu_images_per_second: float
    cpu_images_per_second: float
    worker_images_per_second: float
    bottleneck: str
    # GPU utilisation below which the GPU, not the CPU, would limit the worker.
    break_even_utilisation: float
    gpu_hours_per_million: float
    workers_for_a_million_in_an_hour: int
    cost_per_million: float


def fleet(
    compute: Compute, mode: Mode, flagged_share: float, a: Assumptions, fmt: str = "png"
) -> Estimate:
    """Throughput of one GPU worker, and hours, workers and cost per million images."""
    gflop = compute.gflop(mode, flagged_share)
    gpu_rate = a.gpu_peak_tflops * 1e3 * a.gpu_utilisation / gflop
    cpu_rate = a.vcpus * a.cpu_efficiency / compute.cpu_seconds(mode, flagged_share, fmt)
    rate = min(gpu_rate, cpu_rate)
    hours = 1e6 / rate / 3600.0  # one GPU per worker: worker hours are GPU hours
    return Estimate(
        side=compute.side,
        mode=mode,
        flagged_share=flagged_share,
        output_format=fmt,
        gflop_per_image=gflop,
        gpu_images_per_second=gpu_rate,
        cpu_images_per_second=cpu_rate,
        worker_images_per_second=rate,
        bottleneck="GPU" if gpu_rate <= cpu_rate else "CPU",
        break_even_utilisation=cpu_rate * gflop / (a.gpu_peak_tflops * 1e3),
        gpu_hours_per_million=hours,
        workers_for_a_million_in_an_hour=math.ceil(hours),
        cost_per_million=hours * a.worker_price_per_hour(),
    )


# ------------------------------------------------------------------ measuring


def gflop_of(call: Callable[[], object]) -> float:
    """GFLOP that ``call`` performs (convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops() / 1e9


def _flagged(engine: Engine, image: np.ndarray) -> np.ndarray:
    """The image made noisy enough to be flagged (and so corrected)."""
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
    broken = inject(x, "noise", 1.0, seed=SEED).clamp(0, 1).mul(255).round().byte()
    pixels = broken.permute(1, 2, 0).numpy()
    (outcome,) = engine.process([pixels])
    if not (isinstance(outcome, ImageResult) and outcome.is_anomaly):
        raise RuntimeError(f"the noisy {image.shape} probe was not flagged")
    return pixels


def measure_gflops(side: int, bundle=None) -> dict[str, float]:
    """GFLOP of each path through the engine at ``side`` px: exact, machine-independent."""
    bundle = bundle or load_bundle("")
    cpu = torch.device("cpu")
    qa = Engine(bundle, Mode.QA, cpu, BatchConfig())
    (image,) = make_assets(seed=SEED, n=1, sizes=[(side, side)])
    x = to_batch([image], cpu)
    with inference_context(cpu):
        generator = gflop_of(lambda: bundle.generator(x))
        score = gflop_of(lambda: qa.scorer(x))
    flagged = _flagged(qa, image)
    flagged_total = gflop_of(lambda: qa.process([flagged]))
    return {
        "generator_gflop": generator,
        "score_gflop": score,
        "flagged_extra_gflop": flagged_total - score,
    }


def measure_compute(side: int, bundle=None) -> Compute:
    """FLOPs of each path through the engine, and CPU I/O seconds, at ``side`` px."""
    (image,) = make_assets(seed=SEED, n=1, sizes=[(side, side)])
    decode, encode = io_seconds(image)
    return Compute(
        side=side,
        **measure_gflops(side, bundle),
        decode_seconds=decode,
        encode_seconds=encode,
    )


def best_seconds(call: Callable[[], object], repeats: int = 15) -> float:
    """The best of a few timed runs: on a shared machine the slower ones time the neighbours."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return min(samples)


def io_seconds(image: np.ndarray) -> tuple[float, dict[str, float]]:
    """Seconds to decode and hash a PNG input, and to encode the output in each format."""
    data = encode_image(image, "png")
    text = {"stylefix:run_id": "run-0", "stylefix:source_key": "key"}
    decode = best_seconds(lambda: (decode_image(data, Limits()), sha256_hex(data)))
    encode = {
        fmt: best_seconds(lambda fmt=fmt: encode_image(image, fmt, text=text)) for fmt in FORMATS
    }
    return decode, encode


def load_seconds() -> float:
    """Seconds to read, verify and build the default bundle and its engine on CPU."""
    start = time.perf_counter()
    Engine(load_bundle(""), Mode.STYLE, torch.device("cpu"), BatchConfig())
    return time.perf_counter() - start


def cpu_seconds_per_image(side: int) -> float:
    """Seconds per image of the whole engine (style mode) on this CPU, best of three."""
    engine = Engine(load_bundle(""), Mode.STYLE, torch.device("cpu"), BatchConfig())
    (image,) = make_assets(seed=SEED, n=1, sizes=[(side, side)])
    engine.process([image])  # warm-up
    return best_seconds(lambda: engine.process([image]), repeats=3)


def flagged_share_of_generated(side: int, n: int = 8) -> float:
    """Share of ``n`` clean generated assets that the default bundle flags after styling.

    The detector is calibrated on the training sizes; at other sizes this is
    what tells which row of the fleet table to plan with.
    """
    engine = Engine(load_bundle(""), Mode.STYLE, torch.device("cpu"), BatchConfig())
    outcomes = engine.process(make_assets(seed=SEED, n=n, sizes=[(side, side)]))
    return sum(isinstance(o, ImageResult) and o.is_anomaly for o in outcomes) / n


# ------------------------------------------------------------------ reporting


def compute_table(computes: Sequence[Compute]) -> str:
    lines = [
        "| size | generator | one scoring pass | flagged: correction + re-scoring | CPU: decode + hash | CPU: encode png / jpeg / webp |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in computes:
        encode = " / ".join(f"{1e3 * c.encode_seconds[f]:.1f}" for f in FORMATS)
        lines.append(
            f"| {c.side} px | {c.generator_gflop:.2f} GFLOP | {c.score_gflop:.2f} GFLOP"
            f" | {c.flagged_extra_gflop:.2f} GFLOP | {1e3 * c.decode_seconds:.1f} ms"
            f" | {encode} ms |"
        )
    return "\n".join(lines)


def fleet_table(estimates: Sequence[Estimate]) -> str:
    lines = [
        "| size | mode | output | flagged | GFLOP/image | L4 images/s | CPU images/s | worker images/s (limit) | GPU limits below | GPU hours / 1M | workers for 1M in 1 h | cost / 1M |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in estimates:
        lines.append(
            f"| {e.side} px | {e.mode.value} | {e.output_format} | {e.flagged_share:.0%}"
            f" | {e.gflop_per_image:.1f}"
            f" | {e.gpu_images_per_second:.0f} | {e.cpu_images_per_second:.0f}"
            f" | {e.worker_images_per_second:.0f} ({e.bottleneck})"
            f" | {e.break_even_utilisation:.1%} | {e.gpu_hours_per_million:.2f}"
            f" | {e.workers_for_a_million_in_an_hour} | ${e.cost_per_million:.2f} |"
        )
    return "\n".join(lines)


def estimates(computes: Sequence[Compute], a: Assumptions) -> list[Estimate]:
    return [fleet(c, mode, share, a, fmt) for c in computes for mode, share, fmt in ROWS]


def measure_all(threads: int) -> dict:
    """Every measurement behind docs/scaling.md, as one JSON-ready document."""
    torch.set_num_threads(threads)
    bundle = load_bundle("")
    computes = [measure_compute(side, bundle) for side in SIDES]
    return {
        "measured_on": dt.date.today().isoformat(),
        "torch_threads": threads,
        "bundle_version": bundle.manifest.version,
        "load_seconds": round(load_seconds(), 3),
        "engine_cpu_seconds_per_image": {
            str(side): round(cpu_seconds_per_image(side), 3) for side in SIDES
        },
        "flagged_share_of_8_generated": {
            str(side): flagged_share_of_generated(side) for side in SIDES
        },
        "compute": [asdict(c) for c in computes],
    }


def computes_from(document: dict) -> list[Compute]:
    return [Compute(**entry) for entry in document["compute"]]


def report(document: dict, a: Assumptions) -> str:
    """The tables of docs/scaling.md, from measurements and assumptions."""
    computes = computes_from(document)
    return f"{compute_table(computes)}\n\n{fleet_table(estimates(computes, a))}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--save", type=Path, help="write the measurements here (JSON)")
    parser.add_argument("--load", type=Path, help="report saved measurements, measure nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.load:
        document = json.loads(args.load.read_text())
    else:
        document = measure_all(args.threads)
    if args.save:
        args.save.write_text(json.dumps(document, indent=2) + "\n")
    a = Assumptions()
    log.info("worker price: $%.3f per hour (%s)", a.worker_price_per_hour(), a.prices_as_of)
    log.info("%s", json.dumps({k: v for k, v in document.items() if k != "compute"}))
    log.info("\n%s", report(document, a))


if __name__ == "__main__":
    main()
