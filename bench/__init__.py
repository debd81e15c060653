"""Benchmarks run by ``nox -s bench``: cvmchain side by side with its peers."""
