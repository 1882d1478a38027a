"""Benchmarks behind ``msrec bench``: each prints a table and notes the machine it ran on."""
