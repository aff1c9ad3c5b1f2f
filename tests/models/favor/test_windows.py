"""The window plan: the one arithmetic of frames -> windows -> LLM tokens that processor and model share."""

import pytest

from transformers_av.models.favor.windows import audio_frame_count, audio_visual_plan, image_frame_count, window_plan
from transformers_av.presets.tiny import tiny_favor_config, tiny_processor

VIDEO_SALMONN = [[1, 3], [10, 30]]  # official defaults (DESIGN §4): 0.5 s x 3 queries and 5 s x 30 queries


def test_video_salmonn_docstring_example():
    plan = window_plan(64, VIDEO_SALMONN)
    assert (plan.num_frames, plan.padded_frames, plan.windows, plan.queries, plan.num_tokens) == (
        64, 70, (70, 7), (3, 30), 210)


@pytest.mark.parametrize("frames, padded", [(0, 10), (1, 10), (10, 10), (11, 20), (120, 120), (121, 130)])
def test_frames_are_padded_to_whole_coarse_windows_and_every_resolution_gives_the_same_count(frames, padded):
    plan = window_plan(frames, VIDEO_SALMONN)
    assert plan.padded_frames == padded
    assert plan.windows == (padded, padded // 10)
    assert plan.num_tokens == padded * 3 == (padded // 10) * 30


def test_favor_single_resolution():
    plan = window_plan(25, [[10, 32]])
    assert (plan.padded_frames, plan.windows, plan.num_tokens) == (30, (3,), 96)


def test_resolutions_that_disagree_on_the_token_count_are_refused():
    with pytest.raises(ValueError, match="different token counts"):
        window_plan(20, [[1, 3], [10, 32]])  # 20 x 3 = 60 vs 2 x 32 = 64
    with pytest.raises(ValueError, match="num_frames must be >= 0"):
        window_plan(-1, VIDEO_SALMONN)


@pytest.mark.parametrize(
    "samples, mode, max_chunks, expected",
    [
        (0, "exact", None, 0),
        (1, "exact", None, 1),  # any started 0.5 s counts
        (8000, "exact", None, 1),
        (8001, "exact", None, 2),
        (16000 * 31, "exact", None, 62),
        (16000 * 31, "whole_chunks", None, 120),  # the official Whisper sees 30 s chunks whole
        (16000 * 31, "exact", 1, 60),  # truncated to one 30 s chunk
        (16000 * 31, "whole_chunks", 1, 60),
    ],
)
def test_audio_frame_count(samples, mode, max_chunks, expected):
    assert audio_frame_count(samples, mode=mode, max_chunks=max_chunks) == expected


def test_audio_frame_count_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be"):
        audio_frame_count(100, mode="rounded")


def test_an_image_covers_the_audio_and_at_least_one_frame():
    assert image_frame_count(0) == 1 and image_frame_count(7) == 7


@pytest.mark.parametrize("settings", ["config", "processor"])
def test_config_and_processor_plan_alike(settings):
    config = tiny_favor_config("video_salmonn")
    source = config if settings == "config" else tiny_processor(config)
    # 3 s of audio = 6 frames; 9 video frames win; an image is stretched over the audio
    assert audio_visual_plan(source, 9, 48000).num_frames == 9
    assert audio_visual_plan(source, 1, 48000, is_image=True).num_frames == 6
    assert audio_visual_plan(source, 9, 48000).num_tokens == window_plan(9, config.resolutions).num_tokens
