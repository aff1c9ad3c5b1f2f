"""Run one piece of media work in a thread while the caller does another: a video's sound track decodes while its
frames do (FFmpeg and torch release the GIL, so the two share the CPUs).

The caller's error wins: leaving the block always waits for the thread, and the thread's result or error is only seen
through ``future.result()``, where the sequential code would have seen it.

Memory: glibc gives each thread its own malloc arena, and memory freed in it stays resident until it is trimmed; the
main thread never reuses it. So once the work is done the thread asks glibc to return its free pages
(``malloc_trim(0)``; elsewhere nothing is done). On a 10-minute video's sound track (Whisper features and the BEATs
fbank computed in the thread) that is ~190 MiB that would otherwise stay resident beside the decoded frames.
"""

from __future__ import annotations

import contextvars
import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["in_background", "release_freed_memory"]


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed_memory() -> None:
    """Return the memory freed in this thread's malloc arena to the system (glibc only; a no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _run_then_release(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    finally:
        release_freed_memory()


@contextmanager
def in_background(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Iterator[Future]:
    """``function(*args, **kwargs)`` started in a thread (with the caller's context variables) for the block's
    duration.

    Example::

        with in_background(load_audio, path, sampling_rate=16000) as track:
            clip = load_video(path)
        waveform = track.result().waveform  # raises load_audio's error, if any, here
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transformers-av-background")
    try:
        yield executor.submit(contextvars.copy_context().run, _run_then_release, function, *args, **kwargs)
    finally:
        executor.shutdown(wait=True)
