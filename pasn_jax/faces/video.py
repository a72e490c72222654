"""Video frames through PyAV (FFmpeg), one at a time (memory stays bounded whatever the length).

Frames are numbered from 1 in decode order, as Aff-Wild2's annotation files count them (line i after the header
labels frame i); `frame_count` is the container's count when it states one, else None.
"""

import av
import numpy as np


class VideoError(ValueError):
    """A file that FFmpeg cannot read as a video; the message names it."""


class Video:
    """`with Video(path) as video: for number, rgb in video: ...`, rgb uint8 [H, W, 3], number 1, 2, ..."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{path}: not a readable video ({_reason(e)})") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{path}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.frame_count = int(self._stream.frames) or None
        rate = self._stream.average_rate
        self.fps = float(rate) if rate else None

    def __iter__(self):
        number = 0
        try:
            for frame in self._container.decode(self._stream):
                number += 1
                yield number, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: decoding failed after frame {number} ({_reason(e)})") from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def write_video(path: str, frames, fps: int = 25) -> None:
    """Writes uint8 RGB frames [H, W, 3] (even sizes) as an H.264/MPEG-4 file (tests and examples)."""
    frames = list(frames)
    with av.open(path, "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
