"""Benchmarks of ttamer (see run.py); a package so that the book can import them."""
