"""`transformers-av demo` runs both model families end to end on a generated clip and reports what it computed."""

import re

import pytest

from transformers_av.cli import main


@pytest.mark.parametrize("model", ["tiny-video-salmonn", "tiny-av-llm"])
def test_demo_runs_and_reports_every_stage(model, capsys):
    assert main(["demo", "--model", model, "--seconds", "2", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    frames, tokens = map(int, re.search(r"frames: (\d+), audio-visual tokens: (\d+)", out).groups())
    if model == "tiny-av-llm":
        # 4 uniform frames; T + P + K = 4 + 4 + 2 media tokens (no modality token: the clip's video and its sound)
        assert (frames, tokens) == (4, 10)
        stages = ["vision_encoder", "audio_encoder", "connector"]
    else:
        # 2 s at 2 fps = 4 frames; the window plan gives a positive token count
        assert frames == 4 and tokens > 0
        stages = ["visual_encoder", "speech_encoder", "audio_encoder", "connector"]
    for stage in ["decode + preprocess", *stages, "LLM (prefill + decoding)"]:
        assert re.search(rf"  {re.escape(stage)} +\d+\.\d ms", out), (stage, out)
