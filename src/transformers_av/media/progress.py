"""A progress bar for decodes that take a while: it appears only after `PROGRESS_DELAY_SECONDS` of wall time, so
short clips (the usual case) print nothing, and counts media seconds decoded against the seconds expected."""

from __future__ import annotations

from typing import Any

__all__ = ["PROGRESS_DELAY_SECONDS", "DecodeProgress"]

#: Wall-clock seconds a decode runs before its progress bar is shown.
PROGRESS_DELAY_SECONDS = 3.0


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
