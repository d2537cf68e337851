"""Measurement: desynchronised trials made from in-sync clips, and their scoring."""
