"""Write a corrected copy: video copied bit for bit, audio shifted sample-exactly."""
from avsync.correct.remux import CorrectionReport, correct, default_output_path

__all__ = ["CorrectionReport", "correct", "default_output_path"]
