"""Benchmarks: each prints a table, writes JSON and a plot; bench/RESULTS.md records the commands. Run
as modules from the repository root (`python -m bench.NAME`), so they import tests.checkpoints and
each other by name."""
