"""What a media input is -- a path, bytes, a file-like object or an in-memory array -- and opening the encoded ones
(files and buffers) as PyAV containers.

PyAV is imported only when a container is opened, so the package imports without the ``video`` extra.
"""

from __future__ import annotations

import io
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

from .errors import MediaDecodeError, NoAudioTrackError, NoVideoTrackError, describe_source

__all__ = [
    "ContainerOpener",
    "PathLike",
    "check_file",
    "TRUNCATION_TOLERANCE_SECONDS",
    "declared_duration",
    "is_cut_short",
    "first_stream",
    "import_av",
    "is_encoded",
    "is_file_like",
    "is_path",
    "is_torch_tensor",
]

PathLike = Union[str, "os.PathLike[str]"]

#: A stream may end this much (or 3 frame periods, if longer) before its declared duration: past it, the file counts
#: as truncated or damaged (an error unless partial media are allowed). Half a second absorbs codec delay and rounding.
TRUNCATION_TOLERANCE_SECONDS = Fraction(1, 2)


def import_av():
    """The `av` module, or an `ImportError` that says how to install it."""
    try:
        import av
    except ImportError as error:  # pragma: no cover
        raise ImportError(
            "Decoding media needs PyAV: `pip install av` (or `pip install transformers-av[video]`)."
        ) from error
    return av


def is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def is_file_like(source: Any) -> bool:
    return hasattr(source, "read") and callable(source.read)


def is_encoded(source: Any) -> bool:
    """Whether `source` holds encoded media to decode (a path, a file-like object or bytes) rather than samples or
    pixels already in memory."""
    return is_path(source) or is_file_like(source) or isinstance(source, (bytes, bytearray, memoryview))


def is_torch_tensor(value: Any) -> bool:
    # by type name, so that checking an input never imports torch
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def check_file(path: PathLike) -> Path:
    """`path` as a `Path` to an existing regular file (`FileNotFoundError` / `MediaDecodeError` otherwise)."""
    text = os.fspath(path)
    if isinstance(text, str) and "://" in text:
        scheme = text.split("://", 1)[0]
        raise FileNotFoundError(
            f"Media file not found: {text!r} is a {scheme}:// URL; only http:// and https:// URLs are downloaded "
            "(fetch the file yourself and pass its local path)"
        )
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"Media file not found: {str(path)!r}")
    if not path.is_file():
        raise MediaDecodeError(f"Expected a media file, got a directory or special file: {str(path)!r}")
    return path


class ContainerOpener:
    """Opens a PyAV container for a path, bytes or a seekable file-like object -- several times if needed (reading a
    duration from the packets opens a second container)."""

    def __init__(self, source: Any, name: str | None = None):
        self.name = name or describe_source(source)
        if is_path(source):
            self.target: Any = str(check_file(source))
            self.start = None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise MediaDecodeError(f"Cannot decode {self.name}: the buffer is empty")
            self.target = io.BytesIO(bytes(source))
            self.start = 0
        elif is_file_like(source):
            self.target = source
            try:
                self.start = source.tell() if source.seekable() else None
            except (AttributeError, OSError):
                self.start = None
        else:  # pragma: no cover - callers dispatch before
            raise TypeError(f"Cannot open {self.name} as media")

    @property
    def is_seekable_buffer(self) -> bool:
        """A buffer or file object that can be rewound (every open container shares its read position)."""
        return not isinstance(self.target, str) and self.start is not None

    @property
    def is_file(self) -> bool:
        """A path: every open container reads on its own (several can be read at once)."""
        return isinstance(self.target, str)

    @property
    def reopenable(self) -> bool:
        return isinstance(self.target, str) or self.start is not None

    def rewind(self) -> None:
        """Put a buffer or file object back where it was given to us."""
        if self.is_seekable_buffer:
            self.target.seek(self.start)

    def open(self):
        av = import_av()
        self.rewind()
        try:
            return av.open(self.target, mode="r")
        except av.FFmpegError as error:
            raise MediaDecodeError(
                f"Cannot open {self.name}: FFmpeg cannot read it as a media container (corrupt, truncated or not a "
                f"video/audio file): {error}"
            ) from error


def first_stream(container, kind: str, name: str):
    """The first `kind` (`"video"` or `"audio"`) stream of an open container, or an error naming the streams found."""
    if len(container.streams) == 0:
        raise MediaDecodeError(f"{name} contains no audio or video stream (empty / zero-length media)")
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        if kind == "video":
            raise NoVideoTrackError(f"{name} has no video stream (streams: {kinds}); expected a video file")
        raise NoAudioTrackError(f"{name} has no audio track (streams: {kinds}); expected a file with sound")
    return streams[0]


_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


def declared_duration(container, stream) -> tuple[Fraction | None, bool]:
    """The duration the header declares for `stream`, in seconds, and whether it is the stream's own.

    The stream's duration, else its ``DURATION`` tag (what the Matroska muxer writes per track), are its own. Else the
    container's duration stands in -- exact for a file with this one stream, only an upper bound when the file has
    several (the longest track sets it). ``(None, False)`` when there is none.
    """
    if stream.duration is not None and stream.time_base:
        return stream.duration * Fraction(stream.time_base), True
    match = _DURATION_TAG.match(str(stream.metadata.get("DURATION", "")).strip())
    if match:
        hours, minutes, seconds, fraction = match.groups()
        value = Fraction(int(hours) * 3600 + int(minutes) * 60 + int(seconds))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        return value, True
    if container.duration is not None:
        return Fraction(container.duration, 1_000_000), len(container.streams) == 1
    return None, False


def is_cut_short(
    declared: Fraction | None, exact: bool, decoded: Fraction, frame_period: Fraction = Fraction(0)
) -> bool:
    """Whether a stream decoded up to `decoded` seconds ends too early for its `declared` duration (see
    `declared_duration`): by more than `TRUNCATION_TOLERANCE_SECONDS` or 3 frame periods -- or, when the duration
    is only the container's (`exact` false; tracks may legitimately end before the longest one), by more than 2 s and
    5 % of it."""
    if declared is None:
        return False
    tolerance = max(TRUNCATION_TOLERANCE_SECONDS, 3 * frame_period)
    if not exact:
        tolerance = max(tolerance, Fraction(2), declared / 20)
    return declared - decoded > tolerance
