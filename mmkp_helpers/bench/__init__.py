"""Benchmark scripts (``python -m mmkp_helpers.bench.<name>``); each prints one JSON object."""
