"""Runs a container from layer directories and a spec; knows nothing of registries."""
