"""An evaluation split across processes (`accelerate launch -m transformers_av.cli evaluate ...`).

Every process reads the answers already in the output folder (all its predictions files), then process `i` of `n`
answers the samples still pending at positions `i, i + n, i + 2n, ...` and appends them to its own file,
`predictions.rank{i}.jsonl` (one process: `predictions.jsonl`), so no two processes ever write the same file. Rank 0
then reads every predictions file, puts the records back in manifest order and scores them.

So resuming works whichever process (and however many processes) answered a sample in an earlier run, and the work
left is split evenly again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runner import read_jsonl

__all__ = ["merge_in_manifest_order", "predictions_file", "read_all_predictions", "shard"]


def predictions_file(output_dir: str | Path, process_index: int, num_processes: int) -> Path:
    """The file process `process_index` appends its answers to."""
    name = "predictions.jsonl" if num_processes == 1 else f"predictions.rank{process_index}.jsonl"
    return Path(output_dir) / name


def shard(samples: Sequence[dict[str, Any]], process_index: int, num_processes: int) -> list[dict[str, Any]]:
    """The samples process `process_index` answers: every `num_processes`-th row from row `process_index` (strided,
    so processes get samples from the whole manifest and finish at about the same time)."""
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process index {process_index} is not in [0, {num_processes})")
    return list(samples[process_index::num_processes])


def read_all_predictions(output_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every complete prediction record in `output_dir`'s predictions files, by sample id."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(output_dir).glob("predictions*.jsonl")):
        for record in read_jsonl(path):
            records.setdefault(record["id"], record)
    return records


def merge_in_manifest_order(
    samples: Sequence[dict[str, Any]], records: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The records of `samples`, in manifest order; raises naming the samples no process answered."""
    missing = [s["id"] for s in samples if s["id"] not in records]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RuntimeError(f"{len(missing)} samples have no prediction in any predictions file: {shown}")
    return [records[s["id"]] for s in samples]
