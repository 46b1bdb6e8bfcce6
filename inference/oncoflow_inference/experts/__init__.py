"""Segmentation experts served by the worker. Each owns its model and its preprocessing."""
