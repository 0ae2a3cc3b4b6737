"""Benchmarks of the platform's backbone, run against the local stack (see README.md)."""
