"""Benchmarks: each prints figures; none asserts a time (see docs/benchmarks.md)."""
