"""Synthetic data: the bootstrap event log and the demo catalogue. Never imported by a pure core."""
