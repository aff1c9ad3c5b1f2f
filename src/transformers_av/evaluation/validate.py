"""The media check `transformers-av evaluate` runs before generating: every media file of the samples to evaluate is
probed (`transformers_av.media.probe`), and all bad samples are reported at once -- by their 1-based line in a JSONL
manifest -- instead of the run stopping at the first one."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..media.probe import find_bad_media
from .tasks import Task

__all__ = ["checked_samples"]


def _row_names(manifest: str | Path, count: int) -> list[str]:
    """How to name the samples of `manifest` (in `load_manifest` order): "line N" for JSONL, else "row i"."""
    path = Path(manifest)
    if path.is_file() and path.suffix in (".jsonl", ".ndjson"):
        lines = path.read_text(encoding="utf-8").splitlines()
        numbers = [number for number, line in enumerate(lines, start=1) if line.strip()]
        return [f"line {number}" for number in numbers[:count]]
    return [f"row {index}" for index in range(count)]


def checked_samples(
    samples: Sequence[dict[str, Any]],
    task: Task,
    manifest: str | Path,
    media_root: str | Path | None,
    *,
    skip_bad_rows: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """`samples` after probing the media `task` reads from each (paths resolved against `media_root`, as
    `resolve_media` does): all of them when every file is good; with bad ones, a `ValueError` listing every bad
    sample -- or, with `skip_bad_rows`, the good samples (the bad ones are listed on stderr, and are not scored)."""
    root = Path(media_root) if media_root is not None else Path(".")
    rows, problems = [], {}
    for name, sample in zip(_row_names(manifest, len(samples)), samples):
        where = f"{name} (sample {sample['id']!r})"
        try:
            media = task.media_of(sample)
        except ValueError as error:
            problems[where] = [str(error)]
            continue
        resolved = {kind: str(path if Path(path).is_absolute() else root / path) for kind, path in media.items()}
        rows.append((where, resolved))
    problems.update(find_bad_media(rows, progress=progress))
    if not problems:
        return list(samples)
    names = [f"{name} (sample {sample['id']!r})" for name, sample in zip(_row_names(manifest, len(samples)), samples)]
    report = "\n".join(
        [f"{manifest}: {len(problems)} of {len(samples)} samples have bad media:"]
        + [f"  {where}: {problem}" for where in names if where in problems for problem in problems[where]]
    )
    if not skip_bad_rows:
        raise ValueError(report + "\nFix them, or leave them out of the evaluation with --skip-bad-rows.")
    print(report + f"\nSkipping them: {len(samples) - len(problems)} samples are evaluated.", file=sys.stderr)
    return [sample for where, sample in zip(names, samples) if where not in problems]
