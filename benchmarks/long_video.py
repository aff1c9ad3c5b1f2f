"""Long videos end to end: a generated 360p clip with sound through the processor and the tiny model's `generate`.

Run (from the repository root, in the project's virtual environment):

    PYTHONPATH=src python benchmarks/long_video.py --quick       # CI: a 10 s clip, video-SALMONN only
    PYTHONPATH=src python benchmarks/long_video.py               # 5, 10 and 30 minutes, video-SALMONN and FAVOR
    PYTHONPATH=src python benchmarks/long_video.py --lengths 1800 --models video_salmonn

The media: a synthetic 640x360, 25 fps H.264 mp4 with a 48 kHz stereo AAC sound track (beeps over noise), made by
`benchmarks/processor.py`'s `ensure_media` (60 s of distinct textured frames cycled by stream copy; cached in
`--cache-dir`). The models: `FavorForConditionalGeneration(tiny_favor_config("video_salmonn" | "favor"))` with its
`tiny_processor` (224 px frames at 2 fps, Whisper log-mel per 30 s chunk, BEATs fbank for video-SALMONN), random
weights: what is measured is the memory and time the architecture needs for the length, not the answer.

Each (model, length) runs in a fresh Python subprocess, which builds the model and processor, warms them up on a 1 s
clip, then runs the stages below once. Per stage it prints the wall time, the resident set size (RSS) when the stage
starts and the highest RSS seen during it (a thread samples /proc/self/statm every 5 ms), and the process's peak RSS
(`ru_maxrss`) over the whole run:

  processor    `processor(text=QUESTION, videos=path)`: decode at 2 fps, 224 px pixels, audio decode + resample,
               Whisper log-mel, BEATs fbank, prompt with the expanded audio-visual placeholder;
  generate     `model.generate(**inputs, max_new_tokens=...)` (greedy), split into the encoders' and connector's
               forward calls (vision, whisper, beats, connector: time inside those modules, peak RSS while they run)
               and the rest (LLM prefill and decoding, embedding scatter).

A driver polls each subprocess's RSS and kills it (by its pid) above `--memory-limit-gb` (default 75% of the available
memory), reporting "out of memory" instead of waking the kernel's OOM killer. "RSS/min" divides the process peak by
the video's minutes: a constant column means peak memory grows linearly with length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processor import ensure_media, ensure_warmup_clip, run_with_memory_cap, worker_result  # noqa: E402  (the shared media of benchmarks/)

MODELS = ("video_salmonn", "favor")
QUESTION = "Describe the video together with the audio in detail"
ENCODER_STAGES = {"vision": "visual_encoder", "whisper": "speech_encoder", "beats": "audio_encoder", "connector": "connector"}


class StageMemory:
    """Wall time, start RSS and peak RSS per named stage; a daemon thread samples the RSS every `interval` s (torch
    releases the GIL inside its kernels, so samples land during long operations)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.current: str | None = None
        self.stages: dict[str, dict] = {}
        self._page = os.sysconf("SC_PAGE_SIZE")
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self) -> None:
        while True:
            stage = self.current
            if stage is not None:
                record = self.stages[stage]
                record["peak"] = max(record["peak"], self.rss())
            time.sleep(self.interval)

    @contextmanager
    def stage(self, name: str):
        """Account the enclosed code to `name` (time accumulates over repeated entries, "start" is the RSS at the
        first entry); a nested stage takes over the sampling while it runs and passes its peak to the outer one."""
        record = self.stages.setdefault(name, {"seconds": 0.0, "start": self.rss(), "peak": 0, "calls": 0})
        outer, self.current = self.current, name
        record["peak"] = max(record["peak"], self.rss())
        start = time.perf_counter()
        try:
            yield
        finally:
            record["seconds"] += time.perf_counter() - start
            record["calls"] += 1
            record["peak"] = max(record["peak"], self.rss())
            self.current = outer
            if outer is not None:  # an outer stage's peak covers its nested stages
                self.stages[outer]["peak"] = max(self.stages[outer]["peak"], record["peak"])


def worker(model_name: str, media: Path, max_new_tokens: int, cache_dir: str) -> dict:
    """Build the tiny model and processor, warm up, run processor + generate on `media` once, stage by stage."""
    import torch

    from transformers_av import FavorForConditionalGeneration
    from transformers_av.presets.tiny import tiny_favor_config, tiny_processor

    memory = StageMemory()
    with memory.stage("setup"):
        torch.manual_seed(0)
        config = tiny_favor_config(model_name)
        model = FavorForConditionalGeneration(config).eval()
        processor = tiny_processor(config)
    inner = model.model
    for stage, attribute in ENCODER_STAGES.items():
        module = getattr(inner, attribute, None)
        if module is not None:
            module.forward = _staged(memory, stage, module.forward)

    # warm-up on a 1 s clip, then forget what the encoders' stages recorded during it
    warm_inputs = processor(text=QUESTION, videos=str(ensure_warmup_clip(cache_dir)), return_tensors="pt")
    with torch.inference_mode():
        model.generate(**warm_inputs, max_new_tokens=max_new_tokens, do_sample=False)
    memory.stages = {"setup": memory.stages["setup"]}

    with memory.stage("processor"):
        inputs = processor(text=QUESTION, videos=str(media), return_tensors="pt")
    with memory.stage("generate"), torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    placeholder = int((inputs["input_ids"] == config.audio_visual_token_id).sum())
    return {
        "model": model_name,
        "frames": int(inputs["video_frame_mask"].sum()),
        "pixel_values_gib": inputs["pixel_values_videos"].numel() * inputs["pixel_values_videos"].element_size() / 2**30,
        "audio_visual_tokens": placeholder,
        "new_tokens": int(output.shape[1] - inputs["input_ids"].shape[1]),
        "stages": memory.stages,
        "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _staged(memory: StageMemory, stage: str, forward):
    def timed(*args, **kwargs):
        with memory.stage(stage):
            return forward(*args, **kwargs)

    return timed


def run_worker(model_name: str, media: Path, args) -> dict:
    """One (model, media) run in a fresh subprocess; killed (its pid only) if its RSS passes the cap."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", model_name, "--media", str(media),
               "--cache-dir", str(args.cache_dir), "--max-new-tokens", str(args.max_new_tokens)]
    run = run_with_memory_cap(command, int(args.memory_limit_gb * 2**30))
    if run.killed:
        return {"model": model_name, "peak": run.peak,
                "error": f"out of memory: RSS passed the {args.memory_limit_gb:g} GiB cap"}
    result = worker_result(run)
    if result is not None:
        return result
    return {"model": model_name, "peak": run.peak, "error": f"exit status {run.returncode}: {run.stderr.strip()[-400:]}"}


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f}"


def describe(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"


def print_result(seconds: float, result: dict) -> None:
    name = f"{result['model']}, {describe(seconds)}"
    if "error" in result:
        print(f"\n## {name}: FAILED ({result['error']}; RSS reached {gib(result['peak'])} GiB)")
        return
    print(f"\n## {name}: {result['frames']} frames ({result['pixel_values_gib']:.2f} GiB of pixel values), "
          f"{result['audio_visual_tokens']} audio-visual tokens, {result['new_tokens']} new tokens; "
          f"process peak RSS {gib(result['peak'])} GiB ({gib(result['peak'] / (seconds / 60))} GiB per minute)")
    print(f"  {'stage':<12} {'wall s':>8} {'RSS at start GiB':>17} {'peak RSS GiB':>13}")
    for stage in ("setup", "processor", "generate", *ENCODER_STAGES):
        record = result["stages"].get(stage)
        if record is None:
            continue
        label = stage if stage in ("setup", "processor", "generate") else f"  {stage}"
        print(f"  {label:<12} {record['seconds']:>8.2f} {gib(record['start']):>17} {gib(record['peak']):>13}")
    encoders = sum(result["stages"][s]["seconds"] for s in ENCODER_STAGES if s in result["stages"])
    print(f"  {'  LLM, rest':<12} {result['stages']['generate']['seconds'] - encoders:>8.2f}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI mode: one 10 s clip, video-SALMONN only")
    parser.add_argument("--lengths", default=None, help="comma-separated video lengths in seconds (default 300,600,1800)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated subset of {','.join(MODELS)} (default: both; --quick: video_salmonn)")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "transformers_av_benchmarks"))
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="RSS cap per run, enforced by the driver (default: 75%% of the available memory)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--media", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.lengths = [float(s) for s in (args.lengths or ("10" if args.quick else "300,600,1800")).split(",")]
    models = args.models or ("video_salmonn" if args.quick else ",".join(MODELS))
    args.models = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    if args.memory_limit_gb is None:
        with open("/proc/meminfo") as info:
            available = next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:"))
        args.memory_limit_gb = round(0.75 * available / 2**30, 1)
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.worker:
        result = worker(args.worker, Path(args.media), args.max_new_tokens, args.cache_dir)
        print("RESULT " + json.dumps(result))
        return [result]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    print(f"# Long videos through processor + tiny model generate" + (" (--quick)" if args.quick else ""))
    print(f"machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPU cores, Python "
          f"{platform.python_version()}; RSS cap per run {args.memory_limit_gb:g} GiB; media 640x360 25 fps H.264 + "
          f"48 kHz stereo AAC; greedy, max_new_tokens {args.max_new_tokens}")
    results = []
    for seconds in args.lengths:
        media_args = SimpleNamespace(seconds=seconds, height=360, width=640, source_fps=25.0,
                                     unique_seconds=min(60.0, seconds), audio_rate=48000, audio_channels=2,
                                     cache_dir=args.cache_dir)
        media, made = ensure_media(media_args)
        if made is not None:
            print(f"(generated {media.name} in {made:.0f} s)")
        for model_name in args.models:
            start = time.perf_counter()
            result = run_worker(model_name, media, args)
            result.update(seconds=seconds, wall=time.perf_counter() - start)
            print_result(seconds, result)
            results.append(result)
    rows = [r for r in results if "error" not in r]
    if rows:
        print("\n| model | length | frames | AV tokens | processor s | generate s | peak RSS GiB | GiB per min |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {describe(r['seconds'])} | {r['frames']} | {r['audio_visual_tokens']} | "
                  f"{r['stages']['processor']['seconds']:.1f} | {r['stages']['generate']['seconds']:.1f} | "
                  f"{gib(r['peak'])} | {gib(r['peak'] / (r['seconds'] / 60))} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
