"""Several decoders at once (`media.segment_decoding`): the frames of one decoder, bit for bit, or one decoder.

The clips: 10 s at 25 fps with a keyframe every second (x264 / x265 with B-frames and b-pyramid, closed GOPs: IDR
keyframes), cut into 1 s segments here (`MIN_SEGMENT_SECONDS` lowered, 2 or 3 decoder threads whatever the machine),
and an open-GOP x264 clip whose later keyframes are recovery points, not IDR frames: it must never be cut. Every
comparison is against one decoder running through the whole file (`plan_segments` switched off): what the package
did before segments existed.
"""

from __future__ import annotations

import logging
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from transformers_av.media import MediaDecodeError, segment_decoding, video
from transformers_av.media.segment_decoding import decode_segments, is_idr_packet, plan_segments
from transformers_av.media.sources import ContainerOpener

from .test_frame_skipping import panning_frames

FPS = 25
SECONDS = 10


def encode(path, codec: str, params: str, rotation: int = 0):
    """A panning clip with a keyframe every second (no scene cuts: exactly one per second), shown turned by
    ``rotation`` degrees (a phone's display matrix) when given."""
    frames = panning_frames(FPS * SECONDS, 96, 128)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        key = "x264-params" if codec == "libx264" else "x265-params"
        stream.options = {"preset": "veryfast", "crf": "23", key: f"keyint={FPS}:min-keyint={FPS}:scenecut=0:{params}"}
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module", params=["x264", "x265"])
def clip(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("segments")
    if request.param == "x264":
        return encode(folder / "closed.mp4", "libx264", "bframes=3:b-pyramid=normal:open-gop=0")
    return encode(folder / "closed.mp4", "libx265", "bframes=3:open-gop=0:log-level=error")


@pytest.fixture(scope="module")
def open_gop_clip(tmp_path_factory):
    return encode(tmp_path_factory.mktemp("open") / "open.mp4", "libx264", "bframes=3:open-gop=1")


@pytest.fixture
def segments(monkeypatch):
    """1 s segments and ``workers`` decoder threads; records each plan made."""
    plans = []
    monkeypatch.setattr(segment_decoding, "MIN_SEGMENT_SECONDS", 1)

    def recording(*args, **kwargs):
        plan = plan_segments(*args, **{"workers": recording.workers, **kwargs})
        plans.append(plan)
        return plan

    recording.workers = 2
    monkeypatch.setattr(video, "plan_segments", recording)
    return recording, plans


def one_decoder(path, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(video, "plan_segments", lambda *args, **kw: None)
        return video.load_video(path, **kwargs)


def decode_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("transformers-av-decode")]


def assert_same_clip(got, expected):
    for name in ("frames", "timestamps", "source_frame_indices", "sample_times"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    assert (got.duration, got.truncated, got.partial) == (expected.duration, expected.truncated, expected.partial)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 2},
        {"fps": 3},
        {"sampling": "clip_ends"},
        {"sampling": "uniform", "num_frames": 7},
        {"fps": 2, "max_seconds": 4.3},
        {"fps": 4, "max_frames": 9},
        {"fps": 2, "decode": "fast"},
    ],
    ids=["fps2", "fps3", "clip_ends", "uniform", "max_seconds", "max_frames", "fast"],
)
def test_segments_give_the_frames_of_one_decoder(clip, monkeypatch, segments, kwargs, workers):
    recording, plans = segments
    recording.workers = workers
    expected = one_decoder(clip, monkeypatch, **kwargs)
    got = video.load_video(clip, **kwargs)
    assert_same_clip(got, expected)
    # the premise: the clip was cut (a segment per second up to the limit) and every thread is gone
    assert plans[-1] is not None and len(plans[-1]) >= 5 and plans[-1].workers == workers
    assert not decode_threads()


def test_a_turned_video_comes_out_upright_from_every_segment(tmp_path, monkeypatch, segments):
    """The display matrix reaches each segment's decoder: frames upright (portrait), as one decoder gives them."""
    path = encode(tmp_path / "phone.mp4", "libx264", "bframes=3:open-gop=0", rotation=90)
    got = video.load_video(path, fps=2)
    assert got.frames.shape[1:] == (128, 96, 3) and got.source_size == (128, 96)
    assert_same_clip(got, one_decoder(path, monkeypatch, fps=2))
    _, plans = segments
    assert plans[-1] is not None and len(plans[-1]) >= 5


def test_every_frame_with_its_index_and_pixels(clip):
    """With no sampler (every frame), the segments give each frame of a full decode: its index, time and pixels."""
    with av.open(str(clip)) as container:
        full = [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    opener = ContainerOpener(str(clip))
    with opener.open() as container:
        plan = plan_segments(opener.open, container.streams.video[0], workers=2, min_seconds=1)
    assert plan is not None and len(plan) == SECONDS
    got = list(decode_segments(plan, opener.open, 0, None))
    assert [index for index, _ in got] == list(range(FPS * SECONDS))
    for (index, frame), (pts, pixels) in zip(got, full):
        assert frame.pts == pts
        np.testing.assert_array_equal(frame.to_ndarray(format="rgb24"), pixels)


def test_cut_only_at_idr_frames(clip, open_gop_clip, monkeypatch, segments):
    """The closed-GOP keyframes are IDR frames; the open-GOP clip's later keyframes are not, so it is never cut, and
    its frames are one decoder's."""
    for path, later_keyframes_are_idr in ((clip, True), (open_gop_clip, False)):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            codec, extradata = stream.codec_context.name, stream.codec_context.extradata
            keyframes = [bytes(packet) for packet in container.demux(stream) if packet.size and packet.is_keyframe]
        assert len(keyframes) == SECONDS
        assert is_idr_packet(codec, keyframes[0], extradata)
        assert all(is_idr_packet(codec, data, extradata) == later_keyframes_are_idr for data in keyframes[1:])
    _, plans = segments
    assert_same_clip(video.load_video(open_gop_clip, fps=2), one_decoder(open_gop_clip, monkeypatch, fps=2))
    assert plans == [None]


def test_annex_b_nal_units_are_read_too():
    """Start-code streams (MPEG-TS, raw .h264): an IDR slice after an SPS / PPS, and a non-IDR slice."""
    idr = b"\x00\x00\x00\x01\x67\x64\x00\x1f" + b"\x00\x00\x00\x01\x68\xee" + b"\x00\x00\x01\x65\x88\x84"
    non_idr = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01\x41\x9a\x02"
    assert is_idr_packet("h264", idr, None) and not is_idr_packet("h264", non_idr, None)
    assert not is_idr_packet("h264", b"\x00\x00\x01\x67\x64", None)  # parameter sets alone: no picture
    # HEVC: IDR_W_RADL (19) vs CRA (21) in the type bits (header byte >> 1)
    assert is_idr_packet("hevc", b"\x00\x00\x01\x26\x01\xaf", None)
    assert not is_idr_packet("hevc", b"\x00\x00\x01\x2a\x01\xaf", None)


def test_one_decoder_when_a_segment_disagrees(clip, monkeypatch, segments, caplog):
    """A segment whose decoder gives another number of frames than it has packets (here: one made up) is not trusted:
    the file is decoded again by one decoder, with the same result, and the log says why."""
    original = segment_decoding.decode_needed_frames

    def one_frame_too_many(packets, stream, needs):
        count = yield from original(packets, stream, needs)
        return count + 1

    monkeypatch.setattr(segment_decoding, "decode_needed_frames", one_frame_too_many)
    with caplog.at_level(logging.INFO, logger="transformers_av.media.video"):
        got = video.load_video(clip, fps=2)
    assert_same_clip(got, one_decoder(clip, monkeypatch, fps=2))
    assert "decoder gave" in caplog.text and "decoding it again with one decoder" in caplog.text
    assert not decode_threads()


def test_a_decoding_error_comes_after_the_frames_before_it(clip, monkeypatch, segments):
    """An FFmpeg error in the fourth segment (3 s in) is raised as one decoder raises it, after the frames before it:
    `MediaDecodeError`, or with ``allow_partial=True`` the frames up to there."""
    original = segment_decoding.decode_needed_frames
    time_base = None

    def failing_at_3s(packets, stream, needs):
        nonlocal time_base
        time_base = Fraction(stream.time_base)
        packets = iter(packets)
        first = next(packets)
        if first.pts is not None and first.pts * time_base == 3:
            raise av.InvalidDataError(1094995529, "Invalid data found when processing input")

        def chained():
            yield first
            yield from packets

        return (yield from original(chained(), stream, needs))

    monkeypatch.setattr(segment_decoding, "decode_needed_frames", failing_at_3s)
    with pytest.raises(MediaDecodeError, match="failed after .* frame"):
        video.load_video(clip, fps=2)
    partial = video.load_video(clip, fps=2, allow_partial=True)
    full = one_decoder(clip, monkeypatch, fps=2)
    kept = len(partial.frames)
    assert 0 < kept < len(full.frames) and partial.timestamps[-1] < 3
    np.testing.assert_array_equal(partial.frames, full.frames[:kept])
    assert not decode_threads()
