"""A progress bar for decodes that take a while: it appears only after `PROGRESS_DELAY_SECONDS` of wall time and never
for media known to last less than `PROGRESS_MIN_MEDIA_SECONDS`, so short clips (the usual case) print nothing, and it
counts media seconds decoded against the seconds expected."""

from __future__ import annotations

from typing import Any

__all__ = ["PROGRESS_DELAY_SECONDS", "PROGRESS_MIN_MEDIA_SECONDS", "DecodeProgress"]

#: Wall-clock seconds a decode runs before its progress bar is shown.
PROGRESS_DELAY_SECONDS = 3.0
#: Media known to last less than this never show a bar: a training batch decodes many short clips, and on a loaded
#: machine one of them can pass the delay (a bar per clip would flood the training log).
PROGRESS_MIN_MEDIA_SECONDS = 30.0


class DecodeProgress:
    """``tqdm`` over media seconds: ``advance_to(t)`` after each decoded frame at time ``t``; `close` at the end.

    Args:
        name: the input, shown as the bar's description.
        total_seconds: the seconds the decode is expected to cover (header duration or ``max_seconds``), or ``None``
            when unknown (the bar then counts without a total).
        what: ``"video"`` or ``"audio"``, for the description.
    """

    def __init__(self, name: str, total_seconds: float | None, what: str):
        from tqdm.auto import tqdm  # a dependency of transformers

        self._bar: Any = tqdm(
            total=None if total_seconds is None else round(float(total_seconds), 1),
            desc=f"Decoding the {what} of {name}",
            unit="s",
            delay=PROGRESS_DELAY_SECONDS,
            leave=False,
            mininterval=0.5,
            disable=total_seconds is not None and total_seconds < PROGRESS_MIN_MEDIA_SECONDS,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} s [{elapsed}<{remaining}]"
            if total_seconds is not None
            else None,
        )
        self._shown = 0.0

    def advance_to(self, seconds: float) -> None:
        seconds = float(seconds)
        if seconds > self._shown:
            self._bar.update(seconds - self._shown)
            self._shown = seconds

    def close(self) -> None:
        self._bar.close()
