"""`http(s)://` media: downloaded through huggingface_hub's HTTP session from a local server on 127.0.0.1 (stdlib
`http.server` in a thread), decoded exactly like the local file; offline mode, HTTP errors and other URL schemes give
errors that name the URL."""

from __future__ import annotations

import functools
import http.server
import os
import tempfile
import threading

import numpy as np
import pytest


from PIL import Image  # noqa: E402

from transformers_av.media import has_audio_track, load_audio, load_image, load_video  # noqa: E402
from transformers_av.media.errors import MediaDownloadError  # noqa: E402
from transformers_av.synthetic.media import make_frames, make_tone, write_video, write_wav  # noqa: E402


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder of media served on http://127.0.0.1:<port>/ for the module."""
    root = tmp_path_factory.mktemp("www")
    write_video(root / "clip.mp4", make_frames(16, 32, 48), 8, lossless=True,
                audio=make_tone(440.0, 2.0, sampling_rate=16000), audio_sampling_rate=16000)
    write_wav(root / "tone.wav", make_tone(330.0, 1.0, sampling_rate=16000), 16000)
    Image.fromarray(make_frames(1, 12, 16)[0]).save(root / "frame.png")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline (read once, at import)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def test_urls_decode_like_local_files(served, online):
    root, base = served
    video = load_video(f"{base}/clip.mp4", fps=4)
    np.testing.assert_array_equal(video.frames, load_video(root / "clip.mp4", fps=4).frames)
    assert video.source == repr(f"{base}/clip.mp4")  # messages name the URL, not the temporary copy
    assert has_audio_track(f"{base}/clip.mp4")
    np.testing.assert_array_equal(load_audio(f"{base}/clip.mp4").waveform, load_audio(root / "clip.mp4").waveform)
    np.testing.assert_array_equal(load_audio(f"{base}/tone.wav").waveform, load_audio(root / "tone.wav").waveform)
    np.testing.assert_array_equal(load_image(f"{base}/frame.png"), load_image(root / "frame.png"))
    leftovers = [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("transformers-av-")]
    assert not leftovers  # the temporary copies are deleted


def test_http_error_names_the_url(served, online):
    _, base = served
    with pytest.raises(MediaDownloadError, match=rf"'{base}/missing.mp4': HTTP 404"):
        load_video(f"{base}/missing.mp4")


def test_offline_mode_says_so(served, monkeypatch):
    from huggingface_hub import constants

    _, base = served
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MediaDownloadError, match=r"'http://127.*/clip.mp4': offline mode is on \(HF_HUB_OFFLINE=1\)"):
        load_audio(f"{base}/clip.mp4")


def test_other_schemes_are_named():
    with pytest.raises(FileNotFoundError, match=r"'s3://bucket/x.mp4' is a s3:// URL; only http:// and https://"):
        load_video("s3://bucket/x.mp4")
