"""Device choice and the tensor transfers that depend on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from stylefix_core.errors import DeviceUnavailableError


def resolve_device(preference: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error.

    A quiet fall-back to CPU would turn a GPU job into one a hundred times
    slower with nobody told, so ``cuda`` without CUDA raises instead.
    """
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "device 'cuda' was requested but this worker has no usable CUDA device"
        )
    return torch.device(preference)


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """No autograd anywhere; float16 autocast for the networks on CUDA."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield


def to_batch(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Same-shape (H, W, 3) uint8 images -> (N, 3, H, W) float32 in [0, 1].

    The uint8 stack is what crosses to the GPU (four times fewer bytes than
    float), from pinned memory so the copy can overlap compute.
    """
    stacked = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2)
    if device.type == "cuda":
        stacked = stacked.contiguous().pin_memory().to(device, non_blocking=True)
    return stacked.to(device).float().div_(255.0)


def to_pixels(batch: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) float in [0, 1] -> list of (H, W, 3) uint8."""
    quantised = batch.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return list(quantised.permute(0, 2, 3, 1).cpu().numpy())


def measure_bytes_per_pixel(call: Callable[[], object], pixels: int, device: torch.device) -> float:
    """GPU memory that ``call`` allocates beyond what was resident, per input pixel.

    Activations grow with pixels, so one measured call tells how many pixels a
    batch may hold; the fixed overheads in it only make the estimate safer.
    """
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)
    call()
    torch.cuda.synchronize(device)
    return max(torch.cuda.max_memory_allocated(device) - resident, 1) / pixels


def pixels_that_fit(
    memory_bytes: int, resident_bytes: int, bytes_per_pixel: float, share: float
) -> int:
    """Pixels one model call may hold so that this process stays within ``share`` of memory.

    The resident bytes (weights, the allocator's cache) count against the
    share; zero means not even one pixel fits, and the caller still tries one
    image, whose out-of-memory error then becomes that image's failure.
    """
    spare = memory_bytes * share - resident_bytes
    return max(0, int(spare / bytes_per_pixel))
