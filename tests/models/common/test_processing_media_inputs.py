"""How both processors take real-world media inputs: a URL downloaded once per sample (frames, sound check and sound
track from one copy), a plain list of samples as one waveform, a waveform without `sampling_rate=` at the feature
extractor's rate, and a doubled placeholder refused before any video is decoded."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
import torch


from transformers_av.presets.tiny import tiny_av_llm_config, tiny_av_llm_processor, tiny_processor  # noqa: E402
from transformers_av.presets.tiny import tiny_favor_config  # noqa: E402
from transformers_av.synthetic.media import make_av_clip  # noqa: E402


@pytest.fixture(scope="module")
def processors():
    return {"favor": tiny_processor(tiny_favor_config("video_salmonn", image_size=28)),
            "av_llm": tiny_av_llm_processor(tiny_av_llm_config())}


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    make_av_clip(root / "clip.mp4", seconds=1.0, fps=4, size=(32, 32), beep_at=[0.5])
    handler = functools.partial(_CountingHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("family", ["favor", "av_llm"])
def test_a_url_is_downloaded_once_and_equals_the_file(processors, served, family, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    root, base = served
    processor = processors[family]
    _CountingHandler.requests.clear()
    remote = processor(text="What happens?", videos=f"{base}/clip.mp4")
    assert _CountingHandler.requests == ["/clip.mp4"]  # frames, sound check and sound track from one download
    local = processor(text="What happens?", videos=str(root / "clip.mp4"))
    sound = {"favor": "input_features", "av_llm": "audio_input_features"}[family]
    assert remote.keys() == local.keys() and {"pixel_values_videos", sound} <= set(remote.keys())
    for key in local:
        torch.testing.assert_close(remote[key], local[key], rtol=0, atol=0)


@pytest.mark.parametrize("family", ["favor", "av_llm"])
def test_waveform_inputs(processors, family):
    processor = processors[family]
    samples = np.sin(np.arange(16000) * 0.05).astype(np.float32)
    as_list = processor(text="Hi?", audio=samples.tolist(), sampling_rate=16000)  # one waveform, not a batch of 16000
    as_array = processor(text="Hi?", audio=samples, sampling_rate=16000)
    assert as_list["input_ids"].shape[0] == 1
    for key in as_array:
        torch.testing.assert_close(as_list[key], as_array[key], rtol=0, atol=0)
    # without `sampling_rate=` a waveform is at the feature extractor's rate, as transformers' processors take it
    rate = processor.feature_extractor.sampling_rate
    at_rate = processor(text="Hi?", audio=samples, sampling_rate=rate)
    for key in at_rate:
        torch.testing.assert_close(processor(text="Hi?", audio=samples)[key], at_rate[key], rtol=0, atol=0)


def test_doubled_placeholder_is_refused_before_decoding(processors):
    processor = processors["favor"]
    token = processor.audio_visual_token
    # the video does not exist: the placeholder error must come first (nothing is decoded)
    with pytest.raises(ValueError, match=rf"Prompt 0 holds the placeholder '{token}' 2 times"):
        processor(text=f"{token} and {token}", videos="/no/such/video.mp4")


@pytest.mark.parametrize("family", ["favor", "av_llm"])
def test_a_truncated_video_is_refused_unless_partial_media_are_allowed(processors, family, tmp_path):
    from transformers_av.media import MediaDecodeError
    from transformers_av.synthetic.media import make_frames, write_video

    full = write_video(tmp_path / "full.mkv", make_frames(32, 32, 32), 8, lossless=True)  # 4 s
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    processor = processors[family]
    with pytest.raises(MediaDecodeError, match=r"^Sample 0: .*cut.mkv': the video frames stop at .* but the header "
                                               r"declares 4.000 s"):
        processor(text="What happens?", videos=str(cut))
    partial = processor(text="What happens?", videos=str(cut), allow_partial=True)
    whole = processor(text="What happens?", videos=str(full))
    if family == "favor":  # 2 fps over the decoded part only
        assert 0 < partial["video_frame_mask"].sum() < whole["video_frame_mask"].sum() == 8
    else:  # the uniform sampler keeps its 4 frames, the last decoded one filling the later targets
        assert partial["pixel_values_videos"].shape == whole["pixel_values_videos"].shape
