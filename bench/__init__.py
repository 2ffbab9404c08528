"""``make bench``: StyleFix throughput measured against this machine's compute ceiling.

Benchmarks are not tests: nothing here asserts a timing. ``python -m bench.run``
prints ratios measured side by side in one run, because on a shared machine
only a ratio against a baseline taken in the same minutes means anything.
"""
