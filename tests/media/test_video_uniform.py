"""`load_video(sampling="uniform", num_frames=N)`: N frames at t_k = k * D / N (the Audio-Visual LLM sampler).

The test videos are lossless and frame i is a flat gray of level 6 * i, so each returned frame tells which source
frame it is (pixel value / 6), independently of `source_frame_indices`.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch

import av

from transformers_av.media import MediaDecodeError, load_video  # noqa: E402
from transformers_av.synthetic.media import write_video  # noqa: E402

GRAY_STEP = 6  # frame i has gray level 6 * i (40 frames -> at most 234)
# Tolerances here: sample times k * D / N and frame timestamps (pts x time_base) are analytic values turned into floats,
# so assert_allclose's default rtol 1e-7 / pytest.approx's 1e-6 only absorb float64 rounding; frames of the lossless
# test videos are compared exactly.


def _gray_frames(count: int, side: int = 16) -> np.ndarray:
    levels = (np.arange(count) * GRAY_STEP).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, side, side, 3)).copy()


def _levels(frames: np.ndarray) -> list[int]:
    return frames[:, 0, 0, 0].astype(int).tolist()


class _NonSeekable(io.RawIOBase):
    """A write-only, non-seekable sink: the Matroska muxer then writes no Duration element (no header duration)."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, chunk):
        self.data += bytes(chunk)
        return len(chunk)


def _mkv_without_duration(frames: np.ndarray, fps: int) -> bytes:
    sink = _NonSeekable()
    with av.open(sink, "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=fps)  # lossless
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return bytes(sink.data)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("uniform")
    return {
        # 40 frames at 10 fps = 4 s; mp4: stream.duration = 4 s, mkv: no stream duration, container.duration = 4 s
        "mp4": write_video(root / "v40.mp4", _gray_frames(40), 10, lossless=True),
        "mkv": write_video(root / "v40.mkv", _gray_frames(40), 10, lossless=True),
        # 5 frames at 10 fps = 0.5 s
        "short": write_video(root / "v5.mp4", _gray_frames(5), 10, lossless=True),
        "root": root,
    }


# --------------------------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_uniform_spreads_num_frames_over_the_clip(videos, kind):
    clip = load_video(videos[kind], sampling="uniform", num_frames=8)
    # D = 4 s, step = 4 / 8 = 0.5 s: targets 0, 0.5, ..., 3.5 s; frame i starts at i / 10 s, so the frame on screen at
    # 0.5 * k is frame 5 * k -> 0, 5, ..., 35, whose gray levels are 6 * 5 * k = 30 * k
    assert clip.sampling == "uniform" and len(clip) == 8 and clip.num_frames == 8
    assert clip.source_frame_indices.tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    np.testing.assert_allclose(clip.sample_times, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    np.testing.assert_allclose(clip.timestamps, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    assert _levels(clip.frames) == [0, 30, 60, 90, 120, 150, 180, 210]
    np.testing.assert_array_equal(clip.frames, _gray_frames(40)[::5])  # lossless: the exact frames
    assert clip.frames.shape == (8, 16, 16, 3)
    assert not clip.truncated and clip.duration == pytest.approx(4.0) and clip.fps == 10.0

    # N = 3: step 4/3 s, targets 0, 1.333, 2.667 s -> frames floor(10 * t) = 0, 13, 26 (levels 0, 78, 156)
    three = load_video(videos[kind], sampling="uniform", num_frames=3)
    assert three.source_frame_indices.tolist() == [0, 13, 26]
    np.testing.assert_allclose(three.sample_times, [0.0, 4 / 3, 8 / 3])
    assert _levels(three.frames) == [0, 78, 156]

    # N = 40 = the frame count: every frame once; N = 1: the first frame
    assert load_video(videos[kind], sampling="uniform", num_frames=40).source_frame_indices.tolist() == list(range(40))
    assert load_video(videos[kind], sampling="uniform", num_frames=1).source_frame_indices.tolist() == [0]


def test_uniform_repeats_frames_of_a_short_video(videos):
    clip = load_video(videos["short"], sampling="uniform", num_frames=8)
    # D = 0.5 s, step = 0.5 / 8 = 1/16 s: targets k / 16 = 0, .0625, .125, .1875, .25, .3125, .375, .4375 s; frame on
    # screen floor(10 * k / 16) = floor(k * 5 / 8) = 0, 0, 1, 1, 2, 3, 3, 4 (levels x6)
    assert len(clip) == 8
    assert clip.source_frame_indices.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]
    np.testing.assert_allclose(clip.sample_times, np.arange(8) / 16)
    np.testing.assert_allclose(clip.timestamps, [0.0, 0.0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.4])
    assert _levels(clip.frames) == [0, 0, 6, 6, 12, 18, 18, 24]
    assert not clip.truncated


def test_uniform_max_seconds(videos, caplog):
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        clip = load_video(videos["mp4"], sampling="uniform", num_frames=8, max_seconds=2)
    # D = min(4, 2) = 2 s, step 0.25 s: targets 0, 0.25, ..., 1.75 s -> frames floor(10 * t) = 0, 2, 5, 7, 10, 12, 15,
    # 17 (levels 0, 12, 30, 42, 60, 72, 90, 102)
    assert clip.source_frame_indices.tolist() == [0, 2, 5, 7, 10, 12, 15, 17]
    np.testing.assert_allclose(clip.sample_times, np.arange(8) * 0.25)
    assert _levels(clip.frames) == [0, 12, 30, 42, 60, 72, 90, 102]
    assert clip.truncated and clip.sampling == "uniform"
    assert "cut" in caplog.text
    # max_seconds past the end (or equal to it) cuts nothing: the same as without it
    for seconds in (4, 10):
        same = load_video(videos["mp4"], sampling="uniform", num_frames=8, max_seconds=seconds)
        assert same.source_frame_indices.tolist() == [0, 5, 10, 15, 20, 25, 30, 35] and not same.truncated


def test_uniform_without_header_duration_uses_the_last_packet(tmp_path):
    data = _mkv_without_duration(_gray_frames(40), 10)
    path = tmp_path / "no_duration.mkv"
    path.write_bytes(data)
    with av.open(str(path)) as container:  # the premise: no duration anywhere in the header
        assert container.duration is None and container.streams.video[0].duration is None
    clip = load_video(path, sampling="uniform", num_frames=8)
    # D = time of the last packet = 39 / 10 = 3.9 s, step 3.9 / 8 = 0.4875 s: frame floor(10 * k * 0.4875) =
    # floor(k * 39 / 8) = floor(0, 4.875, 9.75, 14.625, 19.5, 24.375, 29.25, 34.125) = 0, 4, 9, ..., 34
    expected = [0, 4, 9, 14, 19, 24, 29, 34]
    assert clip.source_frame_indices.tolist() == expected
    np.testing.assert_allclose(clip.sample_times, np.arange(8) * 0.4875)
    assert _levels(clip.frames) == [GRAY_STEP * i for i in expected]
    # the same from bytes and from a file object
    assert load_video(data, sampling="uniform", num_frames=8).source_frame_indices.tolist() == expected
    assert load_video(io.BytesIO(data), sampling="uniform", num_frames=8).source_frame_indices.tolist() == expected


def test_uniform_no_header_duration_large_buffer(tmp_path):
    """A buffer larger than FFmpeg's read buffer: probing the last packet must not move the shared read position."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)  # noise: ~90 KB of ffv1
    data = _mkv_without_duration(frames, 10)
    assert len(data) > 64 * 1024
    # D = 29 / 10 = 2.9 s, N = 5, step 0.58 s: floor(k * 29 / 5) = floor(0, 5.8, 11.6, 17.4, 23.2) = 0, 5, 11, 17, 23
    for source in (data, io.BytesIO(data)):
        clip = load_video(source, sampling="uniform", num_frames=5)
        assert clip.source_frame_indices.tolist() == [0, 5, 11, 17, 23]
        np.testing.assert_array_equal(clip.frames, frames[[0, 5, 11, 17, 23]])
    # clip_ends reads the same last-packet duration: it works from a buffer too
    ends = load_video(io.BytesIO(data), sampling="clip_ends")
    np.testing.assert_array_equal(ends.frames, frames[ends.source_frame_indices])


def test_uniform_unknown_duration_is_a_decode_error(tmp_path):
    data = _mkv_without_duration(_gray_frames(40), 10)
    cluster = data.find(bytes.fromhex("1F43B675"))  # Matroska Cluster ID: the first frame data follows
    assert cluster > 0
    path = tmp_path / "headers_only.mkv"
    path.write_bytes(data[: cluster + 8])  # the headers open, but no packet (no duration, no last packet time)
    with pytest.raises(MediaDecodeError, match="headers_only.mkv"):
        load_video(path, sampling="uniform", num_frames=8)


# --------------------------------------------------------------------------------------------------------------------
# in-memory frames
# --------------------------------------------------------------------------------------------------------------------


def test_uniform_in_memory_without_source_fps():
    frames = _gray_frames(10)
    clip = load_video(frames, sampling="uniform", num_frames=4, fps=2)
    # indices floor(k * 10 / 4) = floor(0, 2.5, 5, 7.5) = 0, 2, 5, 7; timestamps index / fps = 0, 1, 2.5, 3.5;
    # targets k * D / 4 with D = 10 / 2 = 5 s: 0, 1.25, 2.5, 3.75
    assert clip.source_frame_indices.tolist() == [0, 2, 5, 7]
    np.testing.assert_allclose(clip.timestamps, [0.0, 1.0, 2.5, 3.5])
    np.testing.assert_allclose(clip.sample_times, [0.0, 1.25, 2.5, 3.75])
    assert _levels(clip.frames) == [0, 12, 30, 42]
    assert clip.sampling == "uniform" and not clip.truncated and clip.fps == 2.0 and clip.duration == 5.0
    # torch (T, 3, H, W) and a list of frames give the same
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
    np.testing.assert_array_equal(load_video(tensor, sampling="uniform", num_frames=4).frames, clip.frames)
    np.testing.assert_array_equal(load_video(list(frames), sampling="uniform", num_frames=4).frames, clip.frames)
    # fewer frames than num_frames: floor(k * 3 / 4) = floor(0, 0.75, 1.5, 2.25) = 0, 0, 1, 2
    assert load_video(frames[:3], sampling="uniform", num_frames=4).source_frame_indices.tolist() == [0, 0, 1, 2]


def test_uniform_in_memory_with_source_fps():
    frames = _gray_frames(10)
    # D = 10 / 4 = 2.5 s, step 0.625 s: targets 0, 0.625, 1.25, 1.875 -> frame floor(4 * t) = 0, 2, 5, 7
    clip = load_video(frames, sampling="uniform", num_frames=4, source_fps=4)
    assert clip.source_frame_indices.tolist() == [0, 2, 5, 7]
    np.testing.assert_allclose(clip.timestamps, [0.0, 0.5, 1.25, 1.75])
    np.testing.assert_allclose(clip.sample_times, [0.0, 0.625, 1.25, 1.875])
    assert clip.fps == 4.0 and clip.duration == 2.5 and not clip.truncated
    # max_seconds = 1: D = 1 s, step 0.25 s: targets 0, 0.25, 0.5, 0.75 -> frames 0, 1, 2, 3 (levels 0, 6, 12, 18)
    cut = load_video(frames, sampling="uniform", num_frames=4, source_fps=4, max_seconds=1)
    assert cut.source_frame_indices.tolist() == [0, 1, 2, 3] and cut.truncated
    assert _levels(cut.frames) == [0, 6, 12, 18]
    # num_frames = 6 > the 5 frames of the first 1.25 s at 4 fps: D = 1.25, step 1.25 / 6 -> floor(4 * k * 1.25 / 6) =
    # floor(k * 5 / 6) = 0, 0, 1, 2, 3, 4
    assert load_video(
        frames, sampling="uniform", num_frames=6, source_fps=4, max_seconds=1.25
    ).source_frame_indices.tolist() == [0, 0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------------------------


def test_uniform_with_frame_transforms(videos):
    batches = []

    def halve(frames):  # (k, 16, 16, 3) uint8 -> (k, 8, 8, 3) float32 in [0, 1]
        batches.append(len(frames))
        return frames[:, ::2, ::2].astype(np.float32) / 255

    clip = load_video(videos["short"], sampling="uniform", num_frames=8, frames_transform=halve, transform_batch_size=3)
    # indices 0, 0, 1, 1, 2, 3, 3, 4 (see above): 5 distinct frames transformed once each, in batches of <= 3
    assert clip.frames.shape == (8, 8, 8, 3) and clip.frames.dtype == np.float32
    assert sum(batches) == 5 and max(batches) <= 3
    # the transform's float32 division vs numpy's float64 one: float32 rounding (measured 3e-9 absolute)
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], np.array([0, 0, 6, 6, 12, 18, 18, 24]) / 255, rtol=1e-6)
    assert clip.source_frame_indices.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]

    single = load_video(
        videos["mp4"], sampling="uniform", num_frames=4, frame_transform=lambda f: f[:4, :4, 0].astype(np.int32) + 1
    )
    # targets 0, 1, 2, 3 s -> frames 0, 10, 20, 30 -> levels 0, 60, 120, 180, + 1
    assert single.frames.shape == (4, 4, 4)
    assert single.frames[:, 0, 0].tolist() == [1, 61, 121, 181]

    memory = load_video(_gray_frames(10), sampling="uniform", num_frames=4, frames_transform=halve)
    assert memory.frames.shape == (4, 8, 8, 3)
    np.testing.assert_allclose(memory.frames[:, 0, 0, 0], np.array([0, 12, 30, 42]) / 255, rtol=1e-6)  # float32 / 255


# --------------------------------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------------------------------


def test_uniform_bad_arguments(videos):
    path = videos["short"]
    with pytest.raises(ValueError, match="num_frames"):
        load_video(path, sampling="uniform")  # missing
    for bad in (0, -1):
        with pytest.raises(ValueError, match="num_frames"):
            load_video(path, sampling="uniform", num_frames=bad)
    with pytest.raises(TypeError, match="num_frames"):
        load_video(path, sampling="uniform", num_frames=2.5)
    for sampling in ("fps", "clip_ends"):
        with pytest.raises(ValueError, match="num_frames"):
            load_video(path, sampling=sampling, num_frames=8)
    with pytest.raises(ValueError, match="max_frames"):
        load_video(path, sampling="uniform", num_frames=8, max_frames=4)
    with pytest.raises(ValueError, match="num_frames"):  # in-memory input: same checks
        load_video(_gray_frames(4), sampling="uniform", num_frames=0)
    with pytest.raises(ValueError, match="'fps', 'clip_ends' or 'uniform'"):
        load_video(path, sampling="even", num_frames=8)
