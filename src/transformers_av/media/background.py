"""Run one piece of media work in a thread while the caller does another: a video's sound track decodes while its
frames do (FFmpeg and torch release the GIL, so the two share the CPUs).

The caller's error wins: leaving the block always waits for the thread, and the thread's result or error is only seen
through ``future.result()``, where the sequential code would have seen it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

__all__ = ["in_background"]


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
        yield executor.submit(contextvars.copy_context().run, function, *args, **kwargs)
    finally:
        executor.shutdown(wait=True)
