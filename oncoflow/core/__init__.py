"""Core types every layer shares: settings (validated at start-up), the volume with its patient geometry, prompt
tensors, change thresholds, disk space.
"""
