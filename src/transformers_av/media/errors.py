"""The errors raised while decoding media, and the short description of an input that starts every message.

Every error names its input, so a bad file in a batch of thousands is found from the message alone. The three decoding
error types are ``ValueError`` subclasses: code that already catches ``ValueError`` for bad inputs keeps working; a URL
that cannot be downloaded raises `MediaDownloadError`, a ``ConnectionError``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["MediaDecodeError", "MediaDownloadError", "NoAudioTrackError", "NoVideoTrackError", "describe_source"]


class MediaDecodeError(ValueError):
    """A media file (or buffer) that cannot be opened or decoded: corrupt, truncated, not media, or empty."""


class MediaDownloadError(ConnectionError):
    """An ``http(s)://`` media input that cannot be downloaded: offline mode, no network, or an HTTP error."""


class NoAudioTrackError(ValueError):
    """The file has no audio stream (e.g. a silent video given to `load_audio`)."""


class NoVideoTrackError(ValueError):
    """The file has no video stream (e.g. an audio file given to `load_video`)."""


def describe_source(source: Any) -> str:
    """A short name for a media input in messages: the quoted path, the size of a buffer, or the type (and file name)
    of a file-like object -- never its content."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return f"<{type(source).__name__} {name!r}>"
    return f"<{type(source).__name__}>"
