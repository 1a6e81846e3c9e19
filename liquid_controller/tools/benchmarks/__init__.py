"""Benchmark suites for `liquid-controller bench` (one module per suite)."""
