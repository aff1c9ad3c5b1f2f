"""`transformers_av.media.video`: decoding and sampling real video files with PyAV (the `"fps"` and official
`"clip_ends"` samplers, in-memory frames, errors, truncated files, streaming); `"uniform"` is in test_video_uniform.py."""

from __future__ import annotations

import logging
import math
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import av

from PIL import Image  # noqa: E402

from transformers_av.media import frame_conversion  # noqa: E402
from transformers_av.media import (  # noqa: E402
    MediaDecodeError,
    NoVideoTrackError,
    clip_ends_timepoints,
    load_audio,
    load_video,
)
from transformers_av.synthetic.media import make_frames, make_tone, write_video, write_wav  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures" / "media"
OFFICIAL_VIDEO = FIXTURES / "official_tiny_video.mp4"

# Tolerances here: timestamps and sample times are exact rationals (pts x time_base, k / fps) turned into floats, so
# assert_allclose's default rtol 1e-7 / pytest.approx's 1e-6 only absorb float64 rounding; decoded frames of the
# lossless test videos are compared exactly. The audio bounds are signal-level ones, commented where they appear.


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Small generated media, written once: 3 s at 8 fps (lossless: frames decode exactly to `frames`)."""
    root = tmp_path_factory.mktemp("media")
    frames = make_frames(24, 48, 64)
    tone = make_tone(440.0, 3.0, sampling_rate=44100, channels=2)
    out = {"frames": frames, "root": root}
    out["lossless"] = write_video(root / "lossless.mkv", frames, 8, lossless=True)
    out["av_mp4"] = write_video(root / "av.mp4", frames, 8, audio=tone, audio_sampling_rate=44100)
    return out


# --------------------------------------------------------------------------------------------------------------------
# official clip_ends sampler
# --------------------------------------------------------------------------------------------------------------------


def test_clip_ends_reproduces_official_sampler_on_fixture():
    from safetensors.numpy import load_file

    expected = load_file(str(FIXTURES / "official_tiny_sampled_frames.safetensors"))
    clip = load_video(OFFICIAL_VIDEO, sampling="clip_ends")
    assert clip.source_frame_indices.tolist() == expected["sampled_frame_indices"].tolist() == [0, 7, 4, 11]
    np.testing.assert_array_equal(clip.frames, expected["sampled_frames_uint8"])
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (4, 96, 128, 3)
    assert clip.clip_timepoints.tolist() == [[0.0, 1.0], [0.5, 1.5]]
    assert clip.timestamps.tolist() == [0.0, 0.875, 0.5, 1.375]
    assert clip.sample_times.tolist() == [0.0, 1.0, 0.5, 1.5]
    assert clip.fps == 8.0 and clip.duration == 1.5 and not clip.truncated
    assert clip.timestamps.dtype == np.float64 and clip.source_frame_indices.dtype == np.int64

    # same result from a file object and from bytes
    with open(OFFICIAL_VIDEO, "rb") as handle:
        np.testing.assert_array_equal(load_video(handle, sampling="clip_ends").frames, clip.frames)
    np.testing.assert_array_equal(load_video(OFFICIAL_VIDEO.read_bytes(), sampling="clip_ends").frames, clip.frames)


def test_clip_ends_timepoints_match_uniform_clip_sampler():
    as_float = lambda clips: [[float(s), float(e)] for s, e in clips]  # noqa: E731
    assert as_float(clip_ends_timepoints(Fraction(3, 2))) == [[0.0, 1.0], [0.5, 1.5]]
    assert as_float(clip_ends_timepoints(0.5)) == [[0.0, 1.0]]  # shorter than a clip: the single clip [0, 1]
    assert as_float(clip_ends_timepoints(3)) == [[0, 1], [1, 2], [2, 3]]
    assert as_float(clip_ends_timepoints(Fraction(5, 2))) == [[0, 1], [1, 2], [1.5, 2.5]]


def _pytorchvideo_clip_ends(path) -> list[int]:
    """Independent re-statement of the official path: EncodedVideoPyAV + UniformClipSampler(1, backpad_last=True)
    + UniformTemporalSubsample(2), on decoded-frame indices (all frames decoded up front)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base, start = stream.time_base, stream.start_time or 0
        pts = [frame.pts for frame in container.decode(stream)]
        duration = int((stream.duration if stream.duration is not None else max(pts)) - start) * time_base
    clips, last_end = [], Fraction(0)
    while True:
        def start_end(last):
            s = Fraction(max(last, 0))
            e = s + 1
            s = Fraction(max(0, s - max(0, e - duration)))
            return s, s + 1

        s, e = start_end(last_end)
        clips.append((s, e))
        last_end = e
        if abs(start_end(e)[1] - e) < 1e-6:  # Fractions: exact, the 1e-6 only reads as "equal"
            break
    picked = []
    for s, e in clips[:60]:
        lo, hi = math.ceil(s / time_base) + start, math.ceil(e / time_base) + start
        inside = [i for i, p in enumerate(pts) if lo <= p < hi]
        sub = torch.linspace(0, len(inside) - 1, 2).clamp(0, len(inside) - 1).long().tolist()
        picked += [inside[j] for j in sub]
    return picked


@pytest.mark.parametrize(
    "suffix, seconds, fps",
    [("mp4", 2.3, Fraction(30000, 1001)), ("mkv", 2.3, 8), ("webm", 1.7, 10), ("avi", 0.6, 10), ("mov", 3.0, 12)],
)
def test_clip_ends_matches_pytorchvideo_semantics(tmp_path, suffix, seconds, fps):
    num = round(seconds * fps)
    path = write_video(tmp_path / f"v.{suffix}", make_frames(num, 32, 32), fps)
    clip = load_video(path, sampling="clip_ends")
    assert clip.source_frame_indices.tolist() == _pytorchvideo_clip_ends(path)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    np.testing.assert_array_equal(clip.frames, np.stack([decoded[i] for i in clip.source_frame_indices]))


def test_clip_ends_caps_at_60_clips_and_max_seconds(tmp_path):
    path = write_video(tmp_path / "long.mp4", make_frames(124, 16, 16), 2)  # 62 s at 2 fps
    clip = load_video(path, sampling="clip_ends")
    assert clip.clip_timepoints.shape == (60, 2) and clip.clip_timepoints[-1].tolist() == [59.0, 60.0]
    assert len(clip) == 120 and clip.truncated
    assert clip.source_frame_indices[-2:].tolist() == [118, 119]
    short = load_video(path, sampling="clip_ends", max_seconds=2.5)
    assert short.clip_timepoints.tolist() == [[0, 1], [1, 2], [1.5, 2.5]] and short.truncated
    assert load_video(path, sampling="clip_ends", max_frames=3).source_frame_indices.tolist() == [0, 1, 2]


# --------------------------------------------------------------------------------------------------------------------
# fps sampler
# --------------------------------------------------------------------------------------------------------------------


def test_fps_sampling_counts_timestamps_and_frames(clips):
    clip = load_video(clips["lossless"], fps=2.0)
    assert len(clip) == 6
    np.testing.assert_allclose(clip.timestamps, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(clip.sample_times, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert clip.source_frame_indices.tolist() == [0, 4, 8, 12, 16, 20]
    np.testing.assert_array_equal(clip.frames, clips["frames"][::4])  # lossless: exact frames
    assert clip.fps == 8.0 and clip.duration == pytest.approx(3.0) and not clip.truncated
    assert clip.source_size == (48, 64) and clip.sampling == "fps"

    assert load_video(clips["lossless"], fps=1).source_frame_indices.tolist() == [0, 8, 16]
    fast = load_video(clips["lossless"], fps=16)  # faster than the source: the frame on screen repeats
    assert len(fast) == 48 and fast.source_frame_indices[:4].tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(load_video(clips["lossless"], fps=8).frames, clips["frames"])


def test_fps_sampling_takes_frame_on_screen(tmp_path):
    path = write_video(tmp_path / "v25.mp4", make_frames(50, 32, 32), 25)  # 2 s at 25 fps
    clip = load_video(path, fps=2)
    # target 0.5 s -> frame 12 (0.48 s; frame 13 starts at 0.52 s); 1.5 s -> frame 37 (1.48 s)
    assert clip.source_frame_indices.tolist() == [0, 12, 25, 37]
    np.testing.assert_allclose(clip.timestamps, [0.0, 0.48, 1.0, 1.48])
    np.testing.assert_allclose(clip.sample_times, [0.0, 0.5, 1.0, 1.5])


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "webm", "avi", "mov"])
def test_fps_sampling_all_containers(tmp_path, suffix):
    path = write_video(tmp_path / f"v.{suffix}", make_frames(24, 32, 32), 8)
    clip = load_video(path, fps=2)
    assert clip.source_frame_indices.tolist() == [0, 4, 8, 12, 16, 20]
    assert clip.duration == pytest.approx(3.0, abs=0.05)  # container rounding of the last frame's duration


def test_max_seconds_max_frames_and_size(clips, caplog):
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        cut = load_video(clips["lossless"], fps=2, max_seconds=1.2)
    assert cut.source_frame_indices.tolist() == [0, 4, 8] and cut.truncated
    assert "cut" in caplog.text
    assert not load_video(clips["lossless"], fps=2, max_seconds=3.0).truncated
    few = load_video(clips["lossless"], fps=2, max_frames=2)
    assert few.source_frame_indices.tolist() == [0, 4] and few.truncated
    small = load_video(clips["lossless"], fps=2, size=(24, 32))
    assert small.frames.shape == (6, 24, 32, 3) and small.source_size == (48, 64)
    # area downscale of solid-colour frames keeps the colour (corners, away from the moving square); +-2 levels for the
    # resampler's uint8 rounding (measured 0)
    np.testing.assert_allclose(small.frames[:, 0, 0].astype(int), clips["frames"][::4, 0, 0].astype(int), atol=2)


# --------------------------------------------------------------------------------------------------------------------
# in-memory videos
# --------------------------------------------------------------------------------------------------------------------


def test_in_memory_videos():
    frames = make_frames(24, 16, 24)
    clip = load_video(frames, fps=2, source_fps=8)
    assert clip.source_frame_indices.tolist() == [0, 4, 8, 12, 16, 20]
    np.testing.assert_array_equal(clip.frames, frames[::4])
    assert clip.fps == 8.0 and clip.duration == 3.0

    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W)
    np.testing.assert_array_equal(load_video(tensor, fps=2, source_fps=8).frames, frames[::4])
    np.testing.assert_array_equal(load_video(torch.from_numpy(frames), fps=2, source_fps=8).frames, frames[::4])
    ends = load_video(frames, sampling="clip_ends", source_fps=8)
    assert ends.source_frame_indices.tolist() == [0, 7, 8, 15, 16, 23]

    # already-sampled frames (no source_fps): all kept, timestamps from `fps`
    pil = [Image.fromarray(f) for f in frames[:5]]
    as_is = load_video(pil, fps=2)
    np.testing.assert_array_equal(as_is.frames, frames[:5])
    np.testing.assert_allclose(as_is.timestamps, [0, 0.5, 1.0, 1.5, 2.0])
    assert load_video(list(frames[:5]), fps=2, max_seconds=1.0).source_frame_indices.tolist() == [0, 1]

    with pytest.raises(TypeError, match="uint8"):
        load_video(frames.astype(np.float32), source_fps=8)
    with pytest.raises(ValueError, match="shape"):
        load_video(frames[0], source_fps=8)
    with pytest.raises(ValueError, match="empty"):
        load_video([])
    with pytest.raises(ValueError, match="same size"):
        load_video([frames[0], frames[0][:8]])
    with pytest.raises(ValueError, match="source_fps"):
        load_video(frames, source_fps=0)
    with pytest.raises(TypeError, match="load_video expects"):
        load_video(42)


# --------------------------------------------------------------------------------------------------------------------
# errors, truncated files
# --------------------------------------------------------------------------------------------------------------------


def test_clear_errors(clips, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        load_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(MediaDecodeError, match="junk.mp4"):
        load_video(junk)
    with pytest.raises(MediaDecodeError, match="junk.mp4"):
        load_audio(junk)
    for bad in (0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="fps"):
            load_video(clips["lossless"], fps=bad)
    with pytest.raises(ValueError, match="sampling"):
        load_video(clips["lossless"], sampling="uniform")
    with pytest.raises(ValueError, match="max_seconds"):
        load_video(clips["lossless"], max_seconds=0)
    wav = write_wav(tmp_path / "tone.wav", make_tone(440.0, 0.5), 16000)
    with pytest.raises(NoVideoTrackError, match="tone.wav"):
        load_video(wav)


def test_zero_frame_video(tmp_path):
    path = tmp_path / "no_frames.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=8)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    for sampling in ("fps", "clip_ends"):
        with pytest.raises(MediaDecodeError, match="no_frames.mkv"):
            load_video(path, sampling=sampling)


def test_truncated_files(clips, tmp_path, caplog):
    """mp4 / mov: the index (moov) is at the end, half a file cannot be opened -> MediaDecodeError.
    mkv: the stream ends before the header duration -> MediaDecodeError naming both durations; allow_partial=True
    decodes the readable part (with a warning)."""
    data = Path(clips["av_mp4"]).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    for load in (load_video, load_audio):
        with pytest.raises(MediaDecodeError, match="half.mp4"):
            load(half)

    frames = make_frames(40, 32, 32)
    full = write_video(tmp_path / "full.mkv", frames, 8, lossless=True)  # 5 s
    data = full.read_bytes()
    cut = tmp_path / "half.mkv"
    cut.write_bytes(data[: len(data) // 2])
    for sampling in ("fps", "clip_ends"):
        with pytest.raises(MediaDecodeError, match=r"half.mkv': the video frames stop at 2.750 s but the header "
                                                   r"declares 5.000 s: the file is truncated or damaged"):
            load_video(cut, fps=2, sampling=sampling)
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        clip = load_video(cut, fps=2, allow_partial=True)
    assert "stop at 2.750 s but the header declares 5.000 s" in caplog.text and clip.partial
    assert not load_video(full, fps=2).partial
    assert 0 < len(clip) < 10 and clip.duration < 5.0
    assert clip.source_frame_indices.tolist() == list(range(0, 4 * len(clip), 4))
    np.testing.assert_array_equal(clip.frames, frames[clip.source_frame_indices])


# --------------------------------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------------------------------


def test_decoding_streams_long_video(tmp_path, monkeypatch):
    """60 s at 25 fps (1500 frames): only the 120 sampled frames are ever converted / kept."""
    path = write_video(tmp_path / "long.mp4", make_frames(1500, 64, 64, moving_square=False), 25)
    converted = []
    original = frame_conversion.frame_to_rgb

    def counting(frame, size, orientation):
        array = original(frame, size, orientation)
        converted.append(array.nbytes)
        return array

    monkeypatch.setattr(frame_conversion, "frame_to_rgb", counting)
    tracemalloc.start()
    try:
        clip = load_video(path, fps=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(clip) == 120 and clip.frames.shape == (120, 64, 64, 3)
    assert len(converted) == 120  # 1500 frames decoded, 120 converted to RGB
    all_frames = 1500 * 64 * 64 * 3
    assert peak < 3 * clip.frames.nbytes < all_frames / 4


@pytest.mark.parametrize("sampling", ["fps", "clip_ends"])
def test_batched_frame_transform_sees_small_batches_and_equals_the_plain_frames(tmp_path, sampling):
    # 5 s at 10 fps, sampled at 2 fps (10 frames) or by clip ends (10 frames): the batch transform gets groups of at
    # most 3 frames as they are decoded, and its results equal transforming the plain decoded frames afterwards
    path = write_video(tmp_path / "v.mp4", make_frames(50, 32, 48), fps=10, lossless=True)
    plain = load_video(path, fps=2, sampling=sampling)
    batches = []

    def halve(frames):
        batches.append(len(frames))
        return frames[:, ::2, ::2].astype(np.float32) / 255

    batched = load_video(path, fps=2, sampling=sampling, frames_transform=halve, transform_batch_size=3)
    assert max(batches) <= 3 and sum(batches) == len(np.unique(plain.source_frame_indices))
    np.testing.assert_array_equal(batched.frames, plain.frames[:, ::2, ::2].astype(np.float32) / 255)
    np.testing.assert_array_equal(batched.timestamps, plain.timestamps)
    with pytest.raises(ValueError, match="give one of .* got frame_transform and frames_transform"):
        load_video(path, frame_transform=lambda f: f, frames_transform=halve)
