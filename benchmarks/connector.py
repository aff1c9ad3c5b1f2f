"""Benchmark of the FAVOR / video-SALMONN connector: one batched Q-Former call vs the official-style layouts.

Run (from the repository root, in the project's virtual environment):

    PYTHONPATH=src python benchmarks/connector.py --quick          # CI: tiny config, 30 s / 5 min / 10 min, < ~1 min
    PYTHONPATH=src python benchmarks/connector.py                  # video-SALMONN 13B connector, 30 s / 5 min / 30 min
    PYTHONPATH=src python benchmarks/connector.py --lengths 30,300 --repeats 3 --json results.json

What it measures. Only a `FavorConnector` is built (never the LLM or the encoders), from
`favor_preset("video-salmonn-13b")` (Q-Former hidden 768, 2 layers, 12 heads, joint width 2304, resolutions
[[1, 3], [10, 30]], frame-level "future" attention) or from the tiny test config (`--config tiny`), with small random
normal weights. Its input is synthetic joint features of one video: 0.5 s frames (30 s -> 60 frames, 5 min -> 600,
30 min -> 3600), 32 tokens of joint width per frame. For every length it runs, in inference mode and fp32:

  batched         `connector(joint_tokens, frame_counts)`: ALL windows of ALL resolutions in one Q-Former call
                  (super-windows of the coarsest length with block-diagonal masks);
  per_resolution  official-style: one Q-Former call per resolution over all of that resolution's windows
                  (1-frame windows of 32 tokens, 10-frame windows of 320 tokens);
  per_window      a Python loop with one Q-Former call per window.

The two references are `transformers_av.testing.reference.per_resolution_connector` / `per_window_connector`, built
from the connector's own modules. The script first checks that the three variants give the same resolution outputs,
LLM embeddings and diversity loss (max abs diff <= 1e-4), then prints wall time (median of `--repeats` runs after
`--warmup` runs) and peak memory. Peak memory is the extra memory a call needs on top of the connector weights and
its input: on CUDA `torch.cuda.max_memory_allocated` minus the memory allocated before the call; on CPU each
(variant, length) runs in a fresh forked process and reports its peak resident set size (`ru_maxrss`) minus its
resident size just before the first call (so it also counts allocator slack, as the operating system sees it).
"Per min" divides the peak by the video's minutes: a constant column means memory grows linearly with length.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from transformers_av.presets.paper import favor_preset
from transformers_av.models.favor.connector import FavorConnector
from transformers_av.models.favor.windows import window_plan
from transformers_av.presets.tiny import tiny_favor_config
from transformers_av.testing.reference import per_resolution_connector, per_window_connector

TOKENS_PER_FRAME = 32
VARIANTS = {
    "batched": lambda connector, tokens, counts: connector(tokens, counts),
    "per_resolution": per_resolution_connector,
    "per_window": per_window_connector,
}
TOLERANCE = 1e-4


def build_config(name: str):
    if name == "tiny":
        return tiny_favor_config("video_salmonn", causal_attention="future")
    return favor_preset(name)


def frames_of(seconds: float, frame_seconds: float) -> int:
    return round(seconds / frame_seconds)


def describe_length(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"


def build(config_name: str, num_frames: int, device: str):
    """Connector with small random normal weights and one video's synthetic joint features (seeded: every process
    builds the same weights and inputs)."""
    torch.manual_seed(0)
    config = build_config(config_name)
    connector = FavorConnector(config)
    with torch.no_grad():
        for name, param in connector.named_parameters():
            param.normal_(0.0, 0.02)
            if "layer_norm" in name and name.endswith("weight"):
                param.add_(1.0)
    connector = connector.to(device).eval()
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(1, num_frames, TOKENS_PER_FRAME, config.joint_feature_size, generator=generator).to(device)
    return connector, tokens, torch.tensor([num_frames], device=device)


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _max_resident_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def measure(job: dict) -> dict:
    """Run one (variant, length): warm-up, timed repeats, peak memory; save the outputs for the equivalence check."""
    device, cuda = job["device"], job["device"].startswith("cuda")
    connector, tokens, counts = build(job["config"], job["frames"], device)
    run = VARIANTS[job["variant"]]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        if cuda:
            sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _resident_bytes()
            base_peak = _max_resident_bytes()
            base = base_peak if base is None else base
        for _ in range(job["warmup"]):
            output = run(connector, tokens, counts)
            del output
        times = []
        for _ in range(job["repeats"]):
            sync()
            start = time.perf_counter()
            output = run(connector, tokens, counts)
            sync()
            times.append(time.perf_counter() - start)
            if len(times) < job["repeats"]:
                del output
        peak = (torch.cuda.max_memory_allocated() if cuda else _max_resident_bytes()) - base
        result = {"times": times, "peak_bytes": peak}
        if not cuda and base_peak - base > 0.05 * max(peak, 1):
            result["warning"] = f"resident-size high-water mark before the call was {(base_peak - base) / 2**20:.0f} MiB above the baseline"
        torch.save(
            {
                "resolution_outputs": [out.cpu() for out in output.resolution_outputs],
                "embeds": output.embeds.cpu(),
                "diversity_loss": output.diversity_loss.cpu(),
            },
            job["output_path"],
        )
    return result


def _child(queue, function, args) -> None:
    try:
        queue.put(function(*args))
    except BaseException as error:  # report, do not hang the parent
        queue.put({"error": f"{type(error).__name__}: {error}"})


def in_child(function, *args):
    """Run `function(*args)` in a forked process and return its (picklable) result. The parent never computes with
    torch (an OpenMP thread pool does not survive a fork), so each child starts clean, with its own ru_maxrss."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args))
    process.start()
    result = queue.get()
    process.join()
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"{getattr(function, '__name__', function)}{args[:1]} failed in a child process: {result['error']}")
    return result


def _measure_with_threads(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    return measure(job)


def run_job(job: dict, isolate: bool) -> dict:
    return in_child(_measure_with_threads, job) if isolate else measure(job)


def compare_outputs(paths: list[str]) -> list[float]:
    """Max abs diff of every saved output to the first one."""
    reference = torch.load(paths[0])
    return [max_abs_diff(reference, torch.load(path)) for path in paths[1:]]


def max_abs_diff(a: dict, b: dict) -> float:
    pairs = list(zip(a["resolution_outputs"], b["resolution_outputs"])) + [(a["embeds"], b["embeds"])]
    pairs.append((a["diversity_loss"], b["diversity_loss"]))
    for x, y in pairs:
        assert x.shape == y.shape, (x.shape, y.shape)
    return max(float((x - y).abs().max()) for x, y in pairs)


def machine_description(device: str) -> str:
    cpu = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if device.startswith("cuda") else ""
    return f"{platform.system()} {platform.release()}, {cpu}{gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def format_mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:,.0f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI mode: tiny config, 30 s / 5 min / 10 min, 3 repeats")
    parser.add_argument("--config", default=None, help="'tiny' or a preset name (default video-salmonn-13b; tiny with --quick)")
    parser.add_argument("--lengths", default=None, help="comma-separated video lengths in seconds (default 30,300,1800; "
                        "600 replaces 1800 with --quick)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    parser.add_argument("--no-isolate", action="store_true", help="on CPU, run everything in this process "
                        "(faster start; CPU peak memory then only grows and is not comparable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up when piped

    config_name = args.config or ("tiny" if args.quick else "video-salmonn-13b")
    lengths = [float(s) for s in (args.lengths or ("30,300,600" if args.quick else "30,300,1800")).split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    isolate = not device.startswith("cuda") and not args.no_isolate
    config = build_config(config_name)

    print(f"# FavorConnector benchmark: {config_name}" + (" (--quick)" if args.quick else ""))
    print(f"machine: {machine_description(device)}; device {device}")
    print(
        f"connector: hidden {config.connector_hidden_size}, {config.connector_num_hidden_layers} layers, "
        f"{config.connector_num_attention_heads} heads, joint width {config.joint_feature_size}, resolutions "
        f"{config.resolutions}, causal_attention {config.causal_attention!r}, merge {config.resolution_merge!r}; "
        f"fp32, inference_mode, batch 1, {TOKENS_PER_FRAME} tokens per {config.frame_seconds:g} s frame"
    )
    if args.quick and args.lengths is None:
        print("note: --quick uses the tiny config and reduces the 30 min video to 10 min")
    print(f"timing: median of {args.repeats} run(s) after {args.warmup} warm-up run(s); peak memory: "
          + ("torch.cuda.max_memory_allocated above the pre-call allocation" if device.startswith("cuda") else
             "ru_maxrss minus resident size before the call, one forked process per measurement" if isolate else
             "ru_maxrss growth in this process (not isolated)"))
    print()

    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="connector-bench-") as tmp:
        for seconds in lengths:
            frames = frames_of(seconds, config.frame_seconds)
            row = {"seconds": seconds, "frames": frames, "input_tokens": frames * TOKENS_PER_FRAME,
                   "llm_tokens": window_plan(frames, config.resolutions).num_tokens, "variants": {}}
            for variant in variants:
                job = {"config": config_name, "frames": frames, "variant": variant, "device": device, "threads": threads,
                       "repeats": args.repeats, "warmup": args.warmup, "output_path": os.path.join(tmp, f"{variant}-{frames}.pt")}
                t0 = time.perf_counter()
                measured = run_job(job, isolate)
                measured["median_s"] = statistics.median(measured["times"])
                row["variants"][variant] = measured
                print(f"  {describe_length(seconds):>7} {variant:<15} median {measured['median_s']:.4f} s, peak "
                      f"{format_mib(measured['peak_bytes'])} MiB  ({time.perf_counter() - t0:.1f} s)"
                      + (f"  [warning: {measured['warning']}]" if "warning" in measured else ""), flush=True)
            paths = [os.path.join(tmp, f"{variant}-{frames}.pt") for variant in variants]
            diffs = in_child(compare_outputs, paths) if isolate else compare_outputs(paths)
            row["max_abs_diff"] = dict(zip(variants[1:], diffs))
            for path in paths:
                os.remove(path)
            for variant, diff in row["max_abs_diff"].items():
                assert diff <= TOLERANCE, f"{variant} differs from {variants[0]} by {diff:.3g} on {frames} frames"
            results.append(row)

    print()
    if len(variants) > 1:
        checks = "; ".join(f"{describe_length(r['seconds'])}: " + ", ".join(f"{v} {d:.1e}" for v, d in r["max_abs_diff"].items())
                           for r in results)
        print(f"equivalence vs {variants[0]} (max abs diff over resolution outputs, embeds, diversity loss; "
              f"<= {TOLERANCE:g} asserted): {checks}")
        print()

    short = {"batched": "batched", "per_resolution": "per-res", "per_window": "loop"}
    headers = ["length", "frames", "in tokens", "LLM tokens"] + [f"{short[v]} s" for v in variants]
    if "batched" in variants:
        headers += [f"{short[v]}/batched" for v in variants if v != "batched"]
    headers += [f"{short[v]} MiB" for v in variants] + [f"{short[v]} MiB/min" for v in variants]
    rows = []
    for r in results:
        m = r["variants"]
        minutes = r["seconds"] / 60
        row = [describe_length(r["seconds"]), str(r["frames"]), str(r["input_tokens"]), str(r["llm_tokens"])]
        row += [f"{m[v]['median_s']:.4f}" for v in variants]
        if "batched" in variants:
            row += [f"{m[v]['median_s'] / m['batched']['median_s']:.2f}x" for v in variants if v != "batched"]
        row += [format_mib(m[v]["peak_bytes"]) for v in variants]
        row += [format_mib(m[v]["peak_bytes"] / minutes) for v in variants]
        rows.append(row)
    print_table(headers, rows)
    print(f"\ntotal benchmark time {time.perf_counter() - started:.1f} s")

    summary = {"config": config_name, "device": device, "machine": machine_description(device),
               "torch": torch.__version__, "quick": args.quick, "results": results}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
