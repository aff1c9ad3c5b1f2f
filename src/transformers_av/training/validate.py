"""`transformers-av validate-data MANIFEST`: check a whole dataset file up front -- every row's format and every media
file it names -- and report ALL bad rows at once, by their 1-based line, instead of a run dying at the first broken
file the collator reaches.

The same check runs, on by default, before `transformers-av train` reads its data (`validate_data`, with
`skip_bad_rows` to train on the good rows) and before `transformers-av evaluate` generates (`--no-validate-data`,
`--skip-bad-rows`).

Each media file is probed by `transformers_av.media.probe.probe_media`: opened, its stream found, its packets read to
the end (a file cut short is caught) and its first frame decoded; a progress bar counts the rows. With
``skip_bad_rows``, the good rows are written unchanged to a new manifest (the kept manifest) and the bad ones are
listed on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..media.probe import MEDIA_KINDS, find_bad_media
from .data import normalize_row, row_modality
from .mixing import modality_counts

__all__ = [
    "BadRow",
    "ManifestCheck",
    "add_validate_data_arguments",
    "check_manifest",
    "check_media_rows",
    "checked_manifest",
    "run_validate_data",
]


@dataclass
class BadRow:
    """One bad row: where it is (``"line 12"``) and everything wrong with it."""

    where: str
    problems: list[str]


@dataclass
class ManifestCheck:
    """The result of `check_manifest`.

    Attributes:
        path: the manifest.
        rows: how many rows it has.
        bad: the bad rows, in file order.
        kept: the good rows as written (a JSONL line, or a JSON item), in file order, for `write_kept`.
        is_jsonl: whether the manifest is JSONL (else a ``.json`` list).
        modalities: the good rows per modality ("visual", "audio", "audio_visual", "text": `row_modality`, a video
            alone by its sound track), what modality-augmented training and video-SALMONN's mixing see.
    """

    path: Path
    rows: int
    bad: list[BadRow] = field(default_factory=list)
    kept: list[Any] = field(default_factory=list)
    is_jsonl: bool = True
    modalities: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad

    def report(self) -> str:
        """A readable report: one line per problem, grouped by row."""
        per_modality = "rows per modality: " + ", ".join(f"{m} {n}" for m, n in self.modalities.items())
        if self.ok:
            return f"{self.path}: all {self.rows} rows are valid; {per_modality}."
        lines = [f"{self.path}: {len(self.bad)} of {self.rows} rows are bad:"]
        for row in self.bad:
            lines += [f"  {row.where}: {problem}" for problem in row.problems]
        return "\n".join(lines + [f"The good ones: {per_modality}."])

    def write_kept(self, target: str | os.PathLike) -> Path:
        """Write the good rows to `target` as JSONL: a JSONL manifest's lines unchanged, a ``.json`` list's items one
        per line."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = self.kept if self.is_jsonl else [json.dumps(item, ensure_ascii=False) for item in self.kept]
        target.write_text("".join(line.rstrip("\n") + "\n" for line in lines), encoding="utf-8")
        return target


def check_media_rows(
    rows: Sequence[tuple[str, Mapping[str, Any]]], media_root: str | os.PathLike | None, *, progress: bool = True
) -> list[BadRow]:
    """Probe the media of ``(where, {kind: path})`` rows (relative paths joined to `media_root`); the bad rows."""

    def resolved(path: Any) -> Any:
        if media_root is None or not isinstance(path, str) or os.path.isabs(path) or "://" in path:
            return path
        return os.path.join(os.fspath(media_root), path)

    entries = [(where, {kind: resolved(path) for kind, path in media.items()}) for where, media in rows]
    return [BadRow(where, problems) for where, problems in find_bad_media(entries, progress=progress)]


def check_manifest(
    path: str | os.PathLike, media_root: str | os.PathLike | None = None, *, progress: bool = True
) -> ManifestCheck:
    """Check every row of a training manifest (JSONL, or a ``.json`` list): its format and its media files.

    Args:
        path: the manifest.
        media_root: folder relative media paths are relative to (default: the manifest's folder, as in training).
        progress: show a progress bar while the media are probed.

    Returns:
        a `ManifestCheck` listing every bad row (JSONL: by 1-based line; ``.json``: by 0-based index) with all its
        problems.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No dataset file at {path}")
    root = path.parent if media_root is None else Path(media_root)
    is_jsonl = path.suffix != ".json"
    items: list[tuple[str, Any, Any]] = []  # (where, text to keep, parsed row or the JSON error)
    if is_jsonl:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    items.append((f"line {number}", line, json.loads(line)))
                except json.JSONDecodeError as error:
                    items.append((f"line {number}", line, error))
    else:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json dataset must hold a list of rows")
        items = [(f"row {i}", row, row) for i, row in enumerate(rows)]

    format_problems: dict[str, list[str]] = {}
    media_rows = []
    for where, _, row in items:
        if isinstance(row, json.JSONDecodeError):
            format_problems[where] = [f"not valid JSON ({row.msg})"]
            continue
        try:
            normalize_row(row)
        except ValueError as error:
            format_problems[where] = [str(error).split(": ", 1)[-1]]  # without the "row ?" prefix
        if isinstance(row, Mapping):
            media = {kind: row[kind] for kind in MEDIA_KINDS if isinstance(row.get(kind), str) and row[kind]}
            if media:
                media_rows.append((where, media))
    media_problems = {bad.where: bad.problems for bad in check_media_rows(media_rows, root, progress=progress)}

    check = ManifestCheck(path=path, rows=len(items), is_jsonl=is_jsonl)
    modalities = []
    for where, text, row in items:
        problems = format_problems.get(where, []) + media_problems.get(where, [])
        if problems:
            check.bad.append(BadRow(where, problems))
        else:
            check.kept.append(text)
            modalities.append(row_modality(normalize_row(row, media_root=root)))
    check.modalities = modality_counts(modalities)
    return check


def checked_manifest(
    path: str,
    media_root: str | None,
    *,
    skip_bad_rows: bool,
    kept_path: str | os.PathLike,
    progress: bool = True,
    write: bool = True,
) -> tuple[str, str | None]:
    """The manifest a run should read, after `check_manifest`: `path` itself when every row is good; with bad rows,
    a `ValueError` carrying the whole report -- or, with `skip_bad_rows`, the good rows written to `kept_path` (the
    report goes to stderr). `write=False` (the other processes of a distributed run) names `kept_path` without
    writing it (the main process does).

    Returns:
        ``(manifest, media_root)`` to read: the media root stays the original one (the kept manifest may sit in
        another folder).
    """
    check = check_manifest(path, media_root, progress=progress)
    if check.ok:
        return path, media_root
    if not skip_bad_rows:
        raise ValueError(check.report() + "\nFix these rows, or skip them (skip_bad_rows / --skip-bad-rows).")
    if len(check.kept) == 0:
        raise ValueError(check.report() + "\nNo row is left to use.")
    if write:
        check.write_kept(kept_path)
        print(check.report() + f"\nSkipping them: {len(check.kept)} rows kept in {kept_path}.", file=sys.stderr)
    return str(kept_path), str(Path(path).parent if media_root is None else media_root)


# ----------------------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------------------


def add_validate_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of the `validate-data` subcommand on `parser`."""
    parser.add_argument("manifest", help="training manifest: JSONL (one row per line) or a .json list of rows")
    parser.add_argument("--media-root", help="folder relative media paths are relative to (default: the manifest's)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="write the good rows to --output (and exit 0) instead of failing")
    parser.add_argument("--output", help="the kept manifest (JSONL) of --skip-bad-rows (default: NAME.kept.jsonl next "
                                         "to the manifest, so that its relative media paths stay valid)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_validate_data(args: argparse.Namespace) -> int:
    """Entry point of `transformers-av validate-data`: 0 when every row is good (or the bad ones were skipped), 1
    otherwise."""
    manifest = Path(args.manifest)
    check = check_manifest(manifest, args.media_root, progress=not args.no_progress)
    print(check.report())
    if check.ok:
        return 0
    if not args.skip_bad_rows:
        print("Fix these rows, or write the good ones to a new manifest with --skip-bad-rows.", file=sys.stderr)
        return 1
    output = Path(args.output) if args.output else manifest.with_name(f"{manifest.stem}.kept.jsonl")
    check.write_kept(output)
    print(f"wrote the {len(check.kept)} good rows to {output}")
    return 0
