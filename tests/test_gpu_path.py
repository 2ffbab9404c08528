"""The GPU path: memory-sized batches, out-of-memory retries, no silent CPU fallback.

The arithmetic and the retry's memory release run everywhere; the tests that
need CUDA skip cleanly without it. About 2 s on CPU.
"""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import to_job_config
from stylefix_core.bundle import load_bundle
from stylefix_core.config import BatchConfig, JobConfig, Mode
from stylefix_core.device import pixels_that_fit
from stylefix_core.engine import Engine, ImageFailure, ImageResult, run_in_halves
from stylefix_core.synthetic import make_assets

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class _Activation:
    """Stands in for a batch's tensors: something big that the failed call held."""


def test_a_failed_attempt_frees_what_it_held_before_the_smaller_retry():
    held: list[weakref.ref] = []
    alive_at_retry: list[int] = []

    def fn(items):
        alive_at_retry.append(sum(ref() is not None for ref in held))
        activation = _Activation()
        held.append(weakref.ref(activation))
        if len(items) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return list(items)

    alive_at_failure: list[int] = []

    def on_failure(exc, size):
        alive_at_failure.append(sum(ref() is not None for ref in held))

    gc.disable()  # only reference counting may free it, as it must on a GPU's hot path
    try:
        assert run_in_halves(fn, ["a", "b", "c"], on_failure) == ["a", "b", "c"]
    finally:
        gc.enable()
    assert alive_at_failure == [0, 0]  # the whole batch, then the first half of two
    assert alive_at_retry == [0] * len(alive_at_retry) and len(alive_at_retry) == 5


def test_a_lone_failure_is_that_image_s_typed_outcome():
    def fn(items):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    (outcome,) = run_in_halves(fn, ["only"], lambda exc, n: None)
    assert outcome == ImageFailure(
        "OutOfMemoryError",
        "the models failed on this image even alone: CUDA out of memory. Tried to allocate 2.00 GiB",
    )


@pytest.mark.parametrize(
    ("memory", "resident", "per_pixel", "share", "expected"),
    [
        (24 * 2**30, 2**30, 1024.0, 0.5, (12 * 2**30 - 2**30) // 1024),
        (24 * 2**30, 0, 3000.0, 0.1, int(24 * 2**30 * 0.1 / 3000.0)),
        (8 * 2**30, 9 * 2**30, 1024.0, 1.0, 0),  # the weights alone overflow the share
    ],
)
def test_pixels_that_fit_the_share_of_memory(memory, resident, per_pixel, share, expected):
    assert pixels_that_fit(memory, resident, per_pixel, share) == expected


def test_the_memory_share_is_an_option_and_is_validated():
    config = to_job_config(PipelineOptions(["--input=i", "--output=o", "--gpu_memory_share=0.125"]))
    assert config.batch.gpu_memory_share == 0.125
    assert config.resolved_run_id() == JobConfig(input="i", output="o").resolved_run_id()
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="gpu_memory_share"):
            JobConfig(input="i", output="o", batch=BatchConfig(gpu_memory_share=bad))


def test_on_cpu_batches_keep_the_configured_pixel_limit():
    engine = Engine(
        load_bundle(""), Mode.QA, torch.device("cpu"), BatchConfig(max_batch_pixels=4096)
    )
    assert engine.max_pixels_per_call == 4096


@pytest.mark.gpu
@needs_cuda
def test_gpu_batches_are_cut_to_the_memory_share():
    bundle = load_bundle("")
    roomy = Engine(bundle, Mode.STYLE, torch.device("cuda"), BatchConfig(max_batch_pixels=10**12))
    tight = Engine(
        bundle,
        Mode.STYLE,
        torch.device("cuda"),
        BatchConfig(max_batch_pixels=10**12, gpu_memory_share=0.01),
    )
    assert 0 < tight.max_pixels_per_call < roomy.max_pixels_per_call < 10**12


@pytest.mark.gpu
@needs_cuda
def test_out_of_memory_on_a_gpu_batch_retries_smaller_and_loses_nothing():
    bundle = load_bundle("")
    engine = Engine(bundle, Mode.STYLE, torch.device("cuda"), BatchConfig(max_batch_size=8))
    generator = bundle.generator
    sizes: list[int] = []

    def tight_generator(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return generator(x)

    bundle.generator = tight_generator  # type: ignore[assignment]
    images = make_assets(seed=5, n=8, sizes=[(64, 64)] * 8)
    outcomes = engine.process(images)
    assert all(isinstance(o, ImageResult) for o in outcomes) and len(outcomes) == 8
    assert sizes[0] == 8 and max(sizes[1:]) <= 4 and all(o.device == "cuda" for o in outcomes)
    assert np.stack([o.output for o in outcomes]).dtype == np.uint8


@needs_cuda
def test_statistics_and_the_damage_classifier_score_on_cuda_as_on_cpu():
    """The networks run under float16 autocast on CUDA; the statistics and the
    damage classifier over them must not, or their calibration (fitted in
    float32) is off on GPU workers."""
    from stylefix_core.bundle import load_bundle
    from stylefix_core.device import inference_context
    from stylefix_core.scoring.scorer import NETWORK_DETECTORS, Scorer

    bundle = load_bundle("")
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    raw = {}
    for device in (torch.device("cpu"), torch.device("cuda")):
        for network in bundle.networks().values():
            network.to(device)
        scorer = Scorer.for_bundle(bundle)
        with inference_context(device):
            raw[device.type] = scorer.raw(x.to(device))
    for d, value in raw["cpu"].items():
        if d not in NETWORK_DETECTORS:
            torch.testing.assert_close(raw["cuda"][d].cpu(), value, rtol=1e-3, atol=1e-3, msg=d)


class _Counting(Engine):
    """Counts how many threads are inside a model call at once."""

    inside = 0
    most = 0

    def _process_same_size(self, images):
        type(self).inside += 1
        type(self).most = max(type(self).most, type(self).inside)
        try:
            threading.Event().wait(0.05)
            return super()._process_same_size(images)
        finally:
            type(self).inside -= 1


def _from_threads(engine: Engine, batches: list) -> list:
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        return list(pool.map(engine.process, batches))


def test_threads_sharing_an_engine_take_turns_where_it_holds_a_lock():
    """On CUDA the engine holds one: each batch is sized to all of the process's memory."""
    engine = _Counting(load_bundle(""), Mode.QA, torch.device("cpu"), BatchConfig())
    engine._one_at_a_time = threading.Lock()
    batches = [[image] for image in make_assets(seed=3, n=4, sizes=[(32, 32)])]
    _Counting.most = 0
    _from_threads(engine, batches)
    assert _Counting.most == 1


def test_every_engine_on_a_device_shares_its_turns():
    """Engines of several bundles on one GPU take turns with one another too."""
    from stylefix_core.engine import device_turns

    cuda = torch.device("cuda")
    assert device_turns(cuda) is device_turns(torch.device("cuda"))
    assert device_turns(cuda) is not device_turns(torch.device("cuda", 1))


@needs_cuda
def test_threads_sharing_a_cuda_engine_get_what_one_thread_gets():
    from stylefix_core.engine import device_turns

    engine = _Counting(load_bundle(""), Mode.QA, torch.device("cuda"), BatchConfig())
    assert engine._one_at_a_time is device_turns(torch.device("cuda"))
    batches = [[image] for image in make_assets(seed=4, n=6, sizes=[(64, 64), (48, 80)])]
    alone = [engine.process(batch) for batch in batches]
    _Counting.most = 0
    together = _from_threads(engine, batches)
    assert _Counting.most == 1  # never two model calls on the device at once
    for one, other in zip(alone, together, strict=True):
        assert [o.styled_hash for o in one] == [o.styled_hash for o in other]
