"""Benchmarks: each ``bench_<name>.py`` has ``main() -> dict`` and reports ours vs a baseline."""
