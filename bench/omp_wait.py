"""What OpenMP's wait policy costs and saves: the engine with idle cores and with a busy one.

torch's OpenMP threads spin at every layer's barrier by default. On idle cores
that saves a wake-up; when another process holds a core, the spinning threads
wait for a thread that is not running. This runs the engine in fresh child
processes (the policy is read when the OpenMP runtime loads, so it cannot
change inside one process) under each policy and thread count, in turns, with
the machine idle and then with one busy-looping process beside it, which is
what a worker that shares its cores with other SDK processes sees.

Usage: ``python -m bench.omp_wait [--size 256] [--images 16] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time

from bench.timing import interleaved, load_average

CASES = {
    "2 threads, spin (default)": ("2", "ACTIVE"),
    "2 threads, passive": ("2", "PASSIVE"),
    "1 thread": ("1", "ACTIVE"),
}


def child(size: int, images: int) -> None:
    """In the child: time the engine on random-pixel images; print images/s.

    Random pixels are flagged, so the timing covers correction as well.
    """
    import numpy as np
    import torch

    from stylefix_core.bundle import load_bundle
    from stylefix_core.config import BatchConfig, Mode
    from stylefix_core.engine import Engine

    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    rng = np.random.default_rng(0)
    batch = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(images)]
    engine = Engine(load_bundle(""), Mode.STYLE, torch.device("cpu"), BatchConfig())
    engine.process(batch[:1])  # warm-up: first-call allocations
    start = time.perf_counter()
    engine.process(batch)
    print(images / (time.perf_counter() - start))


def measure(threads: str, policy: str, size: int, images: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "BENCH_THREADS": threads}
    command = [sys.executable, "-m", "bench.omp_wait", "--child", str(size), str(images)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def _spin() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.omp_wait", description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    print(
        f"{args.images} images at {args.size} px, {args.rounds} rounds; load {load_average()[0]:.2f}"
    )
    for busy in (False, True):
        spinner = multiprocessing.Process(target=_spin, daemon=True) if busy else None
        if spinner:
            spinner.start()
        contenders = {
            name: (lambda t=t, p=p: measure(t, p, args.size, args.images))
            for name, (t, p) in CASES.items()
        }
        results = interleaved(contenders, args.rounds)
        if spinner:
            spinner.terminate()
        where = "one core busy with another process" if busy else "idle cores"
        for name, samples in results.items():
            rounds = " ".join(f"{v:.2f}" for v in samples.values)
            print(f"{where:36s} {name:26s} {samples.median:7.2f} img/s [{rounds}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
