"""Benchmark of media preprocessing: `FavorProcessor` versus transformers' own building blocks, on one video file.

Run (from the repository root, in the project's virtual environment):

    PYTHONPATH=src python benchmarks/processor.py --quick     # ~10-20 s: a 10 s 360p clip (CI smoke test)
    PYTHONPATH=src python benchmarks/processor.py             # a 10-minute 720p30 video with a 48 kHz stereo track
    PYTHONPATH=src python benchmarks/processor.py --seconds 120 --variants favor,transformers --json out.json

The media. A synthetic H.264 (libx264, crf 18, yuv420p) mp4 at `--height`x`--width` and `--source-fps`, with an AAC
sound track (`--audio-rate`, `--audio-channels`; beeps over low noise), written with
`transformers_av.synthetic.media.write_video` into `--cache-dir` (default: <tmp>/transformers_av_benchmarks) once and reused.
The frames are a panning smooth-noise texture blended with `make_frames`' colours and bouncing square, which codes at
a realistic bitrate (~4 Mb/s at 720p30; flat synthetic frames would code at a few kb/s and decode unrealistically
fast). `write_video` takes the whole clip in memory, so `--unique-seconds` (default 60) of distinct frames are
written as segments and the long file is assembled by stream copy (FFmpeg's concat demuxer, the segments cycled;
the decoder does the same work on every segment), with a sound track written once for the whole duration. The
generation time is printed (the default video takes about a minute on 2 cores; then it is cached).

The variants. Each runs in a fresh Python subprocess (so its peak resident set size, `ru_maxrss`, is its own), which
builds its pipeline, warms it up on a 1 s clip, then processes the file once, timed end to end (decode +
preprocessing; the model is never run):

  favor           (a) `tiny_processor(tiny_favor_config("video_salmonn"))(text=..., videos=path)`: the shipped
                  processor with its default 224 px `FavorImageProcessor`, Whisper log-mel per 30 s chunk and the BEATs
                  fbank (video-SALMONN); frames sampled at 2 fps; the video's own sound track resampled to 16 kHz.
                  The frames are decoded by several decoders at once (segments between IDR frames, one per CPU) while
                  a thread decodes the sound track and computes its features (so the per-stage times overlap).
  favor_fast      (a) with `videos_kwargs={"decode": "fast"}`: the same frames decoded without deblocking and resized
                  to 224x224 by FFmpeg's scaler (area averaging) as they are converted to RGB; the printed
                  "fast vs exact" line gives its mean |delta| of pixel values against (a)'s.
  favor_no_beats  (a) without the BEATs fbank (`compute_audio_events=False`): the same work as `transformers`.
  transformers    (b) `transformers.video_utils.load_video(path, fps=2, backend="pyav")` (PyAV is the backend that
                  works without torchvision / torchcodec / decord / OpenCV; it picks every (source_fps / 2)-th frame,
                  the same frames as (a)), the first audio stream decoded with PyAV and resampled to 16 kHz mono by
                  FFmpeg (`av.AudioResampler`), `WhisperFeatureExtractor` on 30 s chunks (the call (a) makes),
                  and `CLIPImageProcessorPil` resizing each frame to 224x224 (bicubic, no crop, CLIP mean/std; the
                  torchvision `CLIPImageProcessor` is unavailable without torchvision).

What the fast decode changes: the mean and max |delta| of its pixel values against exact mode's (first round, whole
file), and the logits of a tiny random-weight video-SALMONN (`TINY_MODELS["tiny-video-salmonn"]`, seed 0) on the
first `--logit-seconds` of the file processed both ways (max |delta|, next to what setting every pixel to 0 changes).

The stages, A vs B (always run after the variants, or alone with `--stage-only`), each in one process, interleaved
over `--stage-rounds` rounds (the order alternating each round); printed: each side's min and median time and the
min and median of the per-round ratios A/B; the outputs of A and B must be bit-identical (checked):

  decode stages `load_video` at 2 fps over the first `--stage-seconds` of the file (frames downscaled to 64x64 right
                away, so that mostly decoding is timed). Segments: (A) the stream cut at IDR frames and decoded by
                `decode_workers()` decoders at once (`media.segment_decoding`), (B) one decoder with FFmpeg's own
                threads. Skipping, one decoder: (A) non-reference frames the sampler will not keep are not decoded
                (`media.frame_skipping`), (B) every frame decoded (the codec taken off `SKIPPABLE_CODECS` here).
                Same frames, timestamps and frame indices (checked).
  pixel stage   `--stage-frames` frames of the file sampled at 2 fps are decoded once (uint8, full resolution); (A)
                `FavorImageProcessor.preprocess_frames` -- each frame converted through one reused contiguous float
                buffer -- and (B) the former whole-batch conversion (`permute().float() / 255`, bicubic
                `interpolate`, CLIP normalisation; kept below as `whole_batch_pixels`) process them in batches of 16.

Reported per variant: wall time; CPU time (all threads; on a shared machine it moves much less than wall time);
throughput (seconds of media per second of wall time); stage times (video decode,
audio decode, frames -> pixel values, Whisper, BEATs; "other" is tokenisation, padding, copies); peak RSS of the
subprocess and "extra" (peak minus the RSS after setup and warm-up: what processing the file costs); then the ratios
a/b against `transformers` (time < 1: (a) is faster; memory < 1: (a) uses less). The driver polls each subprocess's
resident memory and kills it (by its pid) above `--memory-limit-gb` (default 75% of the available memory), so a
variant that needs too much is reported as "out of memory" (with the RSS reached) instead of waking the kernel's OOM
killer. (An address-space limit, RLIMIT_AS, does not work here: transformers' PyAV reader keeps every sampled
`VideoFrame` alive, each with its own threaded swscale context, ~1,500 threads whose reserved stacks exceed any sane
address-space cap although little of it is resident.) Outputs are checked for agreement: both sides must produce the
same number of frames and of Whisper chunks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

ALL_VARIANTS = ("favor", "favor_fast", "favor_no_beats", "transformers")
QUESTION = "Describe the video together with the audio in detail"
SAMPLING_RATE = 16000
CHUNK_SECONDS = 30


# ----------------------------------------------------------------------------------------------------------------------
# media
# ----------------------------------------------------------------------------------------------------------------------


def _texture(height: int, width: int, margin: int, seed: int) -> np.ndarray:
    """Smooth random texture (bicubic-upscaled noise), `margin` pixels larger than the frame for panning."""
    import torch

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, ((height + margin) // 8 + 1, (width + margin) // 8 + 1, 3), dtype=np.uint8)
    big = torch.nn.functional.interpolate(
        torch.from_numpy(low).permute(2, 0, 1)[None].float(), scale_factor=8, mode="bicubic", align_corners=False
    )
    return big.clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8).numpy()[: height + margin, : width + margin]


def _segment_frames(index: int, num_frames: int, height: int, width: int, fps: float) -> np.ndarray:
    from transformers_av.synthetic.media import make_frames

    palette = ["red", "lime", "blue", "yellow", "cyan", "magenta", "orange", "white"]
    colors = [palette[(index + k) % len(palette)] for k in range(max(1, round(num_frames / fps)))]
    frames = make_frames(num_frames, height, width, colors=colors, moving_square=True, seed=index)
    margin = 64
    texture = _texture(height, width, margin, seed=1000 + index)
    for i in range(num_frames):  # pan the texture diagonally, blend 50/50 with the colour + square
        dx, dy = (3 * i) % margin, (2 * i) % margin
        frames[i] = (frames[i].astype(np.uint16) + texture[dy : dy + height, dx : dx + width]) // 2
    return frames


def _media_name(args) -> str:
    return (
        f"synthetic_{args.seconds:g}s_{args.height}x{args.width}_{args.source_fps:g}fps_u{args.unique_seconds:g}_"
        f"a{args.audio_rate}x{args.audio_channels}.mp4"
    )


def ensure_media(args) -> tuple[Path, float | None]:
    """The benchmark video (generated once, then cached) and how long generating it took (None when cached)."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / _media_name(args)
    if path.exists():
        return path, None
    import av

    from transformers_av.synthetic.media import make_beep_track, write_video

    start = time.perf_counter()
    fps = args.source_fps
    if round(args.unique_seconds * fps) < 1 or args.unique_seconds > args.seconds:
        raise SystemExit("--unique-seconds must be > 0 and <= --seconds")
    segment_seconds = min(args.unique_seconds, 10.0, args.seconds)  # bounded memory per write_video call
    num_segments = max(1, round(args.unique_seconds / segment_seconds))
    frames_per_segment = round(segment_seconds * fps)
    total_frames = round(args.seconds * fps)
    if total_frames % frames_per_segment:
        raise SystemExit(f"--seconds must be a multiple of {segment_seconds:g} s (the segment length)")
    work = Path(tempfile.mkdtemp(prefix="segments_", dir=cache))
    try:
        segments = []
        for index in range(num_segments):
            frames = _segment_frames(index, frames_per_segment, args.height, args.width, fps)
            segments.append(write_video(work / f"segment_{index:03d}.mp4", frames, fps))
            del frames
            print(f"  segment {index + 1}/{num_segments} written ({time.perf_counter() - start:.1f} s)", flush=True)
        # the sound track for the whole duration, in a carrier file whose (tiny) video stream is dropped below
        beeps = [(t + 0.5, 0.3, 500.0 + 100.0 * (t % 10)) for t in range(0, int(args.seconds) - 1, 2)]
        audio = make_beep_track(beeps, args.seconds, args.audio_rate, channels=args.audio_channels, noise=0.02)
        one_frame_rate = 1 / Fraction(args.seconds).limit_denominator(1000)  # one 16x16 frame for the whole clip
        carrier = write_video(work / "audio.mp4", np.zeros((1, 16, 16, 3), np.uint8), one_frame_rate,
                              audio=audio, audio_sampling_rate=args.audio_rate)
        del audio
        listing = work / "list.txt"
        count = total_frames // frames_per_segment
        listing.write_text("".join(f"file '{segments[k % num_segments]}'\n" for k in range(count)))
        partial = path.with_suffix(".partial.mp4")
        _mux(listing, carrier, partial)
        partial.rename(path)
    finally:
        for item in sorted(work.glob("*")):
            item.unlink()
        work.rmdir()
    with av.open(str(path)) as container:  # sanity: the assembled file has the expected length
        stream = container.streams.video[0]
        got = float(stream.duration * stream.time_base)
        if abs(got - args.seconds) > 1.0 / fps + 1e-6:
            raise RuntimeError(f"assembled video lasts {got} s, expected {args.seconds} s")
    return path, time.perf_counter() - start


def _mux(listing: Path, carrier: Path, output: Path) -> None:
    """Stream-copy the concatenated video segments and the carrier's audio into one mp4, interleaved by time."""
    import av

    video_in = av.open(str(listing), format="concat", options={"safe": "0"})
    audio_in = av.open(str(carrier))
    out = av.open(str(output), mode="w")
    try:
        video_out = out.add_stream_from_template(video_in.streams.video[0])
        audio_out = out.add_stream_from_template(audio_in.streams.audio[0])

        def packets(container, stream, target):
            for packet in container.demux(stream):
                if packet.dts is None:  # the demuxer's final empty packet
                    continue
                packet.stream = target
                yield packet

        video = packets(video_in, video_in.streams.video[0], video_out)
        audio = packets(audio_in, audio_in.streams.audio[0], audio_out)
        v, a = next(video, None), next(audio, None)
        while v is not None or a is not None:
            if a is None or (v is not None and v.dts * v.time_base <= a.dts * a.time_base):
                out.mux(v)
                v = next(video, None)
            else:
                out.mux(a)
                a = next(audio, None)
    finally:
        out.close()
        video_in.close()
        audio_in.close()


def warmup_clip(cache_dir) -> Path:
    return Path(cache_dir) / "warmup_1s_64x64.mp4"


def ensure_warmup_clip(cache_dir) -> Path:
    path = warmup_clip(cache_dir)
    if not path.exists():
        from transformers_av.synthetic.media import make_av_clip

        make_av_clip(path, seconds=1.0, fps=10, size=(64, 64), sampling_rate=48000, channels=2)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# the worker (one variant, in its own process)
# ----------------------------------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds() -> float:
    """CPU time of this process, all its threads (the decoder's included), user + system: on a shared machine it
    moves much less than wall time with the other processes' load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


class Stages:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, function, stage: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

        return timed

    def wrap_call(self, obj, stage: str) -> None:
        """Time `obj(...)`: `__call__` is looked up on the type, so give the instance a timing subclass."""
        original = type(obj).__call__
        timed = self.wrap(original, stage)
        obj.__class__ = type(type(obj).__name__, (type(obj),), {"__call__": lambda self, *a, **k: timed(self, *a, **k)})


def build_favor(variant: str, stages: Stages):
    import torch

    from transformers_av.models.favor import processing_favor as media_io  # the loaders, as the processor calls them
    from transformers_av.presets.tiny import tiny_favor_config
    from transformers_av.presets.tiny import tiny_processor

    settings = {"compute_audio_events": False} if variant == "favor_no_beats" else {}
    processor = tiny_processor(tiny_favor_config("video_salmonn"), **settings)
    assert processor.image_processor.size == 224
    media_io.load_video = stages.wrap(media_io.load_video, "video decode")
    media_io.load_audio = stages.wrap(media_io.load_audio, "audio decode")
    media_io.has_audio_track = stages.wrap(media_io.has_audio_track, "audio decode")
    processor.image_processor.preprocess_frames = stages.wrap(processor.image_processor.preprocess_frames,
                                                               "frames -> pixels")
    stages.wrap_call(processor.feature_extractor, "whisper")
    stages.wrap_call(processor.audio_feature_extractor, "beats")
    videos_kwargs = {"decode": "fast"} if variant == "favor_fast" else {}

    def run(path):
        batch = processor(text=QUESTION, videos=str(path), videos_kwargs=videos_kwargs)
        run.pixels = batch["pixel_values_videos"]  # saved by the worker (after the timing) when asked
        features = batch["input_features"]
        return {
            "frames": int(batch["video_frame_mask"].sum()),
            "pixel_values": list(batch["pixel_values_videos"].shape),
            "whisper_chunks": int(features.shape[-1] // 3000),
            "audio_tokens": int((batch["input_ids"] == processor.audio_visual_token_id).sum()),
            "beats_frames": int(batch["audio_input_features"].shape[1]) if "audio_input_features" in batch else 0,
        }

    return run


def build_transformers(stages: Stages):
    import av
    import torch
    from transformers import WhisperFeatureExtractor
    from transformers.image_utils import PILImageResampling
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.video_utils import load_video

    image_processor = CLIPImageProcessorPil(
        size={"height": 224, "width": 224}, do_center_crop=False, resample=PILImageResampling.BICUBIC
    )
    feature_extractor = WhisperFeatureExtractor(feature_size=80)
    decode_video = stages.wrap(lambda path: load_video(str(path), fps=2, backend="pyav"), "video decode")

    def _decode_audio(path) -> np.ndarray:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLING_RATE)
        chunks = []
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        return np.concatenate(chunks)

    decode_audio = stages.wrap(_decode_audio, "audio decode")
    pixels_of = stages.wrap(lambda frames: image_processor(images=list(frames), return_tensors="pt"),
                            "frames -> pixels")
    whisper = stages.wrap(
        lambda pieces: feature_extractor(pieces, sampling_rate=SAMPLING_RATE, padding="max_length",
                                         max_length=CHUNK_SECONDS * SAMPLING_RATE, return_attention_mask=True,
                                         return_tensors="pt"),
        "whisper",
    )

    def run(path):
        frames, _ = decode_video(path)
        pixel_values = pixels_of(frames)["pixel_values"]
        del frames
        wave = decode_audio(path)
        chunk = CHUNK_SECONDS * SAMPLING_RATE
        features = whisper([wave[s : s + chunk] for s in range(0, len(wave), chunk)])
        assert isinstance(pixel_values, torch.Tensor)
        return {
            "frames": int(pixel_values.shape[0]),
            "pixel_values": list(pixel_values.shape),
            "whisper_chunks": int(features["input_features"].shape[0]),
        }

    return run


def worker(args) -> None:
    result = {"variant": args.worker}
    try:
        import torch

        stages = Stages()
        run = build_transformers(stages) if args.worker == "transformers" else build_favor(args.worker, stages)
        run(warmup_clip(args.cache_dir))
        stages.seconds.clear()
        result["threads"] = torch.get_num_threads()
        result["rss_before"] = _rss_bytes()
        cpu_start = _cpu_seconds()
        start = time.perf_counter()
        result["outputs"] = run(Path(args.media))
        result["wall"] = time.perf_counter() - start
        result["cpu"] = _cpu_seconds() - cpu_start
        result["stages"] = stages.seconds
        if args.keep_pixels and getattr(run, "pixels", None) is not None:
            torch.save(run.pixels, args.keep_pixels)
            run.pixels = None
    except Exception as error:  # reported in the table (the traceback goes to the subprocess's stderr)
        import traceback

        traceback.print_exc()
        message = f"{type(error).__name__}: {error}"
        memory = isinstance(error, MemoryError) or any(w in message.lower() for w in ("memory", "alloc"))
        result["error"] = ("out of memory: " if memory else "") + message[:300]
    result["peak"] = _peak_bytes()
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# the stages, A vs B in one process
# ----------------------------------------------------------------------------------------------------------------------

#: frames per `preprocess_frames` call in the pixel-stage A/B (the batches of the former conversion)
STAGE_BATCH = 16


def interleaved_ab(title: str, sides: dict, rounds: int, same) -> None:
    """Time the two callables of `sides` ({"A ...": f, "B ...": g}) over `rounds` interleaved rounds (order
    alternating); `same(a_output, b_output)` raises if their outputs differ. Prints min / median times and ratios."""
    outputs = [side() for side in sides.values()]  # warm-up and the exactness check
    same(*outputs)
    del outputs
    times: dict[str, list[float]] = {name: [] for name in sides}
    cpu_times: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(rounds):
        for name in list(sides) if round_index % 2 == 0 else list(sides)[::-1]:
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            sides[name]()
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(_cpu_seconds() - cpu_start)
    ratios = [a / b for a, b in zip(*times.values())]
    cpu_ratios = [a / b for a, b in zip(*cpu_times.values())]
    print(f"{title}, {rounds} interleaved rounds (outputs bit-identical):")
    for name, seconds in times.items():
        print(f"  {name}: min {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s "
              f"(CPU time median {statistics.median(cpu_times[name]):.3f} s)")
    print(f"  A/B time ratio: min {min(ratios):.3f}, median {statistics.median(ratios):.3f} "
          f"(B/A speed-up: median {statistics.median(1 / r for r in ratios):.2f}x); CPU time ratio: min "
          f"{min(cpu_ratios):.3f}, median {statistics.median(cpu_ratios):.3f}")


def decode_stage_ab(media: Path, args) -> None:
    from transformers_av.media import frame_skipping, segment_decoding, video

    skippable = frame_skipping.SKIPPABLE_CODECS
    plan_segments = video.plan_segments

    def decode(skipping: bool = True, segments: bool = True):
        frame_skipping.SKIPPABLE_CODECS = skippable if skipping else frozenset()
        video.plan_segments = plan_segments if segments else lambda *args, **kwargs: None
        try:
            return video.load_video(str(media), fps=2.0, max_seconds=args.stage_seconds, size=(64, 64))
        finally:
            frame_skipping.SKIPPABLE_CODECS = skippable
            video.plan_segments = plan_segments

    def same(a, b) -> None:
        for field in ("frames", "timestamps", "source_frame_indices", "sample_times"):
            if not np.array_equal(getattr(a, field), getattr(b, field)):
                raise AssertionError(f"decode stage: A and B differ in {field}")

    workers = segment_decoding.decode_workers()
    interleaved_ab(
        f"decode stage (segments), the first {args.stage_seconds:g} s at 2 fps",
        {f"A {workers} segment decoders at once": decode, "B one decoder (FFmpeg's threads)":
            lambda: decode(segments=False)},
        args.stage_rounds, same,
    )
    interleaved_ab(
        f"decode stage (skipping), the first {args.stage_seconds:g} s at 2 fps, one decoder",
        {"A skipping": lambda: decode(segments=False), "B every frame": lambda: decode(False, segments=False)},
        args.stage_rounds, same,
    )


def fast_logits_effect(media, args) -> None:
    """What the fast decode changes downstream: the logits of a tiny random-weight video-SALMONN
    (`presets.tiny.TINY_MODELS["tiny-video-salmonn"]`, seed 0) on the first `--logit-seconds` of the file, processed
    in exact and in fast mode (one forward pass each)."""
    import torch

    from transformers_av.presets.tiny import TINY_MODELS

    torch.manual_seed(0)
    model, processor = TINY_MODELS["tiny-video-salmonn"].build()
    model.eval()
    logits = {}
    for decode in ("exact", "fast", "blank"):  # blank: exact mode's batch with every pixel value set to 0, for scale
        batch = processor(text=QUESTION, videos=str(media),
                          videos_kwargs={"decode": "fast" if decode == "fast" else "exact",
                                         "max_seconds": args.logit_seconds})
        if decode == "blank":
            batch["pixel_values_videos"].zero_()
        with torch.no_grad():
            logits[decode] = model(**batch).logits.float()

    def max_delta(other: str) -> float:
        delta = (logits[other] - logits["exact"]).abs()
        return float(delta[torch.isfinite(delta)].max())

    print(f"fast vs exact logits of tiny-video-salmonn (random weights, seed 0) on the first {args.logit_seconds:g} s "
          f"({logits['exact'].shape[1]} positions x {logits['exact'].shape[2]} vocabulary): max |delta| "
          f"{max_delta('fast'):.3g} (for scale: all pixel values set to 0 change them by {max_delta('blank'):.3g}); "
          f"same argmax at {(logits['fast'].argmax(-1) == logits['exact'].argmax(-1)).float().mean():.1%} of positions")


def whole_batch_pixels(frames, size: int = 224):
    """(B) The former conversion: every frame of the batch to float at once, then bicubic resize and normalisation."""
    import torch

    from transformers_av.models.favor.image_processing_favor import CLIP_MEAN, CLIP_STD

    pixels = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255.0
    pixels = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bicubic", align_corners=False)
    return (pixels - torch.tensor(CLIP_MEAN).reshape(-1, 1, 1)) / torch.tensor(CLIP_STD).reshape(-1, 1, 1)


def pixel_stage_ab(media: Path, args) -> None:
    import torch

    from transformers_av.media.video import load_video
    from transformers_av.models.favor.image_processing_favor import FavorImageProcessor

    frames = load_video(str(media), fps=2.0, max_frames=args.stage_frames).frames  # (T, H, W, 3) uint8
    image_processor = FavorImageProcessor()

    def process(function):
        return torch.cat([function(frames[s : s + STAGE_BATCH]) for s in range(0, len(frames), STAGE_BATCH)])

    def same(a, b) -> None:
        if not torch.equal(a, b):
            raise AssertionError(f"pixel stage: A and B differ (max |delta| {(a - b).abs().max():.3g})")

    height, width = frames.shape[1:3]
    interleaved_ab(
        f"pixel stage, {len(frames)} frames {width}x{height} -> 224x224",
        {"A reused buffer": lambda: process(image_processor.preprocess_frames),
         "B whole batch": lambda: process(whole_batch_pixels)},
        args.stage_rounds, same,
    )


# ----------------------------------------------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------------------------------------------


def _child_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class CappedRun:
    """What `run_with_memory_cap` saw of a subprocess."""

    stdout: str
    stderr: str
    returncode: int
    peak: int  # the largest resident set size polled, in bytes
    killed: bool  # killed by the cap


def run_with_memory_cap(command: list[str], cap: int | None) -> CappedRun:
    """Run `command` (a benchmark worker) in a fresh subprocess, polling its resident memory every 20 ms; kill it (its
    pid only) once that passes `cap` bytes, instead of leaving it to the kernel's OOM killer. The worker reports its
    result as a last `RESULT {json}` line (`worker_result`)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    seen, killed = 0, False
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        while child.poll() is None:
            rss = _child_rss(child.pid)
            seen = max(seen, rss)
            if cap is not None and rss > cap:
                child.kill()
                killed = True
                child.wait()
                break
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        return CappedRun(out.read(), err.read(), child.returncode, seen, killed)


def worker_result(run: CappedRun) -> dict | None:
    """The worker's `RESULT {json}` line, parsed (None if it printed none)."""
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):]) if lines else None


def run_variant(variant: str, media: Path, args, keep_pixels: Path | None = None) -> dict:
    """Run one variant in a fresh subprocess (saving its pixel values to `keep_pixels` if given); kill it (its pid
    only) if its resident memory passes the cap."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--media", str(media),
               "--cache-dir", str(args.cache_dir)] + (["--keep-pixels", str(keep_pixels)] if keep_pixels else [])
    run = run_with_memory_cap(command, int(args.memory_limit_gb * 2**30) if args.memory_limit_gb else None)
    if run.killed:
        return {"variant": variant, "peak": run.peak,
                "error": f"out of memory: resident memory passed the {args.memory_limit_gb:g} GiB cap "
                         f"(killed by the benchmark)"}
    result = worker_result(run)
    if result is not None:
        return result
    reason = f"exit status {run.returncode}"
    if run.returncode < 0:
        reason = f"killed by signal {-run.returncode}" + (" (OOM killer?)" if run.returncode == -9 else "")
    return {"variant": variant, "peak": run.peak, "error": f"{reason}: {run.stderr.strip()[-300:]}"}


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:,.0f}"


def machine_lines(args) -> list[str]:
    import av
    import torch
    import transformers

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return [
        f"machine: {model}; {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
        f"{total / 2**30:.1f} GiB RAM; {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, av {av.__version__} (FFmpeg {av.ffmpeg_version_info}), "
        f"numpy {np.__version__}",
    ]


def format_table(results: list[dict], seconds: float) -> str:
    stage_names = ["video decode", "audio decode", "frames -> pixels", "whisper", "beats"]
    header = (["variant", "wall s", "cpu s", "media s/s"] + [s for s in stage_names] + ["other", "peak MiB",
              "extra MiB", "time a/b", "cpu a/b", "peak a/b", "extra a/b"])
    base = next((r for r in results if r["variant"] == "transformers" and "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            failed = "OOM" if r["error"].startswith("out of memory") else "failed"
            rows.append([r["variant"], failed, "-", "-"] + ["-"] * (len(stage_names) + 1)
                        + [_mib(r["peak"]) if "peak" in r else "-", "-", "-", "-", "-", "-"])
            continue
        stages = r["stages"]
        other = r["wall"] - sum(stages.values())
        extra = r["peak"] - r["rss_before"]
        row = [r["variant"], f"{r['wall']:.2f}", f"{r['cpu']:.2f}", f"{seconds / r['wall']:.1f}"]
        row += [f"{stages[s]:.2f}" if s in stages else "-" for s in stage_names] + [f"{other:.2f}"]
        row += [_mib(r["peak"]), _mib(extra)]
        if base is not None:
            base_extra = base["peak"] - base["rss_before"]
            row += [f"{r['wall'] / base['wall']:.2f}", f"{r['cpu'] / base['cpu']:.2f}", f"{r['peak'] / base['peak']:.2f}",
                    f"{extra / base_extra:.2f}"]
        else:
            row += ["-", "-", "-", "-"]
        rows.append(row)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 10 s 640x360 25 fps clip (a ~10-20 s run)")
    parser.add_argument("--seconds", type=float, help="video length (default 600; --quick 10)")
    parser.add_argument("--height", type=int, help="frame height (default 720; --quick 360)")
    parser.add_argument("--width", type=int, help="frame width (default 1280; --quick 640)")
    parser.add_argument("--source-fps", type=float, help="frame rate of the file (default 30; --quick 25)")
    parser.add_argument("--unique-seconds", type=float,
                        help="seconds of distinct frames, cycled to fill the video (default 60, capped at --seconds)")
    parser.add_argument("--audio-rate", type=int, default=48000, help="sample rate of the AAC track (default 48000)")
    parser.add_argument("--audio-channels", type=int, default=2, choices=(1, 2))
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of {','.join(ALL_VARIANTS)} (default: all; --quick: "
                             "favor,transformers)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds: each runs every variant once "
                        "(fresh process each; median wall time, max peak memory, min and median per-round ratios)")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "transformers_av_benchmarks"))
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="resident-memory cap per variant process, enforced by the driver, which polls the "
                             "process's RSS every 20 ms and kills it above the cap (default: 75%% of the available "
                             "memory; 0: none)")
    parser.add_argument("--stage-rounds", type=int, help="interleaved rounds of the pixel-stage A/B (default 5; "
                                                             "--quick 2)")
    parser.add_argument("--stage-frames", type=int, help="frames of the pixel-stage A/B (default 64; --quick 16)")
    parser.add_argument("--stage-seconds", type=float, help="seconds of the decode-stage A/B (default 30; --quick 5)")
    parser.add_argument("--stage-only", action="store_true", help="only the stage A/Bs, no variants")
    parser.add_argument("--logit-seconds", type=float, help="seconds of the file the fast-vs-exact logits are "
                        "compared on (default 10; --quick 5)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--keep-pixels", help=argparse.SUPPRESS)  # where a worker saves its pixel values
    parser.add_argument("--media", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, small in (("seconds", 600.0, 10.0), ("height", 720, 360), ("width", 1280, 640),
                              ("source_fps", 30.0, 25.0), ("stage_rounds", 5, 2), ("stage_frames", 64, 16),
                              ("stage_seconds", 30.0, 5.0), ("logit_seconds", 10.0, 5.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.unique_seconds is None:
        args.unique_seconds = min(60.0, args.seconds)
    args.unique_seconds = min(args.unique_seconds, args.seconds)
    if args.variants is None:
        args.variants = "favor,transformers" if quick else ",".join(ALL_VARIANTS)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(ALL_VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {ALL_VARIANTS}")
    if args.memory_limit_gb is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        try:
            with open("/proc/meminfo") as info:
                available = next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            pass
        args.memory_limit_gb = round(0.75 * available / 2**30, 1)
    return args


def _report_variants(results: list[dict], args) -> None:
    print()
    print(format_table(results, args.seconds))
    print("a/b: each variant against `transformers` (time: wall time; cpu: CPU time of the process, all threads; peak: "
          "peak RSS; extra: peak RSS minus the RSS after setup and warm-up). Stages nest (video decode includes the "
          "pixels of the frames converted as they are decoded), so `other` can be negative.")
    done = [r for r in results if "error" not in r]
    for r in done:
        if r["variant"] != "transformers" and r["round_ratios"]:
            ratios = r["round_ratios"]
            cpu = r["round_cpu_ratios"]
            print(f"{r['variant']} / transformers over {len(ratios)} interleaved rounds: wall time min "
                  f"{min(ratios):.3f}, median {statistics.median(ratios):.3f}; CPU time min {min(cpu):.3f}, median "
                  f"{statistics.median(cpu):.3f}")
    frames = {r["outputs"]["frames"] for r in done}
    chunks = {r["outputs"]["whisper_chunks"] for r in done}
    if len(frames) > 1 or len(chunks) > 1:
        print(f"WARNING: the variants disagree: frames {sorted(frames)}, Whisper chunks {sorted(chunks)}")
    elif done:
        print(f"all variants agree: {frames.pop()} frames, {chunks.pop()} Whisper chunks of 30 s.")
    for r in results:
        if "error" in r:
            print(f"{r['variant']} failed: {r['error']}")


def _report_fast_pixels(pixel_files: dict[str, Path]) -> None:
    """Mean and max |delta| of the fast decode's pixel values against the exact ones (CLIP-normalised units)."""
    import torch

    if not all(path.exists() for path in pixel_files.values()):
        return
    exact, fast = (torch.load(pixel_files[v]) for v in ("favor", "favor_fast"))
    for path in pixel_files.values():
        path.unlink()
        path.parent.rmdir()
    if exact.shape != fast.shape:
        print(f"WARNING: fast and exact pixel values differ in shape: {tuple(fast.shape)} vs {tuple(exact.shape)}")
        return
    delta = (fast - exact).abs()
    print(f"fast vs exact pixel values ({exact.shape[1]} frames, CLIP-normalised units; one unit = {0.27 * 255:.0f} "
          f"grey levels): mean |delta| {delta.mean():.4f}, max {delta.max():.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    print(f"media: {args.seconds:g} s, {args.width}x{args.height} @ {args.source_fps:g} fps H.264 + "
          f"{args.audio_rate} Hz {args.audio_channels}-channel AAC; frames sampled at 2 fps")
    media, generation = ensure_media(args)
    ensure_warmup_clip(Path(args.cache_dir))
    size = media.stat().st_size
    how = f"generated in {generation:.1f} s" if generation is not None else "cached"
    print(f"file: {media} ({size / 2**20:.1f} MiB, {size * 8 / args.seconds / 1e6:.1f} Mb/s; {how})")
    for line in machine_lines(args):
        print(line)
    print(f"memory cap per variant process: {args.memory_limit_gb:g} GiB resident" if args.memory_limit_gb
          else "memory cap per variant process: none")
    # rounds interleave the variants (order alternating), so a slow spell of the machine hits both sides of a ratio
    variants = [] if args.stage_only else args.variants
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    # the first round's exact and fast pixel values, to say what the fast decode changes
    pixel_files = {v: Path(tempfile.mkdtemp(prefix="pixels_")) / f"{v}.pt" for v in ("favor", "favor_fast")
                   if {"favor", "favor_fast"} <= set(variants)}
    for round_index in range(max(1, args.repeats)):
        for variant in variants if round_index % 2 == 0 else variants[::-1]:
            run = run_variant(variant, media, args, pixel_files.get(variant) if round_index == 0 else None)
            runs[variant].append(run)
            status = run.get("error") or f"{run['wall']:.2f} s, outputs {run['outputs']}"
            print(f"  round {round_index + 1} {variant}: {status}", flush=True)
    results = []
    for variant in variants:
        good = [r for r in runs[variant] if "error" not in r]
        if good:
            result = dict(good[0])
            result["wall"] = statistics.median(r["wall"] for r in good)
            result["cpu"] = statistics.median(r["cpu"] for r in good)
            result["peak"] = max(r["peak"] for r in good)
            result["rss_before"] = min(r["rss_before"] for r in good)
            base = runs.get("transformers", [])
            result["round_ratios"] = [r["wall"] / b["wall"] for r, b in zip(runs[variant], base)
                                      if "error" not in r and "error" not in b]
            result["round_cpu_ratios"] = [r["cpu"] / b["cpu"] for r, b in zip(runs[variant], base)
                                          if "error" not in r and "error" not in b]
        else:
            result = runs[variant][0]
        results.append(result)
    if results:
        _report_variants(results, args)
    if pixel_files:
        _report_fast_pixels(pixel_files)
    print()
    logging.getLogger("transformers_av").setLevel(logging.ERROR)  # the stages cut the video on purpose: no warnings
    decode_stage_ab(media, args)
    print()
    pixel_stage_ab(media, args)
    print()
    fast_logits_effect(media, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                               "media": str(media), "results": results}, indent=2))


if __name__ == "__main__":
    main()
