"""Style, score and correct batches of decoded images with one loaded bundle.

The engine is what every runner calls: the Beam model handler, the local loop
of the benchmarks, and the tests. It batches images of equal size together
(mixed sizes are normal) and retries a failing batch in halves down to single
images, so one bad image costs one error row and not its batch-mates.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stylefix_core.bundle import Bundle
from stylefix_core.config import BatchConfig, Mode, working_pixels
from stylefix_core.correction import choose_corrections
from stylefix_core.device import (
    inference_context,
    measure_bytes_per_pixel,
    pixels_that_fit,
    to_batch,
    to_pixels,
)
from stylefix_core.scoring.run_collapse import average_hash
from stylefix_core.scoring.scorer import DETECTORS, ScoreBatch, Scorer

log = logging.getLogger(__name__)
PROBE_SIDE = 256  # side of the image whose memory use sizes GPU batches


@dataclass(frozen=True)
class ImageResult:
    """What the engine decided for one image.

    ``output`` is the final image, or None where the input is to be written
    back unchanged (qa mode, nothing corrected), so that it stays bit-identical.
    ``scores`` holds each detector's calibrated z-score.
    """

    output: np.ndarray | None
    scores: dict[str, float]
    anomaly_score: float
    threshold: float
    is_anomaly: bool
    reasons: tuple[str, ...]
    corrected: bool
    correction: str
    score_after_correction: float
    device: str
    styled_hash: str = ""  # perceptual hash of the image as styled, before any correction


@dataclass(frozen=True)
class ImageFailure:
    """An image the models could not process, even alone."""

    error_type: str
    message: str
    stage: str = "inference"


Outcome = ImageResult | ImageFailure


WARM_UP_SIDE = 16  # the warm-up image's side, in pixels


_TURNS: dict[str, threading.Lock] = {}
_TURNS_GUARD = threading.Lock()


def device_turns(device: torch.device) -> threading.Lock:
    """The one lock of ``device`` in this process, shared by all its engines.

    Beam runs several bundles of one process at once, on threads that share
    an engine, and a job of several styles holds an engine per bundle. Each
    batch is sized to the process's whole share of GPU memory, so on a GPU
    every model call takes its turn: the kernels queue on one device anyway,
    and an image that ran out of memory only because another call held it
    would become a spurious error row.
    """
    with _TURNS_GUARD:
        return _TURNS.setdefault(str(device), threading.Lock())


class Engine:
    """Holds the bundle's networks on one device and processes batches."""

    def __init__(self, bundle: Bundle, mode: Mode, device: torch.device, batch: BatchConfig):
        self.bundle = bundle
        self.mode = mode
        self.device = device
        self.batch = batch
        for network in bundle.networks().values():
            network.to(device)
            if device.type == "cuda":
                network.to(memory_format=torch.channels_last)
        self.scorer = Scorer.for_bundle(bundle)
        # On CPU one image per network call is both faster (measured 1.1-2x at
        # 128-256 px: the working set stays in cache) and bit-for-bit
        # independent of how Beam happened to batch, which is what makes a
        # re-run write identical files. GPUs need the batch to be busy.
        self.images_per_call = 1 if device.type == "cpu" else batch.max_batch_size
        self.max_pixels_per_call = batch.max_batch_pixels
        self._one_at_a_time: contextlib.AbstractContextManager = contextlib.nullcontext()
        if device.type == "cuda":
            self._one_at_a_time = device_turns(device)
        with self._one_at_a_time:  # other engines' calls would skew the measurement
            if device.type == "cuda":
                self.max_pixels_per_call = min(batch.max_batch_pixels, self._pixels_that_fit())
            self._warm_up()

    def _warm_up(self) -> None:
        """One throwaway pass over a small image before the first real one.

        The first network call of a process may round differently from every
        later one (the same 24x20 image through the generator came out with
        other float bits in 2 of 8 fresh CPU processes, never on a second
        call), and a re-run or a resumed job must write the same bytes as the
        first run did.
        """
        probe = np.random.default_rng(0).integers(0, 256, (WARM_UP_SIDE, WARM_UP_SIDE, 3))
        # Engine's own pass, not an override's: a subclass is not set up yet.
        Engine._process_same_size(self, [probe.astype(np.uint8)])

    def process(self, images: Sequence[np.ndarray]) -> list[Outcome]:
        """One outcome per input image, in input order."""
        with self._one_at_a_time:
            return self._process(images)

    def _process(self, images: Sequence[np.ndarray]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(images)
        for indices in self._groups(images):
            results = run_in_halves(
                self._process_same_size, [images[i] for i in indices], self._on_failure
            )
            for index, outcome in zip(indices, results, strict=True):
                outcomes[index] = outcome
        missing = [i for i, o in enumerate(outcomes) if o is None]
        if missing:
            raise AssertionError(f"engine produced no outcome for images {missing}")
        return outcomes  # type: ignore[return-value]

    def _groups(self, images: Sequence[np.ndarray]) -> list[list[int]]:
        """Indices of equal-size images, cut to the batch's count and pixel limits."""
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            by_shape[image.shape].append(i)
        groups = []
        for shape, indices in by_shape.items():
            by_pixels = self.max_pixels_per_call // working_pixels(shape[0], shape[1])
            per_batch = max(1, min(self.images_per_call, by_pixels))
            groups += [indices[i : i + per_batch] for i in range(0, len(indices), per_batch)]
        return groups

    def _pixels_that_fit(self) -> int:
        """Batch pixels that fit this process's share of the GPU, from one probe image."""
        side = PROBE_SIDE
        probe = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        per_pixel = measure_bytes_per_pixel(
            lambda: self._process_same_size([probe]), side * side, self.device
        )
        total = torch.cuda.get_device_properties(self.device).total_memory
        resident = torch.cuda.memory_allocated(self.device)  # the weights
        fit = pixels_that_fit(total, resident, per_pixel, self.batch.gpu_memory_share)
        log.info(
            "%.0f bytes of GPU memory per pixel; batches of up to %d pixels fit %.0f%% of %s",
            per_pixel,
            fit,
            100 * self.batch.gpu_memory_share,
            self.device,
        )
        return fit

    def _on_failure(self, exc: Exception, size: int) -> None:
        log.warning(
            "model call on %d image(s) failed (%s: %s); retrying smaller",
            size,
            type(exc).__name__,
            exc,
        )
        if self.device.type == "cuda" and isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()

    def _process_same_size(self, images: list[np.ndarray]) -> list[Outcome]:
        with inference_context(self.device):
            x = to_batch(images, self.device)
            styling = self.mode is Mode.STYLE
            y = self.bundle.generator(x).float() if styling else x
            before = self.scorer(y, self.scorer.style_aims(x) if styling else None)
            best, names, after = choose_corrections(y, before, self.scorer, self.bundle.corrector)
            hashes = [average_hash(p) for p in to_pixels(y)]
        return self._results(best, names, before, after, hashes, keep_input=self.mode is Mode.QA)

    def _results(
        self,
        best: torch.Tensor,
        names: list[str],
        before: ScoreBatch,
        after: torch.Tensor,
        hashes: list[str],
        keep_input: bool,
    ) -> list[Outcome]:
        pixels = to_pixels(best)
        results: list[Outcome] = []
        for i, image in enumerate(pixels):
            failure = _non_finite(before, i, image.shape)
            if failure is not None:
                results.append(failure)
                continue
            corrected = bool(names[i])
            results.append(
                ImageResult(
                    output=None if keep_input and not corrected else image,
                    scores={d: float(before.z[d][i]) for d in DETECTORS},
                    anomaly_score=float(before.score[i]),
                    threshold=before.threshold,
                    is_anomaly=bool(before.score[i] > before.threshold),
                    reasons=tuple(before.reasons(i)),
                    corrected=corrected,
                    correction=names[i],
                    score_after_correction=float(after[i]),
                    device=str(self.device),
                    styled_hash=hashes[i],
                )
            )
        return results


def _non_finite(before: ScoreBatch, index: int, shape: tuple[int, ...]) -> ImageFailure | None:
    """A failure naming the detectors whose score is NaN or infinite, else None.

    A NaN score compares False with the threshold, so it would pass an image
    as clean without anybody being told; it is an error row instead.
    """
    if math.isfinite(float(before.score[index])):
        return None
    broken = [d for d in DETECTORS if not math.isfinite(float(before.z[d][index]))]
    return ImageFailure(
        error_type="NonFiniteScore",
        message=(
            f"detector(s) {', '.join(broken) or 'combined'} gave a non-finite score "
            f"for this {shape[1]}x{shape[0]} image, so it cannot be judged"
        ),
        stage="score",
    )


def run_in_halves(
    fn: Callable[[list], list], items: list, on_failure: Callable[[Exception, int], None]
) -> list:
    """Apply ``fn`` to the whole list; on failure, to each half; alone, record it.

    This is how a simulated or real out-of-memory, or one image that breaks a
    kernel, ends as one ImageFailure instead of a lost batch.
    """
    try:
        return fn(items)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed outcome
        # Without its traceback the failed call's frames, and on a GPU the
        # tensors they hold, are freed before the smaller retry needs the memory.
        error = exc.with_traceback(None)
    on_failure(error, len(items))
    if len(items) == 1:
        detail = str(error) or repr(error)
        message = f"the models failed on this image even alone: {detail}"
        return [ImageFailure(error_type=type(error).__name__, message=message)]
    middle = len(items) // 2
    return run_in_halves(fn, items[:middle], on_failure) + run_in_halves(
        fn, items[middle:], on_failure
    )
