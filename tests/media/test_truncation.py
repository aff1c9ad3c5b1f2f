"""Truncated and damaged files: an error naming the declared and decoded durations by default, the decoded part with a
warning under `allow_partial=True` -- for the frames and for the sound track (the issue's case: the first 40 % of a
"faststart" mp4, whose index sits at the front so that the cut file still opens)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

import av

from transformers_av.media import MediaDecodeError, load_audio, load_video  # noqa: E402
from transformers_av.synthetic.media import make_frames, make_tone, write_video  # noqa: E402


def remux_faststart(source: Path, target: Path) -> Path:
    """`source` rewritten with its index (moov) first, as web and phone exports are."""
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return target


@pytest.fixture(scope="module")
def cut_mp4(tmp_path_factory):
    root = tmp_path_factory.mktemp("cut")
    plain = write_video(root / "plain.mp4", make_frames(80, 48, 64), 8,
                        audio=make_tone(440.0, 10.0, sampling_rate=16000), audio_sampling_rate=16000)
    full = remux_faststart(plain, root / "full.mp4")
    data = full.read_bytes()
    cut = root / "cut.mp4"
    cut.write_bytes(data[: len(data) * 4 // 10])
    return full, cut


def test_truncated_video_raises_then_partial(cut_mp4, caplog):
    full, cut = cut_mp4
    with pytest.raises(MediaDecodeError, match=r"cut.mp4'.*stop at (\d+\.\d{3}) s but the header declares 10.000 s"):
        load_video(cut)
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        clip = load_video(cut, allow_partial=True)
    assert clip.partial and "allow_partial=True" in caplog.text
    whole = load_video(full)
    assert not whole.partial and len(whole) == 20
    # the decoded part is exactly the head of the whole clip
    np.testing.assert_array_equal(clip.frames, whole.frames[: len(clip)])
    assert 2 <= len(clip) < 10


def test_truncated_sound_track_raises_then_partial(cut_mp4, caplog):
    full, cut = cut_mp4
    with pytest.raises(MediaDecodeError) as raised:
        load_audio(cut)  # the same file given as `audio=`
    message = str(raised.value)
    assert "cut.mp4" in message and "of the 10.000 s its header declares" in message
    decoded = float(re.search(r"\((\d+\.\d{3}) s of the", message).group(1))
    assert 2.0 < decoded < 6.0
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        partial = load_audio(cut, allow_partial=True)
    assert partial.partial and "truncated or damaged" in caplog.text
    whole = load_audio(full)
    assert not whole.partial and whole.duration == pytest.approx(10.0, abs=0.1)
    assert partial.duration == pytest.approx(decoded, abs=1e-3)
    np.testing.assert_array_equal(partial.waveform, whole.waveform[: len(partial.waveform)])


def test_cut_mkv_with_two_tracks(tmp_path):
    """Matroska keeps per-track DURATION tags at the end: a cut file has only the segment duration, which the longest
    track sets -- still enough to catch a file cut to 40 %."""
    path = write_video(tmp_path / "av.mkv", make_frames(80, 48, 64), 8,
                       audio=make_tone(440.0, 10.0, sampling_rate=16000), audio_sampling_rate=16000)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 4 // 10])
    with pytest.raises(MediaDecodeError, match="header declares 10.0"):
        load_audio(cut)
    with pytest.raises(MediaDecodeError, match="header declares 10.0"):
        load_video(cut)
    assert load_audio(path).duration == pytest.approx(10.0, abs=0.1)  # the whole file passes


def test_probe_finds_the_cut_without_decoding_it(cut_mp4):
    from transformers_av.media import MediaProbe, probe_media

    full, cut = cut_mp4
    video = probe_media(full, "video")
    assert video == MediaProbe("video", 10.0, ("video", "audio"))
    assert probe_media(full, "audio").duration == pytest.approx(10.0, abs=0.1)
    for kind in ("video", "audio"):
        with pytest.raises(MediaDecodeError, match=rf"cut.mp4': the {kind} stream stops at \d+\.\d{{3}} s but the "
                                                   r"header declares 10.0\d\d s: the file is truncated or damaged"):
            probe_media(cut, kind)


def test_cut_wav(tmp_path, caplog):
    """soundfile and FFmpeg size a WAV by the bytes present: the data chunk's declared size tells the cut."""
    from transformers_av.media import probe_media
    from transformers_av.synthetic.media import write_wav

    full = write_wav(tmp_path / "full.wav", make_tone(440.0, 4.0, sampling_rate=16000), 16000)  # 16-bit mono
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 16000 * 2])  # the header and the first 2 s
    with pytest.raises(MediaDecodeError, match=r"cut.wav': the audio stops at 2.000 s but the header declares "
                                               r"4.000 s: the file is truncated or damaged"):
        load_audio(cut)
    with pytest.raises(MediaDecodeError, match=r"cut.wav': the audio stream stops at 2.000 s but the header "
                                               r"declares 4.000 s"):
        probe_media(cut, "audio")
    with caplog.at_level(logging.WARNING, logger="transformers_av.media"):
        head = load_audio(cut, allow_partial=True)
    assert head.partial and head.duration == 2.0 and "allow_partial=True" in caplog.text
    np.testing.assert_array_equal(head.waveform, load_audio(full).waveform[: 2 * 16000])
    assert probe_media(full, "audio").duration == pytest.approx(4.0)
