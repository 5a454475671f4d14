"""Benchmarks (``make bench``); see bench/README.md. Not part of the application or the test suite."""
