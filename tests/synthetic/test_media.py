"""Tests of transformers_av.synthetic.media: everything written is decoded back with PyAV / soundfile and checked."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import av
import soundfile as sf

from transformers_av.synthetic.media import (  # noqa: E402
    DEFAULT_PALETTE,
    SyntheticClip,
    make_av_clip,
    make_beep_track,
    make_frames,
    make_image,
    make_tone,
    to_rgb,
    write_video,
    write_wav,
)

# one codec frame, in samples at the decoded rate, per audio codec (PCM has none)
CODEC_FRAME = {"aac": 1024, "opus": 960, "pcm_s16le": 1, "mp3float": 1152, "mp3": 1152, "vorbis": 2048}


def decode(path):
    """(frames uint8 (T, H, W, 3), video stream info, audio float (channels, samples) or None, audio info)."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        vinfo = {"codec": vstream.codec_context.name, "fps": vstream.average_rate or vstream.guessed_rate}
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    audio, ainfo = None, None
    with av.open(str(path)) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            ainfo = {"codec": astream.codec_context.name, "rate": astream.rate, "channels": astream.channels}
            chunks = []
            for f in container.decode(audio=0):
                data = f.to_ndarray()
                data = data if f.format.is_planar else data.reshape(-1, astream.channels).T  # packed: interleaved
                if data.dtype.kind == "i":
                    data = data / float(-np.iinfo(data.dtype).min)
                chunks.append(data.astype(np.float64))
            audio = np.concatenate(chunks, axis=1)
            ainfo["rate"] = container.streams.audio[0].codec_context.sample_rate or ainfo["rate"]
    return frames, vinfo, audio, ainfo


def dominant_frequency(audio: np.ndarray, rate: int) -> float:
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.shape[-1])))
    return float(np.argmax(spectrum) * rate / mono.shape[-1])


# ------------------------------------------------------------------------------------------------------------------
# audio generation and wav files
# ------------------------------------------------------------------------------------------------------------------


def test_make_tone():
    tone = make_tone(440.0, 0.5, sampling_rate=16000, amplitude=0.5)
    assert tone.dtype == np.float32 and tone.shape == (8000,)
    assert np.isclose(np.abs(tone).max(), 0.5, atol=1e-3)  # 220 sampled periods: one sample near a crest
    assert abs(dominant_frequency(tone, 16000) - 440.0) <= 2.0
    stereo = make_tone(440.0, 0.5, sampling_rate=44100, channels=2)
    assert stereo.shape == (22050, 2) and np.array_equal(stereo[:, 0], stereo[:, 1])


def test_make_beep_track():
    track = make_beep_track([(0.5, 0.25, 1000.0), (1.5, 0.25, 2000.0)], seconds=2.0, sampling_rate=16000)
    assert track.dtype == np.float32 and track.shape == (32000,)
    assert np.abs(track[:8000]).max() == 0.0 and np.abs(track[12000:24000]).max() == 0.0
    assert abs(dominant_frequency(track[8000:12000], 16000) - 1000.0) <= 5
    assert abs(dominant_frequency(track[24000:28000], 16000) - 2000.0) <= 5
    noisy = make_beep_track([], 1.0, noise=0.01, seed=3, channels=2)
    assert noisy.shape == (16000, 2) and 0.005 < noisy.std() < 0.02
    assert np.array_equal(noisy, make_beep_track([], 1.0, noise=0.01, seed=3, channels=2))
    assert not np.array_equal(noisy, make_beep_track([], 1.0, noise=0.01, seed=4, channels=2))


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_write_wav_round_trip(tmp_path, suffix, channels):
    tone = make_tone(440.0, 0.5, sampling_rate=22050, channels=channels)
    path = write_wav(tmp_path / f"sub/tone{suffix}", tone, 22050)
    data, rate = sf.read(str(path), dtype="float32")
    info = sf.info(str(path))
    assert rate == 22050 and info.subtype == "PCM_16" and data.shape == tone.shape
    assert np.abs(data - tone).max() <= 1.0 / 32767 + 1e-6  # one 16-bit step (+ float32 rounding)


def test_write_ogg(tmp_path):
    path = write_wav(tmp_path / "tone.ogg", make_tone(440.0, 1.0), 16000)
    data, rate = sf.read(str(path))
    assert rate == 16000 and abs(data.shape[0] - 16000) < 1024
    assert abs(dominant_frequency(data, rate) - 440.0) <= 5


# ------------------------------------------------------------------------------------------------------------------
# frames and images
# ------------------------------------------------------------------------------------------------------------------


def test_make_frames():
    frames = make_frames(6, 32, 48, colors=["red", (0, 0, 255), "#00ff00"], moving_square=False)
    assert frames.dtype == np.uint8 and frames.shape == (6, 32, 48, 3)
    expected = [(255, 0, 0)] * 2 + [(0, 0, 255)] * 2 + [(0, 255, 0)] * 2
    for frame, color in zip(frames, expected):
        assert (frame == np.array(color, np.uint8)).all()

    default = make_frames(10, 32, 48)
    corners = [tuple(int(v) for v in f[0, 0]) for f in default]
    palette = [to_rgb(c) for c in DEFAULT_PALETTE]
    assert corners[:8] == palette or sum(c == p for c, p in zip(corners, palette)) >= 6  # square may cover a corner
    square = (default != default[:, :1, :1]).any(-1)  # pixels differing from the background colour
    assert square.any(axis=(1, 2)).all(), "every frame shows the square"
    positions = [tuple(np.argwhere(m).min(0)) for m in square]
    assert len(set(positions)) > 1, "the square moves"
    assert np.array_equal(default, make_frames(10, 32, 48))
    assert not np.array_equal(default, make_frames(10, 32, 48, seed=1))


def test_make_image(tmp_path):
    image = make_image(tmp_path / "a.png", color="blue", size=(32, 48), square_color="red")
    assert image.size == (48, 32) and image.getpixel((0, 0)) == (0, 0, 255) and image.getpixel((7, 5)) == (255, 0, 0)
    from PIL import Image

    with Image.open(tmp_path / "a.png") as reread:
        assert np.array_equal(np.asarray(reread.convert("RGB")), np.asarray(image))
    assert make_image(color=(1, 2, 3), size=(4, 5)).getpixel((4, 3)) == (1, 2, 3)


# ------------------------------------------------------------------------------------------------------------------
# videos
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, lossless, rate, channels, audio_codec",
    [
        (".mp4", False, 16000, 1, None),
        (".mp4", True, 16000, 1, None),
        (".mkv", False, 16000, 1, None),
        (".mkv", True, 16000, 2, "libopus"),
        (".mp4", False, 44100, 2, None),
        (".webm", False, 44100, 2, None),
        (".webm", True, 16000, 1, None),
        (".avi", False, 16000, 1, None),
        (".avi", True, 44100, 2, None),
    ],
)
def test_write_video_round_trip(tmp_path, suffix, lossless, rate, channels, audio_codec):
    fps, seconds, frequency = 8, 2.0, 440.0
    frames = make_frames(int(seconds * fps), 64, 96)
    tone = make_tone(frequency, seconds, sampling_rate=rate, channels=channels)
    path = write_video(
        tmp_path / f"clip{suffix}", frames, fps, audio=tone, audio_sampling_rate=rate, lossless=lossless,
        audio_codec=audio_codec,
    )
    decoded, vinfo, audio, ainfo = decode(path)

    assert decoded.shape == frames.shape
    assert vinfo["fps"] == fps
    error = np.abs(decoded.astype(np.int16) - frames.astype(np.int16))
    if lossless:
        assert error.max() == 0, f"{vinfo['codec']} is not lossless"
    else:
        assert error.mean() < 3.0

    assert audio is not None and ainfo["channels"] == channels
    decoded_rate = ainfo["rate"]
    expected = seconds * decoded_rate
    assert abs(audio.shape[1] - expected) <= CODEC_FRAME[ainfo["codec"]], (audio.shape, expected, ainfo)
    assert abs(dominant_frequency(audio, decoded_rate) - frequency) <= 5.0


def test_write_video_fractional_fps_and_video_only(tmp_path):
    frames = make_frames(10, 32, 32)
    path = write_video(tmp_path / "ntsc.mp4", frames, Fraction(30000, 1001))
    decoded, vinfo, audio, _ = decode(path)
    assert decoded.shape[0] == 10 and vinfo["fps"] == Fraction(30000, 1001) and audio is None


def test_make_av_clip_ground_truth(tmp_path):
    clip = make_av_clip(tmp_path / "clip.mp4", seconds=3.0, fps=8, beep_at=[0.5, 2.0], colors=["red", "lime", "blue"])
    assert isinstance(clip, SyntheticClip) and clip.path.exists()
    assert clip.num_frames == 24 and clip.duration == 3.0 and clip.audio.shape == (48000,)
    assert clip.beeps == ((0.5, 0.25, 1000.0), (2.0, 0.25, 1000.0))
    assert clip.color_at(0.9) == (255, 0, 0) and clip.color_at(1.5) == (0, 255, 0) and clip.color_at(2.1) == (0, 0, 255)
    assert clip.beep_frame_indices() == [[4, 5], [16, 17]]

    decoded, vinfo, audio, ainfo = decode(clip.path)
    assert decoded.shape == clip.frames.shape and vinfo["fps"] == 8
    # the colour on screen (decoded) when each beep is heard (decoded audio onset) is the ground-truth colour
    envelope = np.abs(audio[0])
    onsets = []
    for start, duration, _ in clip.beeps:
        lo, hi = int((start - 0.2) * 16000), int((start + duration) * 16000)
        loud = np.flatnonzero(envelope[lo:hi] > 0.1)
        onsets.append((lo + loud[0]) / 16000)
    for onset, (start, _, _) in zip(onsets, clip.beeps):
        assert abs(onset - start) <= 1024 / 16000
        frame = decoded[clip.frame_index_at(onset)]
        background = np.median(frame.reshape(-1, 3), axis=0)
        assert np.abs(background - np.array(clip.color_at(start))).max() < 12

    default = make_av_clip(tmp_path / "default.webm", seconds=2.0, fps=4, lossless=True, channels=2)
    assert default.beeps == ((1.0, 0.25, 1000.0),) and default.audio.shape == (32000, 2)
    assert default.colors_per_frame == tuple([to_rgb("red")] * 4 + [to_rgb("green")] * 4)
    decoded, *_ = decode(default.path)
    assert np.array_equal(decoded, default.frames)


# ------------------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: make_tone(440.0, -1.0), "seconds"),
        (lambda p: make_tone(9000.0, 1.0, sampling_rate=16000), "frequency"),
        (lambda p: make_tone(440.0, 1.0, sampling_rate=0), "sampling_rate"),
        (lambda p: make_tone(440.0, 1.0, amplitude=2.0), "amplitude"),
        (lambda p: make_beep_track([(0.9, 0.5, 1000.0)], 1.0), "beeps"),
        (lambda p: make_beep_track([(0.1, -0.5, 1000.0)], 1.0), "beeps"),
        (lambda p: make_frames(0), "num_frames"),
        (lambda p: make_frames(2, colors=["not-a-colour"]), "color"),
        (lambda p: make_frames(2, colors=[(300, 0, 0)]), "color"),
        (lambda p: write_wav(p / "a.mp3x", make_tone(440.0, 0.1), 16000), "extension"),
        (lambda p: write_wav(p / "a.wav", np.zeros((2, 1000)), 16000), "waveform"),
        (lambda p: write_video(p / "a.mp4", make_frames(2), fps=0), "fps"),
        (lambda p: write_video(p / "a.mp4", make_frames(2), fps=-8), "fps"),
        (lambda p: write_video(p / "a.xyz", make_frames(2), fps=8), "extension"),
        (lambda p: write_video(p / "a.mp4", make_frames(2).astype(np.float32), fps=8), "frames"),
        (lambda p: write_video(p / "a.mp4", make_frames(2)[..., :2], fps=8), "frames"),
        (lambda p: write_video(p / "a.mp4", make_frames(2)[0], fps=8), "frames"),
        (lambda p: write_video(p / "a.mp4", make_frames(2, 33, 47), fps=8), "frames"),
        (lambda p: write_video(p / "a.mp4", make_frames(2), 8, audio=np.zeros((100, 3))), "audio"),
        (lambda p: write_video(p / "a.mp4", make_frames(2), 8, audio=np.zeros(100), audio_sampling_rate=-1),
         "audio_sampling_rate"),
        (lambda p: write_video(p / "a.mp4", make_frames(2), 8, video_codec="no-such-codec"), "video_codec"),
        (lambda p: make_av_clip(p / "a.mp4", seconds=-1.0), "seconds"),
        (lambda p: make_av_clip(p / "a.mp4", fps=0), "fps"),
        (lambda p: make_av_clip(p / "a.mp4", seconds=1.0, beep_at=5.0), "beep_at"),
        (lambda p: make_av_clip(p / "a.txt"), "extension"),
        (lambda p: make_image(p / "a.xyz"), "extension"),
        (lambda p: make_image(size=(0, 4)), "size"),
    ],
)
def test_bad_input_raises_value_error(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is left behind"
