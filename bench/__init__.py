"""Benchmarks (not part of the application): each script runs on its own, see docs/performance.md."""
