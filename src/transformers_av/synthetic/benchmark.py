"""A synthetic audio-visual benchmark: five task families, each needing a different ability, on generated clips.

Every clip is a short video (4 s, 32 x 32 px, 4 fps, 16 kHz mono) written by [`make_av_clip`] with a question whose
answer is one short string, scored by exact match (FAVOR §4.1 / video-SALMONN Appendix C's rule: "one hit is counted
only when the generated answer exactly matches the reference"). The families:

| family | question | what it needs | chance |
|---|---|---|---|
| `speech` | which digits do the tones say? | fine audio content: three 0.5 s tones, each pitch one digit (the "speech" of this world), read back in order -- one digit per 0.5 s frame | 1/64 |
| `visual` | what colour is the screen? | the pictures only (a distracting beep plays) | 1/4 |
| `sync` | what colour was on screen when the beep sounded? | synchronisation: the frame under the beep | 1/4 |
| `count` | how many beeps? | long-range counting over the whole clip (beeps spread over many 0.5 s frames) | 1/4 |
| `match` | does the sound belong to this clip? | audio-visual matching: each colour has its own tone pitch; half the clips pair a colour with another colour's tone | 1/2 |

Everything is deterministic: clip `index` of split `split` of a benchmark with seed `seed` draws its content from
`numpy.random.default_rng([seed, SPLITS.index(split), index])`, so it depends on nothing else (not on how many
clips are written, nor on the order). The test split and the demo's fresh clips use other streams than the
training split, so they are clips the model was not trained on.

[`write_benchmark`] writes `train.jsonl`, `validation.jsonl` and `test.jsonl` (rows in the training format of
`transformers_av.training.data`: `video`, `prompt`, `answer`, plus `family` and each family's ground truth, one type per
field so that `load_av_dataset` can build its table) with the clips under one folder per split; [`make_benchmark_clip`] writes one clip (the demo's); [`answer_rows`] has a model
answer rows (greedy decoding, batched). Scoring lives above this layer: `transformers_av.evaluation.scoring` has the
rule each family names (`TaskFamily.rule`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .media import make_av_clip
from .tasks import MATCH_TONES, SYNC_PALETTE, SYNC_QUESTION

__all__ = [
    "BENCHMARK_CLIP",
    "COUNT_BEEP",
    "DIGIT_TONES",
    "FAMILIES",
    "SPLITS",
    "BenchmarkClipSettings",
    "TaskFamily",
    "answer_rows",
    "benchmark_clip_rng",
    "make_benchmark_clip",
    "write_benchmark",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test", "demo")

#: digit -> tone pitch (Hz) of the `speech` family: far enough apart to land in different mel bins of an 80-bin
#: Whisper log-mel, and away from the 1 kHz beep and the `match` tones
DIGIT_TONES: dict[str, float] = {"1": 450.0, "2": 800.0, "3": 1700.0, "4": 3300.0}
#: the beep of the `sync`, `count` and `visual` families: (duration s, Hz)
COUNT_BEEP: tuple[float, float] = (0.25, 1000.0)


@dataclass(frozen=True)
class BenchmarkClipSettings:
    """The shape of every clip of the benchmark (small, so that tiny models train on 2 CPU cores in minutes)."""

    seconds: int = 4
    fps: float = 4.0
    size: tuple[int, int] = (32, 32)
    sampling_rate: int = 16000

    def __post_init__(self):
        if not isinstance(self.seconds, int) or self.seconds < 2:
            # the `speech` family says three 0.5 s digits; `count` needs beeps a frame apart
            raise ValueError(f"benchmark clips last a whole number of seconds >= 2, got seconds={self.seconds!r}")


BENCHMARK_CLIP = BenchmarkClipSettings()


@dataclass(frozen=True)
class TaskFamily:
    """One family of questions: its prompt, what it tests, how it is scored and how a clip is drawn.

    Attributes:
        name: the family's name (the `family` field of the manifest rows).
        question: the prompt, the same for every clip of the family.
        ability: what the family needs (one line, for tables).
        chance: accuracy of uniform guessing among the answers the family can have.
        rule: the scoring rule of `transformers_av.evaluation.scoring` (`exact_match` for every family here).
        draw: `(rng, settings) -> (make_av_clip keyword arguments, answer, ground truth fields)`.
    """

    name: str
    question: str
    ability: str
    chance: float
    draw: Callable[[np.random.Generator, BenchmarkClipSettings], tuple[dict[str, Any], str, dict[str, Any]]]
    rule: str = "exact_match"


def _random_colors(rng: np.random.Generator, seconds: int) -> list[str]:
    """One colour per second, no colour twice in a row (a distractor for the audio families)."""
    colors = [SYNC_PALETTE[int(rng.integers(len(SYNC_PALETTE)))]]
    while len(colors) < seconds:
        colors.append(SYNC_PALETTE[(SYNC_PALETTE.index(colors[-1]) + 1 + int(rng.integers(len(SYNC_PALETTE) - 1)))
                                   % len(SYNC_PALETTE)])
    return colors


def _draw_speech(rng: np.random.Generator, settings: BenchmarkClipSettings):
    digits = [list(DIGIT_TONES)[int(k)] for k in rng.integers(len(DIGIT_TONES), size=3)]
    # three back-to-back 0.5 s tones starting on a 0.5 s frame boundary: one digit per fine-resolution window
    first_slot = int(rng.integers(2 * settings.seconds - len(digits) + 1))
    beeps = [((first_slot + i) * 0.5, 0.5, DIGIT_TONES[digit]) for i, digit in enumerate(digits)]
    kwargs = {"beep_at": beeps, "colors": _random_colors(rng, settings.seconds)}
    return kwargs, " ".join(digits), {"digits": digits, "digit_starts": [start for start, _, _ in beeps]}


def _draw_visual(rng: np.random.Generator, settings: BenchmarkClipSettings):
    color = SYNC_PALETTE[int(rng.integers(len(SYNC_PALETTE)))]
    duration, frequency = COUNT_BEEP
    start = round(float(rng.uniform(0.0, settings.seconds - duration)), 4)
    return {"beep_at": [(start, duration, frequency)], "colors": [color]}, color, {"beep_at": start}


def _draw_sync(rng: np.random.Generator, settings: BenchmarkClipSettings):
    # as `make_sync_task`: the palette in a random order, one colour per second, one beep inside one second
    colors: list[str] = []
    while len(colors) < settings.seconds:
        colors += [SYNC_PALETTE[k] for k in rng.permutation(len(SYNC_PALETTE))]
    colors = colors[: settings.seconds]
    duration, frequency = COUNT_BEEP
    second = int(rng.integers(settings.seconds))
    start = round(second + float(rng.uniform(0.0, 1.0 - duration)), 4)
    kwargs = {"beep_at": [(start, duration, frequency)], "colors": colors}
    return kwargs, colors[second], {"beep_at": start, "beep_second": second, "colors": colors}


def _draw_count(rng: np.random.Generator, settings: BenchmarkClipSettings):
    count = 1 + int(rng.integers(min(4, settings.seconds)))  # 1-4 (fewer for clips shorter than 4 s)
    duration, frequency = COUNT_BEEP
    # beeps start in distinct 0.5 s frames, at least one frame apart, anywhere in the clip
    slots = np.sort(rng.choice(np.arange(0, 2 * settings.seconds, 2), size=count, replace=False))
    starts = [round(0.5 * float(slot) + float(rng.uniform(0.0, 0.5 - duration)), 4) for slot in slots]
    kwargs = {"beep_at": [(start, duration, frequency) for start in starts],
              "colors": _random_colors(rng, settings.seconds)}
    return kwargs, str(count), {"count": count, "beep_times": starts}


def _draw_match(rng: np.random.Generator, settings: BenchmarkClipSettings):
    names = list(MATCH_TONES)
    color = names[int(rng.integers(len(names)))]
    matched = bool(rng.integers(2))
    tone_of = color if matched else names[(names.index(color) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
    kwargs = {"beep_at": [(0.0, float(settings.seconds), MATCH_TONES[tone_of])], "colors": [color]}
    return kwargs, "yes" if matched else "no", {"color": color, "tone_of": tone_of}


FAMILIES: dict[str, TaskFamily] = {
    family.name: family
    for family in (
        TaskFamily("speech", "Which digits do the tones say?", "fine audio content (one digit per 0.5 s)", 1 / 64,
                   _draw_speech),
        TaskFamily("visual", "What colour is the screen?", "pictures only", 1 / 4, _draw_visual),
        TaskFamily("sync", SYNC_QUESTION, "synchronisation (the frame under the beep)", 1 / 4, _draw_sync),
        TaskFamily("count", "How many beeps are there?", "long-range counting over the clip", 1 / 4, _draw_count),
        TaskFamily("match", "Does the sound belong to this clip?", "audio-visual matching", 1 / 2, _draw_match),
    )
}


def benchmark_clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of clip `index` of `split` (one of `SPLITS`) in the benchmark of `seed`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed!r}, index={index!r}")
    return np.random.default_rng([int(seed), SPLITS.index(split), int(index)])


def make_benchmark_clip(
    path: str | os.PathLike,
    family: str,
    *,
    seed: int = 0,
    split: str = "demo",
    index: int = 0,
    settings: BenchmarkClipSettings = BENCHMARK_CLIP,
) -> dict[str, Any]:
    """Write clip `index` of `split` of family `family` to `path` (a video file) and return its manifest row.

    The row has `video` (the path as given), `prompt`, `answer`, `family` and the family's ground truth.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    task = FAMILIES[family]
    rng = benchmark_clip_rng(seed, split, index)
    kwargs, answer, truth = task.draw(rng, settings)
    make_av_clip(
        path, seconds=float(settings.seconds), fps=settings.fps, size=settings.size,
        sampling_rate=settings.sampling_rate, seed=int(rng.integers(2**31)), **kwargs,
    )
    return {"video": str(path), "prompt": task.question, "answer": answer, "family": family, **truth}


def write_benchmark(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    families: Sequence[str] | None = None,
    train_weights: dict[str, int] | None = None,
    settings: BenchmarkClipSettings = BENCHMARK_CLIP,
) -> dict[str, list[dict[str, Any]]]:
    """Write the benchmark's splits under `root`: `{split}.jsonl` and the clips in `root/{split}/`.

    Args:
        root: output folder (created).
        seed: the benchmark's seed (same seed, same clips and rows).
        sizes: clips per split (default `{"train": 400, "validation": 50, "test": 100}`); clip `i` of a split has
            family `families[i % len(families)]`, so every family is equally represented.
        families: the families to write (default: all of `FAMILIES`).
        train_weights: family -> whole number of training clips per clip of a weight-1 family (default 1 each), for
            the `train` split only: a hard family can be over-represented in training while validation and test stay
            balanced. Clip `i` of the train split has family `cycle[i % len(cycle)]`, where `cycle` repeats each family
            its weight times.

    Returns:
        split -> the rows written (`video` relative to `root`).
    """
    sizes = {"train": 400, "validation": 50, "test": 100} if sizes is None else dict(sizes)
    families = list(FAMILIES) if families is None else list(families)
    unknown = [name for name in families if name not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be a non-empty list of {list(FAMILIES)}, got {families!r}")
    for split, count in sizes.items():
        if split not in SPLITS:
            raise ValueError(f"sizes: split must be one of {SPLITS}, got {split!r}")
        if int(count) < 0:
            raise ValueError(f"sizes[{split!r}] must be >= 0, got {count!r}")
    weights = dict(train_weights or {})
    for name, weight in weights.items():
        if name not in families:
            raise ValueError(f"train_weights: {name!r} is not one of the families written ({families})")
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ValueError(f"train_weights[{name!r}] must be a whole number >= 1, got {weight!r}")
    train_cycle = [name for name in families for _ in range(weights.get(name, 1))]
    root = Path(root)
    written: dict[str, list[dict[str, Any]]] = {}
    for split, count in sizes.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        cycle = train_cycle if split == "train" else families
        rows = []
        for index in range(int(count)):
            family = cycle[index % len(cycle)]
            relative = f"{split}/{family}_{index:05d}.mp4"
            row = make_benchmark_clip(root / relative, family, seed=seed, split=split, index=index, settings=settings)
            rows.append({**row, "video": relative})
        with open(root / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        written[split] = rows
    return written


def answer_rows(
    model: Any,
    processor: Any,
    rows: Sequence[dict[str, Any]],
    *,
    media_root: str | os.PathLike | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 8,
) -> list[str]:
    """The model's greedy answer to each row's `prompt` about its `video` (relative paths resolved against
    `media_root`), decoded without special tokens and stripped; batches of `batch_size` rows, left-padded."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    root = Path(media_root) if media_root is not None else None
    answers: list[str] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        videos = [str(root / row["video"]) if root is not None else str(row["video"]) for row in batch]
        inputs = processor(text=[row["prompt"] for row in batch], videos=videos)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers += [text.strip() for text in processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m transformers_av.synthetic.benchmark OUTPUT [--seed N] [--train N] [--validation N] [--test N]
    [--train-weights FAMILY=N ...]`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--validation", type=int, default=50)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--train-weights", nargs="*", default=[], metavar="FAMILY=N",
                        help="over-represent families in the train split, e.g. speech=3 (validation/test stay balanced)")
    args = parser.parse_args(argv)
    weights = {}
    for item in args.train_weights:
        name, _, weight = item.partition("=")
        if not weight.isdigit():
            parser.error(f"--train-weights takes FAMILY=N with a whole number N, got {item!r}")
        weights[name] = int(weight)
    written = write_benchmark(args.output, seed=args.seed, train_weights=weights,
                              sizes={"train": args.train, "validation": args.validation, "test": args.test})
    for split, rows in written.items():
        print(f"{args.output}/{split}.jsonl: {len(rows)} clips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
