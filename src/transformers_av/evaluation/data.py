"""Evaluation manifests: loading local tables and converting the public SAVE annotation files.

A manifest is a JSONL file (one sample per line), a JSON list, or any table `datasets` reads (CSV, Parquet, a
`save_to_disk` folder), with the fields listed in `transformers_av.evaluation.tasks`. Media paths are resolved against
a media root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .tasks import Task

__all__ = ["convert_save_annotations", "load_manifest", "resolve_media", "write_jsonl"]

_VIDEO = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}
_AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}
_IMAGE = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"}


def load_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest into a list of dicts, adding `id` (the row number as a string) where it is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    if path.is_dir():
        import datasets  # the `eval` extra: only the saved-dataset, CSV and Parquet manifests need it

        rows = [dict(r) for r in datasets.load_from_disk(str(path))]
    elif path.suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    elif path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a JSON manifest must be a list of samples")
    else:
        import datasets  # the `eval` extra (as above)

        kind = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix)
        if kind is None:
            raise ValueError(f"{path}: unsupported manifest format (use .jsonl, .json, .csv, .parquet or a folder)")
        extra = {"delimiter": "\t"} if path.suffix == ".tsv" else {}
        rows = [dict(r) for r in datasets.load_dataset(kind, data_files=str(path), split="train", **extra)]
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: sample {index} is not an object")
        row["id"] = str(row.get("id", index))
        if row["id"] in seen:
            raise ValueError(f"{path}: duplicate sample id {row['id']!r}")
        seen.add(row["id"])
    return rows


def resolve_media(sample: dict[str, Any], task: Task, media_root: str | Path | None) -> dict[str, str]:
    """The task's media of a sample as absolute paths; raises naming the sample when a file is missing."""
    root = Path(media_root) if media_root is not None else Path(".")
    resolved = {}
    for kind, value in task.media_of(sample).items():
        path = Path(value)
        if not path.is_absolute():
            path = root / path
        if not path.exists():
            raise FileNotFoundError(f"task {task.name}: sample {sample['id']!r}: {kind} file not found: {path}")
        resolved[kind] = str(path)
    return resolved


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _media_fields(paths: Any) -> dict[str, str]:
    """Sort the SAVE `image` / `image_name` entry (a path or a list of paths) into video / audio / image by suffix."""
    if isinstance(paths, str):
        paths = [paths]
    out: dict[str, str] = {}
    for value in paths:
        suffix = Path(value).suffix.lower()
        kind = "video" if suffix in _VIDEO else "audio" if suffix in _AUDIO else "image" if suffix in _IMAGE else None
        if kind is None:
            raise ValueError(f"cannot tell whether {value!r} is a video, an audio file or an image (suffix)")
        if kind in out:
            raise ValueError(f"two {kind} files in one sample: {out[kind]!r} and {value!r}")
        out[kind] = value
    return out


def convert_save_annotations(annotation: str | Path, task: Task) -> list[dict[str, Any]]:
    """Convert a SAVE annotation JSON (github.com/bytedance/SALMONN, branch `videosalmonn`, `SAVEBench/`) to samples.

    Handles the formats of all files there: `image` / `image_name` (one path or a [visual, audio] pair), `question`,
    `answer` (a string or a list), `answer_candidates` -> `choices`, and AVSD's `conversation` list of
    [question, answer] turns, which becomes one sample per turn with the earlier turns in `history`. Ids are
    `<row>` (or `<row>_<turn>` for AVSD).
    """
    rows = json.loads(Path(annotation).read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{annotation}: expected a JSON list (a SAVE annotation file)")
    samples: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        media = _media_fields(row.get("image", row.get("image_name")))
        if "conversation" in row:
            turns = row["conversation"]
            for turn, (question, answer) in enumerate(turns):
                samples.append(
                    {"id": f"{index}_{turn}", "question": question, "answer": answer,
                     "history": [list(t) for t in turns[:turn]], **media}
                )
            continue
        sample: dict[str, Any] = {"id": str(index), "question": row.get("question", ""), "answer": row["answer"], **media}
        if "answer_candidates" in row:
            sample["choices"] = list(row["answer_candidates"])
        samples.append(sample)
    for sample in samples:
        missing = [kind for kind in task.requires if kind not in sample]
        if missing:
            raise ValueError(f"{annotation}: sample {sample['id']} lacks {', '.join(missing)}, required by {task.name}")
    return samples
