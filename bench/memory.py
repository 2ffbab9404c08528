"""Peak resident memory of one Beam job, measured in a process of its own.

A job run inside the benchmark's process would inherit whatever that process
already holds, so each measurement runs the job in a fresh interpreter and
reads that child's peak resident set from the kernel's resource accounting
(``wait4``), which is exact and costs nothing while the job runs.

One subtlety decides where the child is started from: Linux carries a
process's peak RSS across ``fork`` and ``exec`` (the peak of the memory map
being replaced is kept), so a child started by the benchmark, which by then
holds torch, Beam and a few jobs' worth of memory, would report the
benchmark's own peak. A small launcher (``measure``), which imports nothing
heavy, starts the job instead and reports the job's ``ru_maxrss``.

``python -m bench.memory measure|job INPUT OUTPUT IMAGES``
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def child_environment() -> dict[str, str]:
    """The current environment with this checkout importable by child processes."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def peak_rss_mib(source: Path, output: Path, images: int) -> float:
    """Run the job on ``source`` in a fresh process; its peak RSS in MiB."""
    args = [str(source), str(output), str(images)]
    command = [sys.executable, "-m", "bench.memory", "measure", *args]
    done = subprocess.run(
        command, env=child_environment(), cwd=REPO_ROOT, check=True, capture_output=True, text=True
    )
    return int(done.stdout.split()[-1]) / 1024.0  # Linux reports KiB


def _measure(args: list[str]) -> int:
    """In the small launcher: run the job as its child, return the child's ru_maxrss."""
    command = [sys.executable, "-m", "bench.memory", "job", *args]
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"memory probe job failed with exit code {process.returncode}")
    return usage.ru_maxrss


def _job(args: list[str]) -> None:
    from bench.jobs import beam_job

    logging.basicConfig(level=logging.WARNING)
    # One torch thread: this figure is about memory, and tiny images gain
    # nothing from more threads but lose a lot on a busy machine.
    beam_job(Path(args[0]), Path(args[1]), int(args[2]), "--torch_threads=1")


def main(argv: list[str]) -> None:
    if argv[0] == "measure":
        sys.stdout.write(f"{_measure(argv[1:])}\n")
    elif argv[0] == "job":
        _job(argv[1:])
    else:
        raise SystemExit(
            f"usage: python -m bench.memory measure|job INPUT OUTPUT IMAGES, got {argv}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
