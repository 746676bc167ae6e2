"""Benchmarks: speed and scale figures measured on the local host and simulator (`make bench`)."""
