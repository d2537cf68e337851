"""Media input and output through PyAV (FFmpeg libraries; no shell, no subprocess)."""
from avsync.media.decode import MediaInfo, iter_audio_chunks, iter_video_frames, open_input, probe, read_audio

__all__ = ["MediaInfo", "iter_audio_chunks", "iter_video_frames", "open_input", "probe", "read_audio"]
