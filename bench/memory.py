"""Peak resident memory of one Beam job, measured in a process of its own.

A job run inside the benchmark's process would inherit whatever that process
already holds, so each measurement starts a fresh interpreter that runs only
the job, and reads that child's peak resident set from the kernel's resource
accounting (``wait4``), which is exact and costs nothing while the job runs.

``python -m bench.memory INPUT OUTPUT IMAGES`` is the child.
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
    """Run the job on ``source`` in a child process; its peak RSS in MiB."""
    command = [sys.executable, "-m", "bench.memory", str(source), str(output), str(images)]
    process = subprocess.Popen(command, env=child_environment(), cwd=REPO_ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"memory probe failed with exit code {process.returncode}")
    return usage.ru_maxrss / 1024.0  # Linux reports KiB


def main(argv: list[str]) -> None:
    from bench.jobs import beam_job

    logging.basicConfig(level=logging.WARNING)
    # One torch thread: this figure is about memory, and tiny images gain
    # nothing from more threads but lose a lot on a busy machine.
    beam_job(Path(argv[0]), Path(argv[1]), int(argv[2]), "--torch_threads=1")


if __name__ == "__main__":
    main(sys.argv[1:])
