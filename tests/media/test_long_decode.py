"""Long decodes: frames written into one preallocated array (never a list plus its stacked copy), a progress bar once
decoding takes a while, and a warning with the figure before a video that will need a lot of memory is decoded."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest


from transformers_av.media import frame_conversion, load_video, progress  # noqa: E402
from transformers_av.synthetic.media import make_frames, write_video  # noqa: E402


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    # 15 s at 8 fps, 64 x 64: 30 frames at 2 fps
    return write_video(tmp_path_factory.mktemp("long") / "clip.mp4", make_frames(120, 64, 64), 8, lossless=True)


def test_frames_are_written_into_one_array(clip_path):
    """A float32 transform of 30 frames: the peak is the result plus a batch in flight, far below the 2x of keeping a
    list of results and stacking it."""
    plain = load_video(clip_path, fps=2)

    def to_float(frames):
        return frames.transpose(0, 3, 1, 2).astype(np.float32) / 255

    tracemalloc.start()
    try:
        clip = load_video(clip_path, fps=2, frames_transform=to_float, transform_batch_size=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clip.frames.shape == (30, 3, 64, 64) and clip.frames.flags.owndata
    np.testing.assert_array_equal(clip.frames, to_float(plain.frames))
    assert peak < 1.3 * clip.frames.nbytes


def test_progress_bar_after_the_delay(clip_path, capsys, monkeypatch):
    load_video(clip_path, fps=2)
    assert capsys.readouterr().err == ""  # a quick decode prints nothing
    monkeypatch.setattr(progress, "PROGRESS_DELAY_SECONDS", 0.0)
    load_video(clip_path, fps=2)
    assert capsys.readouterr().err == ""  # a 15 s clip is short media: never a bar, however slow its decode
    monkeypatch.setattr(progress, "PROGRESS_MIN_MEDIA_SECONDS", 10.0)
    load_video(clip_path, fps=2)
    err = capsys.readouterr().err
    assert f"Decoding the video of {str(clip_path)!r}" in err and "/15.0 s" in err


def test_large_video_warning_gives_the_figure(clip_path, caplog, monkeypatch):
    monkeypatch.setattr(frame_conversion, "LARGE_FRAMES_BYTES", 100_000)
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        clip = load_video(clip_path, fps=2)
    # 30 frames x 64 x 64 x 3 bytes = 368,640 bytes, known before the first frame is stored
    assert (f"{str(clip_path)!r}: keeping 30 frames of shape (64, 64, 3) (uint8) needs about 0.4 MB of memory for "
            "the frames alone; pass max_seconds=") in caplog.text
    assert len(clip) == 30 and not clip.truncated  # the default keeps the whole video
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        load_video(clip_path, fps=2, max_seconds=4)  # 8 frames: under the limit
    assert "needs about" not in caplog.text
