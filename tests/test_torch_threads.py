"""Torch threads per worker: one on Dataflow, a fair share of the cores when the local runner starts several."""

from __future__ import annotations

import os

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import to_job_config

BASE = ["--input=in", "--output=out"]
CORES = len(os.sched_getaffinity(0))


def _threads(*flags: str) -> int:
    return to_job_config(PipelineOptions([*BASE, *flags])).torch_threads


def test_one_worker_keeps_torch_default():
    assert _threads() == 0
    assert _threads("--direct_num_workers=4") == 0  # in_memory runs one worker anyway


def test_several_local_workers_share_the_cores():
    for mode in ("multi_processing", "multi_threading"):
        flags = (f"--direct_running_mode={mode}", "--direct_num_workers=2")
        assert _threads(*flags) == max(1, CORES // 2)
    assert _threads("--direct_running_mode=multi_processing", "--direct_num_workers=0") == 1


def test_an_explicit_thread_count_wins():
    assert _threads("--torch_threads=3", "--direct_running_mode=multi_processing") == 3
    assert _threads("--torch_threads=3") == 3


def test_dataflow_workers_take_one_thread_each():
    assert _threads("--runner=DataflowRunner") == 1
    assert _threads("--runner=dataflow") == 1
    assert _threads("--runner=DataflowRunner", "--torch_threads=4") == 4
