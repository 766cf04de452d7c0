"""load: open-model load tests, capacity ramps, soak and micro-benchmarks (`python -m load`)."""
