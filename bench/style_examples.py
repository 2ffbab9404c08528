"""How many style examples a personal style needs, and how long ``stylefix train style`` takes.

Writes generated content assets and 1, 3 and 6 examples of the built-in riso
style to folders, runs ``stylefix train style`` on each (as a user would, in
a child process, timed: wall clock, CPU and the machine's load), then judges
each trained generator on content and riso examples no run trained on:

* ``ink distance``: mean RGB distance of the styled pixels to the nearest of
  the four riso inks; real riso examples sit near zero (paper grain), plain
  content wherever its colours happen to fall;
* ``palette distance``: sliced Wasserstein distance (x1000) between the colours
  of the styled pixels and those of the held-out riso examples; printed with
  the same figure for plain content and for riso examples against other riso
  examples (which differ a lot with the split: each example has its own mix
  of inks);
* the last training step's weighted style and colour losses (manifest);

and writes a contact sheet per run (content, styled, held-out examples) to
look at. Usage: ``python -m bench.style_examples --out out/style-study``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylefix_core.bundle import load_bundle
from stylefix_core.synthetic import make_assets
from stylefix_core.training.data import to_tensor
from stylefix_core.training.losses import sliced_wasserstein
from stylefix_core.training.style_images import PALETTE, make_riso_image

INKS = torch.tensor(PALETTE, dtype=torch.float32)  # the riso inks and paper, [0, 1] RGB
CONTENT_SIZES = [(128, 128), (96, 128)]


def write_folders(root: Path, counts: list[int], n_content: int) -> None:
    """Content assets (seed 7) and, per count, that many riso examples (seeds 300...)."""
    (root / "content").mkdir(parents=True, exist_ok=True)
    for i, asset in enumerate(make_assets(seed=7, n=n_content, sizes=CONTENT_SIZES)):
        Image.fromarray(asset).save(root / "content" / f"c{i:03d}.png")
    for n in counts:
        (root / f"style-{n}").mkdir(exist_ok=True)
        for i in range(n):
            Image.fromarray(make_riso_image(300 + i)).save(root / f"style-{n}" / f"s{i}.png")


def train(root: Path, n: int, steps: int) -> dict[str, float]:
    """Run the CLI on ``style-n``; wall and CPU seconds, and the load average around it."""
    command = [sys.executable, "-m", "pipelines.cli", "train", "style"]
    command += ["--content", str(root / "content"), "--style", str(root / f"style-{n}")]
    command += ["--name", f"riso{n}", "--steps", str(steps), "--out", str(root / f"bundle-{n}")]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(root / f"train-{n}.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "load": (load_before + os.getloadavg()[0]) / 2}


def ink_distance(images: torch.Tensor) -> float:
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 1, 3)
    return float((pixels - INKS).norm(dim=-1).min(dim=1).values.mean())


def palette_distance(images: torch.Tensor, examples: torch.Tensor) -> float:
    """All pixels of ``images`` pooled, against all pixels of ``examples``."""
    torch.manual_seed(0)  # the same random directions for every call
    pooled = images.transpose(0, 1).reshape(1, images.shape[1], -1, 1)
    return 1000 * float(sliced_wasserstein(pooled, examples, n_directions=64))


def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    """16 content assets and 6 riso examples that no training run used."""
    content = [to_tensor(a) for a in make_assets(seed=8, n=16, sizes=[(128, 128)])]
    examples = [to_tensor(make_riso_image(400 + i))[:, :128, :128] for i in range(6)]
    return torch.stack(content), torch.stack(examples)


def contact_sheet(path: Path, content: torch.Tensor, styled: torch.Tensor, examples: torch.Tensor):
    rows = [torch.cat(list(t[:6]), dim=2) for t in (content, styled, examples)]
    grid = torch.cat(rows, dim=1).permute(1, 2, 0).clamp(0, 1).numpy()
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.style_examples")
    parser.add_argument("--out", default="out/style-study")
    parser.add_argument("--counts", default="1,3,6", help="numbers of style examples to try")
    parser.add_argument(
        "--steps", type=int, default=800, help="style steps per run (the CLI default)"
    )
    parser.add_argument("--content", type=int, default=60, help="content assets to train on")
    args = parser.parse_args(argv)
    root, counts = Path(args.out), [int(n) for n in args.counts.split(",")]
    write_folders(root, counts, args.content)
    content, examples = held_out()
    print(
        f"held-out ink distance: plain content {ink_distance(content):.3f}, "
        f"riso examples {ink_distance(examples):.3f}"
    )
    print(
        f"held-out palette distance: plain content {palette_distance(content, examples):.1f}, "
        f"riso examples, one half against the other: {palette_distance(examples[::2], examples[1::2]):.1f} "
        f"(interleaved), {palette_distance(examples[:3], examples[3:]):.1f} (first three against last)"
    )
    print("examples  wall s  CPU s  load  ink distance  palette distance  last style  last colour")
    for n in counts:
        timing = train(root, n, args.steps)
        bundle = load_bundle(str(root / f"bundle-{n}"))
        with torch.inference_mode():
            styled = bundle.generator(content)
        contact_sheet(root / f"sheet-{n}.png", content, styled, examples)
        last = bundle.manifest.training["final_losses"]
        print(
            f"{n:8d}  {timing['wall_s']:6.0f}  {timing['cpu_s']:5.0f}  {timing['load']:4.1f}  "
            f"{ink_distance(styled):12.3f}  {palette_distance(styled, examples):16.1f}  "
            f"{last['style']:10.3f}  {last['colour']:11.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
