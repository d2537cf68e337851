"""Learned sync models. ``registry`` is torch-free; ``nets``, ``estimator`` and ``checkpoint`` import torch."""
