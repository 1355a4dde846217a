"""Datasets: the synthetic generator, real annotation formats, transforms and loaders."""
