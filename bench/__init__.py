"""Benchmarks of the whole system as real processes (`python -m bench.run`, `make bench`)."""
