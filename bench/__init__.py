"""Benchmarks: this endpoint and the Linux kernel measured side by side in one run."""
