"""``python -m bench.run``: the benchmark table (``make bench``).

Examples::

    python -m bench.run                       # every CPU figure at 256 and 512 px
    python -m bench.run --quick               # fewer images and rounds
    python -m bench.run --figures throughput,flops --sizes 256
    python -m bench.run --device cuda         # GPU mode; exits 0 with a note where no CUDA
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import figures, gpu
from bench.data import write_shards
from bench.memory import child_environment
from bench.timing import Samples, load_average

FIGURES = ("throughput", "memory", "workers", "flops")


@dataclass(frozen=True)
class Plan:
    """How much work each figure gets; images scale with 1/pixels across sizes."""

    images_at_256: int  # images per throughput run at 256 px
    repeats: int  # interleaved rounds per timed figure
    memory_images: tuple[int, int]  # small and large run of figure (3)
    memory_size: int
    worker_images: int  # at 256 px, figure (4)

    def images(self, size: int) -> int:
        return max(4, round(self.images_at_256 * (256 / size) ** 2))


FULL = Plan(
    images_at_256=64, repeats=3, memory_images=(1000, 10000), memory_size=32, worker_images=64
)
QUICK = Plan(
    images_at_256=24, repeats=2, memory_images=(200, 2000), memory_size=32, worker_images=32
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help=f"comma-separated subset of {','.join(FIGURES)} (CPU mode)",
    )
    parser.add_argument("--sizes", default="256,512", help="square image sizes in px")
    parser.add_argument("--repeats", type=int, default=0, help="rounds per figure (0: the plan's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch threads for the ceiling and the jobs (0: the job's own default)",
    )
    parser.add_argument(
        "--workdir", default="", help="where inputs and outputs go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    args.figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {FIGURES}")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def load_line() -> str:
    one, five, fifteen = load_average()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def _samples(s: Samples, unit: str) -> str:
    spread = " ".join(f"{v:.3g}" for v in s.values)
    return f"{s.median:.3g} {unit} [{spread}]"


def comparison_line(c: figures.Comparison) -> str:
    sign = "<=" if c.at_most else ">="
    verdict = "met" if c.met else "NOT met"
    return (
        f"{c.figure:<34} {c.case:<30} {_samples(c.subject, c.unit):<34} "
        f"{_samples(c.baseline, c.unit):<34} {c.ratio:>6.2f}  {sign} {c.target:<5} {verdict}"
    )


def flops_lines(f: figures.Flops) -> list[str]:
    networks = ", ".join(f"{name} {value:.2f}" for name, value in f.by_network.items())
    return [
        f"(5) model FLOPs, {f.size} px: {f.gflop_per_image:.2f} GFLOP/image ({networks})",
        f"    ceiling {f.images_per_second:.3g} img/s = {f.achieved_gflops:.1f} GFLOP/s; "
        f"{100 * f.share_of_peak:.0f}% of a 2048^2 float32 matmul ({f.matmul_gflops:.1f} GFLOP/s), "
        f"{100 * f.achieved_gflops / f.conv_gflops:.0f}% of a 64-channel 3x3 conv "
        f"({f.conv_gflops:.1f} GFLOP/s)",
    ]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def gpu_lines(r: gpu.GpuResult) -> list[str]:
    return [
        f"GPU {r.size} px, {r.images} images: ceiling {_samples(r.ceiling, 'img/s')}, "
        f"Beam job {_samples(r.job, 'img/s')}, ratio {r.job.median / r.ceiling.median:.2f}",
        f"    utilisation: ceiling {_percent(r.ceiling_busy)}, job {_percent(r.job_busy)} "
        f"({r.method})",
    ]


def emit(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)


def run_cpu(args: argparse.Namespace, plan: Plan, repeats: int, workdir: Path) -> None:
    """Every selected CPU figure, printed as soon as it is measured."""
    flags = [f"--torch_threads={args.torch_threads}"] if args.torch_threads else []
    ceilings: dict[int, float] = {}
    for size in args.sizes:
        source = write_shards(workdir / f"in-{size}", plan.images(size), size, per_shard=16)
        if "throughput" in args.figures:
            against_ceiling, against_naive = figures.throughput(source, repeats, workdir, *flags)
            emit(comparison_line(against_ceiling), comparison_line(against_naive))
            ceilings[size] = against_ceiling.baseline.median
        if "flops" in args.figures:
            emit(*flops_lines(figures.flops(source, repeats, ceilings.get(size))))
    if "workers" in args.figures:
        source = write_shards(workdir / "in-workers", plan.worker_images, 256, per_shard=8)
        emit(comparison_line(figures.workers(source, repeats, workdir, *flags)))
    if "memory" in args.figures:
        small, large = plan.memory_images
        emit(comparison_line(figures.memory(small, large, plan.memory_size, workdir)))


def run_gpu(args: argparse.Namespace, plan: Plan, repeats: int, workdir: Path) -> None:
    """GPU mode, with 4x the CPU image counts so that each run is long enough to time."""
    for size in args.sizes:
        source = write_shards(workdir / f"in-{size}", plan.images(size) * 4, size, per_shard=32)
        emit(*gpu_lines(gpu.measure(source, repeats, workdir)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.device == "cuda" and (reason := gpu.missing_cuda()):
        print(f"GPU benchmark skipped: {reason}.")
        return 0
    # Beam's multi-processing workers are child interpreters: they must import this checkout.
    os.environ["PYTHONPATH"] = child_environment()["PYTHONPATH"]
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    plan = QUICK if args.quick else FULL
    repeats = args.repeats or plan.repeats
    started = time.monotonic()
    print(f"StyleFix benchmark ({'quick' if args.quick else 'full'}, {repeats} interleaved rounds)")
    print(f"machine: {machine()}")
    print(f"before: {load_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="stylefix-bench-", dir=args.workdir or None) as tmp:
        runner = run_gpu if args.device == "cuda" else run_cpu
        runner(args, plan, repeats, Path(tmp))
    print(f"after: {load_line()}; wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
