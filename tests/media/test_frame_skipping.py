"""Exact frame skipping (`media.frame_skipping`) and the fast decode.

The clips have what makes skipping worthwhile and risky: B-frames (x264 / x265 defaults, b-pyramid: some B-frames are
references, the others are not) and one GOP over the whole clip (a slow pan: no scene cut, a single keyframe), so a
wrongly skipped reference frame would corrupt every later frame. Every comparison is against a full decode (the
codec taken off `SKIPPABLE_CODECS`): the decode that the package did before skipping existed.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import av

from transformers_av.media import frame_skipping, video  # noqa: E402
from transformers_av.media.frame_sampling import _ClipEndsSampler, _FpsSampler, clip_ends_timepoints  # noqa: E402
from transformers_av.presets.tiny import tiny_processor  # noqa: E402
from transformers_av.synthetic.media import make_tone, write_video  # noqa: E402

FPS = 25
SECONDS = 5


def panning_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """A blurred blocky random texture panning 2 px per frame: codes with B-frames and without a scene cut."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (height // 8 + 2, (width + 2 * num_frames) // 8 + 2, 3)).astype(np.float32)
    texture = np.kron(blocks, np.ones((8, 8, 1), np.float32))
    texture = (texture + np.roll(texture, 4, 0) + np.roll(texture, 4, 1) + np.roll(texture, (4, 4), (0, 1))) / 4
    return np.stack([texture[:height, 2 * i : 2 * i + width] for i in range(num_frames)]).astype(np.uint8)


@pytest.fixture(scope="module", params=["libx264", "libx265"])
def clip(request, tmp_path_factory):
    """A 5 s 25 fps 96x128 clip with a 48 kHz stereo sound track, and its frames as a full decode gives them."""
    path = write_video(
        tmp_path_factory.mktemp("skip") / f"{request.param}.mp4", panning_frames(FPS * SECONDS, 96, 128), FPS,
        video_codec=request.param, audio=make_tone(440.0, SECONDS, 48000, channels=2), audio_sampling_rate=48000,
    )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes = sum(packet.is_keyframe for packet in container.demux(stream) if packet.size)
    with av.open(str(path)) as container:
        frames = [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        container.streams.video[0].codec_context.skip_frame = "NONREF"
        reference_frames = sum(1 for _ in container.decode(video=0))
    # the premise: one GOP, and many non-reference frames (FFmpeg's own count) among the 125
    assert keyframes == 1 and len(frames) == FPS * SECONDS
    assert len(frames) - reference_frames >= 40
    return path, frames


def load_both(monkeypatch, path, **kwargs) -> tuple[video.VideoClip, video.VideoClip, int, int]:
    """(skipping, full decode) clips of `load_video(path, **kwargs)` and how many frames each decoded."""
    decoded = []

    def counting(*args):
        decoded.append(0)
        for item in frame_skipping.decode_needed_frames(*args):
            decoded[-1] += 1
            yield item

    with monkeypatch.context() as patch:
        patch.setattr(video, "decode_needed_frames", counting)
        skipping = video.load_video(path, **kwargs)
        patch.setattr(frame_skipping, "SKIPPABLE_CODECS", frozenset())
        full = video.load_video(path, **kwargs)
    return skipping, full, decoded[0], decoded[1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 2},
        {"fps": 3},  # targets between frames (1/3 s is not a multiple of 1/25 s)
        {"sampling": "clip_ends"},
        {"sampling": "uniform", "num_frames": 7},
        {"fps": 2, "max_seconds": 3.3},
        {"fps": 4, "max_frames": 5},
    ],
    ids=["fps2", "fps3", "clip_ends", "uniform", "max_seconds", "max_frames"],
)
def test_skipping_keeps_exactly_the_frames_of_a_full_decode(clip, monkeypatch, kwargs):
    path, _ = clip
    skipping, full, decoded_skipping, decoded_full = load_both(monkeypatch, path, **kwargs)
    for field in ("frames", "timestamps", "source_frame_indices", "sample_times"):
        np.testing.assert_array_equal(getattr(skipping, field), getattr(full, field), err_msg=field)
    assert (skipping.duration, skipping.truncated, skipping.partial) == (full.duration, full.truncated, full.partial)
    assert decoded_skipping < decoded_full  # frames were skipped


def test_decoded_frames_are_the_full_decode_frames_one_by_one(clip):
    """Every frame `decode_needed_frames` returns -- wanted ones and reference frames decoded anyway -- carries the
    index of the full decode and exactly its pixels; each wanted frame is returned."""
    path, frames = clip
    wanted_indices = set(range(0, len(frames), 7))
    wanted_times = {Fraction(i, FPS) for i in wanted_indices}

    def needs(time, before, after):
        return time in wanted_times

    returned = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.start_time == 0 and Fraction(stream.time_base) * frames[1][0] == Fraction(1, FPS)
        for index, frame in frame_skipping.decode_needed_frames(container.demux(stream), stream, needs):
            assert frame.pts == frames[index][0]
            np.testing.assert_array_equal(frame.to_ndarray(format="rgb24"), frames[index][1])
            returned.append(index)
    assert returned == sorted(returned) and wanted_indices <= set(returned)
    assert len(returned) < len(frames) - 40  # the non-reference frames not wanted were skipped


def test_sampler_needs_are_exact_where_neighbours_are_known():
    """`needs` is True exactly for the frames a sampler keeps (a 10 fps stream: frame k at k / 10 s), True when a
    neighbour is unknown, and never False for a kept frame when the neighbours it is given are too far out."""
    times = [Fraction(k, 10) for k in range(40)]

    def kept_by(sampler) -> set[Fraction]:
        for index, time in enumerate(times):
            if sampler.feed(index, time, time):
                break
        else:
            sampler.finish(*([times[-1] + Fraction(1, 10)] if isinstance(sampler, _FpsSampler) else []))
        if isinstance(sampler, _FpsSampler):
            return {picked[3] for picked in sampler.picked}
        return set(sampler.arrays.values())

    # (sampler, whether it stops before the stream ends: the frames past its last target / clip are needed, the
    # first of them ending the decoding)
    samplers = [
        (lambda: _FpsSampler(Fraction(1, 3), None, None, lambda frame: frame), False),
        (lambda: _FpsSampler(Fraction(1, 2), Fraction(2), None, lambda frame: frame), True),  # max_seconds
        (lambda: _FpsSampler(Fraction(1, 4), None, 5, lambda frame: frame), True),  # max_frames
        (lambda: _ClipEndsSampler(clip_ends_timepoints(Fraction(37, 10)), lambda frame: frame, "clip"), True),
    ]
    for make, stops in samplers:
        kept = kept_by(make())
        sampler = make()
        for k, time in enumerate(times[1:-1], start=1):
            before, after = times[k - 1], times[k + 1]
            expected = time in kept or (stops and time > max(kept))
            assert sampler.needs(time, before, after) == expected, (k, time)
            # neighbours too far out (frames not seen yet) may only turn "no" into "yes"
            if time in kept:
                assert sampler.needs(time, before - Fraction(3, 10), after + Fraction(3, 10))
        assert sampler.needs(times[0], None, times[1]) and sampler.needs(times[5], times[4], None)


def test_processor_outputs_equal_the_former_full_decode_and_batch_transform(clip, monkeypatch):
    """The processor end to end (exact mode): pixel values, Whisper and BEATs features identical to those of the
    former pipeline -- every frame decoded, kept frames converted in batches by `frames_transform` and stacked."""
    path, _ = clip
    processor = tiny_processor(image_size=28)
    batch = processor(text="What is shown?", videos=path)

    def former_load_video(source, *, frame_writer, decode, size, **kwargs):
        assert decode == "exact" and size is None
        image_processor = processor.image_processor
        with monkeypatch.context() as patch:
            patch.setattr(frame_skipping, "SKIPPABLE_CODECS", frozenset())
            return video.load_video(
                source, frames_transform=lambda frames: image_processor.preprocess_frames(frames).numpy(), **kwargs
            )

    from transformers_av.models.favor import processing_favor

    monkeypatch.setattr(processing_favor, "load_video", former_load_video)
    expected = processor(text="What is shown?", videos=path)
    assert batch["pixel_values_videos"].shape[1] == 2 * SECONDS
    for name in ("pixel_values_videos", "input_features", "audio_input_features", "input_ids"):
        assert torch.equal(batch[name], expected[name]), name


def test_fast_decode_keeps_the_sampler_frames_with_close_pixels(clip):
    """``decode="fast"``: the frames the sampler picks (same timestamps, sample times and frame indices as exact mode)
    and pixel values close to exact mode's. The two differ in two ways, bounded separately:

    * no deblocking: against the same frames decoded with it and resized the same way (FFmpeg's area averaging), mean
      |delta| < 0.1 CLIP-normalised units (~7 grey levels; measured 0.02 / 0.04 for x264 / x265). The loop filter
      only smooths across the codec's block edges, by at most its clipping threshold, and errors it leaves in
      reference frames stay of that size until the next keyframe (here: the whole clip).
    * the resize, area averaging instead of the official bicubic without antialiasing: this clip is about the worst
      case for it (8 px texture blocks downscaled 3.4x / 4.6x to 28x28, where the official resize aliases), so the
      bound is relative: the same picture (correlation > 0.8; measured 0.89 / 0.90) with a mean |delta| below half
      the pixels' own mean deviation from their frame's mean (measured 0.42 / 0.41 of it: 0.27 / 0.26 units). On the
      720p benchmark file it is 0.16 units (README "### Measured")."""
    path, _ = clip
    exact = video.load_video(path, fps=2)
    fast = video.load_video(path, fps=2, decode="fast", size=(28, 28))
    for field in ("timestamps", "source_frame_indices", "sample_times"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(exact, field), err_msg=field)
    np.testing.assert_array_equal(fast.sample_times, np.arange(2 * SECONDS) / 2)

    processor = tiny_processor(image_size=28)
    pixels = processor.image_processor.preprocess_frames
    exact_pixels = processor(text="q", videos=path)["pixel_values_videos"][0]
    fast_pixels = processor(text="q", videos=path, videos_kwargs={"decode": "fast"})["pixel_values_videos"][0]
    # fast mode is what it says: the frames decoded without deblocking, resized by FFmpeg, then normalised; the
    # keyword reaches the video settings flat too, as transformers routes the kwargs a modality declares
    assert torch.equal(fast_pixels, pixels(fast.frames))
    assert torch.equal(processor(text="q", videos=path, decode="fast")["pixel_values_videos"][0], fast_pixels)
    deblocked = pixels(video.load_video(path, fps=2, size=(28, 28)).frames)
    assert 0 < (fast_pixels - deblocked).abs().mean() < 0.1
    delta = (fast_pixels - exact_pixels).abs().mean()
    spread = (exact_pixels - exact_pixels.mean(dim=(2, 3), keepdim=True)).abs().mean()
    assert delta < 0.5 * spread
    assert torch.corrcoef(torch.stack([fast_pixels.flatten(), exact_pixels.flatten()]))[0, 1] > 0.8


def test_bad_decode_mode_is_named(clip):
    path, _ = clip
    with pytest.raises(ValueError, match="`decode` must be one of 'exact', 'fast', got 'quick'"):
        video.load_video(path, decode="quick")
    with pytest.raises(ValueError, match="`decode` must be one of"):
        tiny_processor(image_size=28)(text="q", videos=path, videos_kwargs={"decode": "quick"})

