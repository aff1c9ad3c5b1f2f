"""Benchmark of the FAVOR / video-SALMONN connector: today's `FavorConnector` (A) vs the per-resolution loop (B).

Run (from the repository root, in the project's virtual environment):

    PYTHONPATH=src python benchmarks/connector.py --quick        # CI: tiny config, 30 s and 1 min, 2 rounds, seconds
    PYTHONPATH=src python benchmarks/connector.py                # tiny config, 5 / 10 / 30 min, 5 rounds
    PYTHONPATH=src python benchmarks/connector.py --config video-salmonn-13b --lengths 300 --rounds 2

A: `FavorConnector.forward`: the windows run in groups of at most `CausalQFormer.max_group_tokens` tokens, each
   LayerNorm'd on its own; per group and Q-Former layer, each projection runs once over the features (accumulated
   onto one resolution's projected position table, moved to the next resolution's by adding the tables' difference
   in place), only the allowed frame blocks of the causal attention are computed, intermediates freed as consumed.
B: `per_resolution_connector` of `tests/connector_reference.py`, the layout A replaced (and the official code's):
   one Q-Former pass per resolution over all its windows, position-embedded features materialised per resolution,
   block-triangular masks over whole windows, queries expanded to every window; the same sdpa kernel.

Only a connector is built (never the LLM or the encoders), from the tiny test config (`--config tiny`, the default:
joint width 48, Q-Former hidden 16, resolutions [[1, 3], [10, 30]], frame-level "future" attention) or a paper preset
(`--config video-salmonn-13b`: joint width 2304, hidden 768, 12 heads), with random weights. Its input is one video's
synthetic joint features: 0.5 s frames of 32 tokens (5 min -> 600 frames, 30 min -> 3,600 frames, 115,200 tokens).

For every length the script first checks that A and B agree (resolution outputs, LLM embeddings, diversity loss:
max abs difference <= 1e-4 of the largest output), then times them INTERLEAVED in this process: each round runs A and B once, alternating which
goes first, after one warm-up call of each; it prints min and median wall time of each and the min and median of the
per-round ratios B / A (> 1: A is faster). Peak memory is measured apart, one forked process per (variant, length)
before any timing (the parent computes nothing before forking): the process's peak resident set size (`ru_maxrss`)
during one call minus its resident size just before it. "MiB/min" divides that by the video's minutes: a constant
column means memory grows linearly with length, a falling one that it stops growing (A's groups bound it).
`--quick` is what CI runs; it asserts equivalence, never timings.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from transformers_av.models.favor.connector import FavorConnector
from transformers_av.presets.paper import favor_preset
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.testing.reference import randomized_connector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from connector_reference import per_resolution_connector  # noqa: E402  (the reference lives with the tests)

TOKENS_PER_FRAME = 32
# fp32, same weights and inputs: A and B differ only in summation order (~1e-7 relative per product), which grows
# with the widths summed over: measured 3e-7 of the largest output on the tiny config, 8.9e-6 with video-SALMONN's
# 2304-wide joint features (5 min); a wrong mask, position row or scale moves outputs by 1e-2 or more
RELATIVE_TOLERANCE = 1e-4
VARIANTS = {
    "A": lambda connector, tokens, counts: connector(tokens, counts),
    "B": per_resolution_connector,
}


def build(config_name: str, num_frames: int) -> tuple[FavorConnector, torch.Tensor, torch.Tensor]:
    """Connector with random weights and one video's synthetic joint features (seeded: every process builds the same)."""
    if config_name == "tiny":
        config = tiny_favor_config("video_salmonn", causal_attention="future")
    else:
        config = favor_preset(config_name)
    connector = randomized_connector(config)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(1, num_frames, TOKENS_PER_FRAME, config.joint_feature_size, generator=generator)
    return connector, tokens, torch.tensor([num_frames])


def describe(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def peak_memory_of_one_call(config_name: str, num_frames: int, variant: str, threads: int) -> int:
    """Bytes the process's peak resident size rises above its size before one call (run in a forked child)."""
    torch.set_num_threads(threads)
    connector, tokens, counts = build(config_name, num_frames)
    with torch.inference_mode():
        before = resident_bytes()
        VARIANTS[variant](connector, tokens, counts)
        return max(0, peak_resident_bytes() - before)


def _child(queue, args) -> None:
    try:
        queue.put(peak_memory_of_one_call(*args))
    except BaseException as error:  # report, do not hang the parent
        queue.put(f"{type(error).__name__}: {error}")


def in_fresh_process(*args) -> int:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, args))
    process.start()
    result = queue.get()
    process.join()
    if isinstance(result, str):
        raise RuntimeError(f"memory measurement {args} failed: {result}")
    return result


def relative_difference(a, b) -> float:
    """Largest |A - B| over resolution outputs, LLM embeddings and diversity loss, over the largest |B|."""
    pairs = list(zip(a.resolution_outputs, b.resolution_outputs)) + [(a.embeds, b.embeds)]
    pairs.append((a.diversity_loss, b.diversity_loss))
    for x, y in pairs:
        assert x.shape == y.shape, (x.shape, y.shape)
    scale = max(float(y.abs().max()) for _, y in pairs)
    return max(float((x - y).abs().max()) for x, y in pairs) / scale


def time_interleaved(connector, tokens, counts, rounds: int) -> dict[str, list[float]]:
    """Wall times of A and B over `rounds` rounds, alternating which runs first, after one warm-up call of each."""
    times = {name: [] for name in VARIANTS}
    with torch.inference_mode():
        for run in VARIANTS.values():
            run(connector, tokens, counts)
        for round_index in range(rounds):
            order = list(VARIANTS) if round_index % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                start = time.perf_counter()
                VARIANTS[name](connector, tokens, counts)
                times[name].append(time.perf_counter() - start)
    return times


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI mode: 30 s and 1 min, 2 rounds (no timing asserted)")
    parser.add_argument("--config", default="tiny", help="'tiny' (default) or a paper preset name, e.g. video-salmonn-13b")
    parser.add_argument("--lengths", default=None, help="comma-separated video lengths in seconds (default 300,600,1800)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 5; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the forked peak-memory measurements")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    lengths = [float(s) for s in (args.lengths or ("30,60" if args.quick else "300,600,1800")).split(",")]
    rounds = args.rounds or (2 if args.quick else 5)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    threads = args.threads or torch.get_num_threads()

    print(f"# FavorConnector benchmark: A (today's connector) vs B (per-resolution loop), config {args.config!r}"
          + (" (--quick)" if args.quick else ""))
    print(f"machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{threads} torch threads; fp32, inference_mode, batch 1, {TOKENS_PER_FRAME} tokens per 0.5 s frame")
    print(f"timing: {rounds} interleaved round(s) after one warm-up call each; ratio = B / A per round")

    frames_of = {seconds: round(seconds / 0.5) for seconds in lengths}
    memory = {}
    if not args.no_memory:  # forked before this process computes anything (an OpenMP pool does not survive a fork)
        for seconds in lengths:
            for name in VARIANTS:
                memory[seconds, name] = in_fresh_process(args.config, frames_of[seconds], name, threads)
    torch.set_num_threads(threads)

    results, rows = [], []
    for seconds in lengths:
        connector, tokens, counts = build(args.config, frames_of[seconds])
        with torch.inference_mode():
            diff = relative_difference(VARIANTS["A"](connector, tokens, counts), VARIANTS["B"](connector, tokens, counts))
        assert diff <= RELATIVE_TOLERANCE, f"A and B differ by {diff:.3g} (relative) at {describe(seconds)}"
        times = time_interleaved(connector, tokens, counts, rounds)
        ratios = [b / a for a, b in zip(times["A"], times["B"])]
        result = {"seconds": seconds, "frames": frames_of[seconds], "relative_difference": diff, "times": times, "ratios": ratios}
        row = [describe(seconds), str(frames_of[seconds]), f"{diff:.1e}"]
        for name in VARIANTS:
            row += [f"{min(times[name]):.3f}", f"{statistics.median(times[name]):.3f}"]
        row += [f"{min(ratios):.2f}x", f"{statistics.median(ratios):.2f}x"]
        if memory:
            minutes = seconds / 60
            result["peak_bytes"] = {name: memory[seconds, name] for name in VARIANTS}
            row += [f"{memory[seconds, name] / 2**20:,.0f}" for name in VARIANTS]
            row += [f"{memory[seconds, name] / 2**20 / minutes:,.0f}" for name in VARIANTS]
        print(f"  {describe(seconds)} done: ratios B/A {' '.join(f'{r:.2f}' for r in ratios)}", flush=True)
        results.append(result)
        rows.append(row)
    headers = ["length", "frames", "|A-B|/|B|", "A min s", "A med s", "B min s", "B med s", "B/A min", "B/A median"]
    if memory:
        headers += ["A MiB", "B MiB", "A MiB/min", "B MiB/min"]
    print()
    print_table(headers, rows)
    return results


if __name__ == "__main__":
    main()
