"""Benchmarks of Wharf's specification core; each module runs as ``python -m bench.<name>``."""
