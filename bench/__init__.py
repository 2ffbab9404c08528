"""Benchmarks, not tests: nothing here asserts a timing.

``python -m bench.run`` (``make bench``) prints throughput and memory ratios
against baselines measured side by side in one run, because on a shared
machine only a ratio against a baseline taken in the same minutes means
anything. ``python -m bench.quality`` (``make eval``) measures detection and
correction quality on real photographs.
"""
