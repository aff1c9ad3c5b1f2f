"""`transformers_av.media.audio`: mono waveforms at 16 kHz from audio files, sound tracks of videos and arrays;
the resampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from transformers_av.media import (  # noqa: E402
    NoAudioTrackError,
    has_audio_track,
    load_audio,
    resample_audio,
)
from transformers_av.synthetic.media import make_frames, make_tone, write_video, write_wav  # noqa: E402


def _dominant_frequency(waveform: np.ndarray, sampling_rate: int) -> float:
    window = np.hanning(len(waveform))
    spectrum = np.abs(np.fft.rfft(waveform * window))
    return float(np.argmax(spectrum) * sampling_rate / len(waveform))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """3 s at 8 fps, with a 440 Hz stereo 44.1 kHz sound track and without one."""
    root = tmp_path_factory.mktemp("audio")
    frames = make_frames(24, 48, 64)
    tone = make_tone(440.0, 3.0, sampling_rate=44100, channels=2)
    return {
        "av_mp4": write_video(root / "av.mp4", frames, 8, audio=tone, audio_sampling_rate=44100),
        "silent_mp4": write_video(root / "silent.mp4", frames, 8),
    }


def test_audio_track_of_video(videos):
    assert has_audio_track(videos["av_mp4"]) and not has_audio_track(videos["silent_mp4"])
    audio = load_audio(videos["av_mp4"])
    assert audio.sampling_rate == 16000 and audio.source_sampling_rate == 44100 and audio.source_channels == 2
    assert audio.waveform.dtype == np.float32 and audio.waveform.ndim == 1
    # AAC: whole 1024-sample codec frames (23 ms at 44.1 kHz) and priming, so the duration is 3 s +- 0.05 (measured
    # 3.019); the tone is found to within 5 Hz (FFT bins are 0.33 Hz wide; lossy codec + resampler); lossy amplitude 10%
    assert audio.duration == pytest.approx(3.0, abs=0.05)
    assert _dominant_frequency(audio.waveform, 16000) == pytest.approx(440.0, abs=5)
    assert np.abs(audio.waveform).max() == pytest.approx(0.3, abs=0.03)  # mean of two identical channels

    head = load_audio(videos["av_mp4"], max_seconds=1.3)
    assert head.truncated and len(head.waveform) == int(1.3 * 16000)
    # same decoder, same resampler, same process; only where decoding stops differs (measured 0)
    np.testing.assert_allclose(head.waveform, audio.waveform[: len(head.waveform)], atol=1e-6)

    with pytest.raises(NoAudioTrackError, match="silent.mp4") as info:
        load_audio(videos["silent_mp4"])
    assert isinstance(info.value, ValueError)


def test_audio_files_resampled_and_downmixed(tmp_path):
    wav = write_wav(tmp_path / "tone22k.wav", make_tone(440.0, 2.0, sampling_rate=22050), 22050)
    audio = load_audio(wav)
    assert audio.source_sampling_rate == 22050 and audio.sampling_rate == 16000
    assert len(audio.waveform) == 32000 and audio.duration == pytest.approx(2.0)
    assert _dominant_frequency(audio.waveform, 16000) == pytest.approx(440.0, abs=5)
    ideal = make_tone(440.0, 2.0, sampling_rate=16000)
    # 16-bit wav quantisation (3e-5) + the windowed-sinc resampler's pass-band ripple, edges left out (measured 1e-4)
    np.testing.assert_allclose(audio.waveform[50:-50], ideal[50:-50], atol=2e-3)  # 16-bit wav + resampler

    # channels are averaged: left = tone, right = silence -> half the amplitude
    stereo = np.stack([make_tone(1000.0, 1.0, 48000, amplitude=0.5), np.zeros(48000, np.float32)], axis=1)
    flac = write_wav(tmp_path / "stereo.flac", stereo, 48000)
    mono = load_audio(flac)
    assert mono.source_channels == 2 and len(mono.waveform) == 16000
    assert np.abs(mono.waveform[100:-100]).max() == pytest.approx(0.25, abs=0.01)  # 16-bit + resampler ripple

    with open(wav, "rb") as handle:  # file-like (PyAV)
        np.testing.assert_allclose(load_audio(handle).waveform, audio.waveform, atol=1e-6)  # same bytes (measured 0)


def test_audio_in_memory():
    tone = make_tone(440.0, 1.0, sampling_rate=48000, channels=2)  # (S, 2)
    for source in (tone, tone.T.copy(), torch.from_numpy(tone.T.copy())):
        audio = load_audio(source, source_sampling_rate=48000)
        assert audio.source_channels == 2 and len(audio.waveform) == 16000
    pcm = (make_tone(440.0, 1.0, 16000) * 32767).astype(np.int16)
    # k / 32768 is exact in float32: 1e-7 is far below one int16 step (3e-5) (measured 0)
    np.testing.assert_allclose(load_audio(pcm, source_sampling_rate=16000).waveform, pcm / 32768.0, atol=1e-7)
    with pytest.raises(ValueError, match="source_sampling_rate"):
        load_audio(tone)
    with pytest.raises(TypeError, match="load_audio expects"):
        load_audio({"array": tone})


def test_resampler_is_band_limited():
    rate = 44100
    t = np.arange(rate) / rate
    # 440 Hz kept, 12 kHz (above the 8 kHz Nyquist of the output) removed instead of aliased to 4 kHz
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)
    y = resample_audio(x, rate, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(14000)))
    freqs = np.fft.rfftfreq(14000, 1 / 16000)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(4000) < 1e-2 * at(440)  # > 40 dB down (no filter: as loud as the 440 Hz tone)


def test_has_audio_track_of_bytes_and_file_objects_leaves_them_readable(videos):
    assert has_audio_track(videos["av_mp4"].read_bytes())
    with open(videos["silent_mp4"], "rb") as handle:
        assert not has_audio_track(handle) and handle.tell() == 0
    with open(videos["av_mp4"], "rb") as handle:
        assert has_audio_track(handle) and handle.tell() == 0  # rewound: the same object can be decoded next
        np.testing.assert_allclose(load_audio(handle).waveform, load_audio(videos["av_mp4"]).waveform, atol=1e-6)


def test_multichannel_track_mixed_frame_by_frame_equals_the_whole_track_mix(tmp_path):
    """The PyAV reader mixes each decoded frame down to mono as it goes (a long stereo track is never held at full
    width): the waveform equals the former mix of the whole decoded track (float64 mean of the channels), sample for
    sample, on a 48 kHz stereo AAC track whose channels differ."""
    import av

    left, right = make_tone(440.0, 3.0, 48000), make_tone(660.0, 3.0, 48000, amplitude=0.2)
    path = write_video(tmp_path / "stereo.mp4", make_frames(6, 32, 32), fps=2,
                       audio=np.stack([left, right], axis=1), audio_sampling_rate=48000)
    with av.open(str(path)) as container:
        whole = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)  # fltp
    assert whole.shape[0] == 2 and not np.array_equal(whole[0], whole[1])
    former = resample_audio(whole.mean(axis=0, dtype=np.float64).astype(np.float32), 48000, 16000)
    clip = load_audio(path, sampling_rate=16000)
    assert clip.source_channels == 2 and clip.source_sampling_rate == 48000
    np.testing.assert_array_equal(clip.waveform, former)


def _former_resample(waveform: np.ndarray, orig: int, new: int, lowpass_filter_width: int = 6,
                     rolloff: float = 0.99) -> np.ndarray:
    """The resampler as it was: one conv1d over the whole zero-padded signal (kept here as the reference)."""
    import math

    gcd = math.gcd(orig, new)
    orig_r, new_r = orig // gcd, new // gcd
    base_freq = min(orig_r, new_r) * rolloff
    width = int(math.ceil(lowpass_filter_width * orig_r / base_freq))
    idx = torch.arange(-width, width + orig_r, dtype=torch.float64)[None, :] / orig_r
    t = torch.arange(0, -new_r, -1, dtype=torch.float64)[:, None] / new_r + idx
    t = (t * base_freq).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernels = (kernels * window * base_freq / orig_r).to(torch.float32)[:, None, :]
    signal = torch.nn.functional.pad(torch.from_numpy(waveform)[None, None, :], (width, width + orig_r))
    out = torch.nn.functional.conv1d(signal, kernels, stride=orig_r).transpose(1, 2).reshape(-1)
    return out[: int(math.ceil(new_r * len(waveform) / orig_r))].numpy()


@pytest.mark.parametrize(
    "orig, new, seconds",
    [(48000, 16000, 3), (44100, 16000, 3), (22050, 16000, 3), (48000, 16000, 10), (8000, 16000, 20)],
)
def test_resampler_in_blocks_is_bit_identical_to_one_conv(orig, new, seconds):
    """Short signals take one conv1d; 10 s at 48 kHz and 20 s at 8 kHz are more than two blocks of output frames
    (`_RESAMPLE_BLOCK_FRAMES`), done block by block: the same values bit for bit."""
    from transformers_av.media.audio import _RESAMPLE_BLOCK_FRAMES

    waveform = np.random.default_rng(0).uniform(-1, 1, seconds * orig + 17).astype(np.float32)
    if seconds > 3:
        assert len(waveform) // (orig // np.gcd(orig, new)) > 2 * _RESAMPLE_BLOCK_FRAMES
    resampled = resample_audio(waveform, orig, new)
    assert resampled.dtype == np.float32 and resampled.shape == (int(np.ceil(len(waveform) * new / orig)),)
    np.testing.assert_array_equal(resampled, _former_resample(waveform, orig, new))


def test_whisper_features_one_piece_at_a_time_equal_one_call_on_all_pieces():
    """The processor gives Whisper each 30 s piece of a long track in its own call (bounded working memory): the
    features equal one call on all the pieces (the former), piece for piece."""
    from transformers_av.presets.tiny import tiny_processor

    processor = tiny_processor(image_size=28)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 65)).astype(np.float32)  # 3 pieces, the last one short
    batch = processor(text="q", audio=wave, sampling_rate=16000)
    chunk = 30 * 16000
    former = processor.feature_extractor(
        [wave[s : s + chunk] for s in range(0, len(wave), chunk)], sampling_rate=16000, padding="max_length",
        max_length=chunk, return_attention_mask=True, return_tensors="pt",
    )
    assert torch.equal(batch["input_features"][0], torch.cat(list(former["input_features"]), dim=-1))
    assert torch.equal(batch["input_features_mask"][0], torch.cat(list(former["attention_mask"]), dim=-1).bool())
