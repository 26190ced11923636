"""Benchmarks: `make bench` (bench/run.py) measures ShelfWise against raw-SQL ceilings in the same run."""
