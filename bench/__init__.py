"""Benchmarks: speed (``bench.run``) and quality (``bench.quality``). Not tests."""
