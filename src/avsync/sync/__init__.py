"""Offset search: score curves over candidate lags, and their reading."""
