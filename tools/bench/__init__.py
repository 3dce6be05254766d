"""Benchmarks and load runs: the engine against its peers, the gateway under
camera-fleet load, the expert cache, shared cores, slow storage."""
