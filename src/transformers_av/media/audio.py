"""Load a mono waveform at the model's sampling rate from an audio file, the sound track of a video, or an array.

* `load_audio` -> `AudioClip`: a mono float32 waveform at ``sampling_rate`` (16 kHz). Channels are averaged (mean);
  resampling uses `resample_audio`, a windowed-sinc polyphase resampler (Hann window, 6 zero crossings, roll-off
  0.99 -- the algorithm and defaults of ``torchaudio.functional.resample``, run with ``torch.nn.functional.conv1d``).
* `has_audio_track`: whether a file has sound at all (a silent video has none).

wav / flac / ogg / aiff files are read with soundfile, everything else (mp3, m4a, the sound track of a video, bytes,
file objects) with PyAV; both are imported lazily. Samples are concatenated in decode order from the first audio stream
(FFmpeg drops codec priming samples); a sound track that starts later than its video is not shifted or padded.
``max_seconds`` keeps the FIRST ``max_seconds`` (decoding stops shortly after) and logs a warning when it cuts.

Truncated or damaged files: a sound track decoded with PyAV that stops well before the duration its header declares
(`sources.is_cut_short`), or that FFmpeg cannot decode to the end, raises `MediaDecodeError` naming both
durations; ``allow_partial=True`` keeps the samples decoded before, with a warning (``AudioClip.partial``). A WAV
file is checked against the size of its ``data`` chunk (soundfile and FFmpeg both size a WAV by the bytes present, so
a cut WAV would otherwise be read short without notice; `wav_cut_short`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .arguments import optional_positive
from .errors import MediaDecodeError, describe_source
from .progress import DecodeProgress
from .remote import downloaded
from .sources import (
    ContainerOpener,
    check_file,
    declared_duration,
    first_stream,
    import_av,
    is_cut_short,
    is_encoded,
    is_path,
    is_torch_tensor,
)

logger = logging.getLogger(__name__)

__all__ = ["AudioClip", "has_audio_track", "load_audio", "resample_audio", "wav_cut_short"]

#: Files read with soundfile first (PyAV is the fallback and handles everything else).
_SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif")
#: Largest polyphase kernel (elements) built by `resample_audio` before it falls back to FFmpeg's swresample.
_MAX_KERNEL_ELEMENTS = 20_000_000


@dataclass
class AudioClip:
    """A mono waveform.

    Attributes:
        waveform: float32 ``(S,)`` in ``[-1, 1]`` (mean of the source channels, resampled to ``sampling_rate``).
        sampling_rate: samples per second of ``waveform``.
        duration: ``S / sampling_rate`` seconds.
        source_sampling_rate: sample rate of the source.
        source_channels: number of channels of the source.
        truncated: ``True`` when ``max_seconds`` cut the waveform.
        source: a description of the input (path) for messages.
        partial: ``True`` when the file ended (or broke) well before its declared duration and ``allow_partial=True``
            let the decoded part through.
    """

    waveform: np.ndarray
    sampling_rate: int
    duration: float
    source_sampling_rate: int
    source_channels: int
    truncated: bool = False
    source: str | None = field(default=None, repr=False)
    partial: bool = False


def has_audio_track(source: Any) -> bool:
    """Whether a media file (path, URL, bytes or seekable file-like) has an audio stream."""
    with downloaded(source) as local:
        opener = ContainerOpener(local)
        container = opener.open()
        try:
            return len(container.streams.audio) > 0
        finally:
            container.close()
            opener.rewind()


def load_audio(
    source: Any,
    *,
    sampling_rate: int = 16000,
    max_seconds: float | None = None,
    source_sampling_rate: int | None = None,
    allow_partial: bool = False,
) -> AudioClip:
    """Load a mono waveform at ``sampling_rate``.

    Args:
        source: a path to an audio file (wav / flac / ogg: soundfile; mp3 / m4a / aac / opus / anything else: PyAV)
            or to a VIDEO file (its first audio stream), an ``http(s)://`` URL of one (downloaded first), bytes, a
            seekable file-like object (PyAV), or a numpy / torch waveform ``(samples,)``, ``(channels, samples)`` or
            ``(samples, channels)`` (float in ``[-1, 1]`` or integer PCM) -- then ``source_sampling_rate`` is required.
        sampling_rate: output rate (16 kHz for Whisper / BEATs).
        max_seconds: keep the first ``max_seconds`` (decoding stops shortly after; the result equals, to float
            rounding, the first samples of the full decode). A warning is logged when audio is cut.
        source_sampling_rate: rate of an in-memory waveform (ignored for files, which carry their own rate).
        allow_partial: accept a truncated or damaged file (see the module docstring) with a warning instead of an
            error.

    Returns:
        an `AudioClip`: channels averaged, resampled with `resample_audio`.

    Raises:
        NoAudioTrackError: the file has no audio stream (e.g. a silent video); see `has_audio_track`.
        MediaDecodeError: unreadable / corrupt / truncated file.
    """
    sampling_rate = _positive_rate(sampling_rate, "sampling_rate")
    max_seconds_f = optional_positive(max_seconds, "max_seconds")

    def max_samples_at(rate: int) -> int | None:
        if max_seconds_f is None:
            return None
        # a margin past the cut so that the resampled head equals the head of the full resampled waveform
        return int(math.ceil(max_seconds_f * rate)) + rate // 10 + 64

    partial = False
    if is_encoded(source):
        name = describe_source(source)
        with downloaded(source) as local:
            data, rate, channels, more, partial = _read_encoded(local, name, max_samples_at, allow_partial)
    elif isinstance(source, (np.ndarray, list, tuple)) or is_torch_tensor(source):
        name = f"<{type(source).__name__} waveform>"
        if source_sampling_rate is None:
            raise ValueError(
                "An in-memory waveform needs `source_sampling_rate=` (its sample rate, e.g. 44100); got None"
            )
        rate = _positive_rate(source_sampling_rate, "source_sampling_rate")
        data = _memory_waveform(source)
        channels = data.shape[0]
        if data.shape[1] == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        limit = max_samples_at(rate)
        more = limit is not None and data.shape[1] > limit
        if more:
            data = data[:, :limit]
    else:
        raise TypeError(
            f"load_audio expects a path, a file-like object, bytes or a numpy/torch waveform, got "
            f"{type(source).__name__}"
        )

    waveform = resample_audio(mix_to_mono(data)[0], rate, sampling_rate)
    truncated = False
    if max_seconds_f is not None:
        keep = int(round(max_seconds_f * sampling_rate))
        if waveform.shape[0] > keep:
            truncated = True
            waveform = waveform[:keep]
        truncated = truncated or (more and waveform.shape[0] >= keep)
        if truncated:
            logger.warning("%s: audio cut to its first %g s (max_seconds).", name, max_seconds_f)
    waveform = np.ascontiguousarray(waveform, dtype=np.float32)
    return AudioClip(
        waveform=waveform,
        sampling_rate=sampling_rate,
        duration=waveform.shape[0] / sampling_rate,
        source_sampling_rate=int(rate),
        source_channels=int(channels),
        truncated=truncated,
        source=name,
        partial=partial,
    )


def _positive_rate(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------------------------
# reading samples: (channels, samples) float32 (PyAV: already mixed to (1, samples)), the source rate and channel
# count, whether more samples followed
# the `max_samples_at(rate)` read, and whether the file ended early (allow_partial)
# --------------------------------------------------------------------------------------------------------------------


def _read_encoded(
    source: Any, name: str, max_samples_at: Callable[[int], int | None], allow_partial: bool
) -> tuple[np.ndarray, int, int, bool, bool]:
    """A file or buffer: soundfile for the formats it reads (fast, exact), PyAV for the rest and as the fallback."""
    if is_path(source) and Path(os.fspath(source)).suffix.lower() in _SOUNDFILE_EXTENSIONS:
        path = str(check_file(source))
        try:
            data, rate, channels = _read_soundfile(path, max_samples_at)
        except Exception as error:  # libsndfile cannot read it: let FFmpeg try
            logger.debug("soundfile could not read %s (%s); trying PyAV", name, error)
        else:
            if data.shape[1] == 0:
                raise MediaDecodeError(f"{name}: the audio file has no samples")
            limit = max_samples_at(rate)
            partial = False
            cut = wav_cut_short(path)
            if cut is not None:
                partial = True
                message = (f"{name}: the audio stops at {cut[1]:.3f} s but the header declares {cut[0]:.3f} s: the "
                           "file is truncated or damaged")
                if not allow_partial:
                    raise MediaDecodeError(f"{message}. Pass allow_partial=True to use the decoded part.")
                logger.warning("%s; keeping the decoded part (allow_partial=True).", message)
            return data, rate, channels, limit is not None and data.shape[1] >= limit, partial
    opener = ContainerOpener(source, name)  # `name`: the URL rather than its temporary copy
    return _read_av_audio(opener, max_samples_at, allow_partial)


def wav_cut_short(path: str | os.PathLike) -> tuple[float, float] | None:
    """``(declared, present)`` seconds of a WAV file whose ``data`` chunk holds fewer bytes than its header declares
    (by more than `sources.is_cut_short` allows), else ``None`` (also for other files and for streamed WAVs, whose
    writers leave the size 0 or 0xFFFFFFFF)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"fmt ":
                fmt = handle.read(size + size % 2)
                byte_rate = int.from_bytes(fmt[8:12], "little") if len(fmt) >= 12 else None
            elif kind == b"data":
                break
            else:
                handle.seek(size + size % 2, os.SEEK_CUR)
        present = os.fstat(handle.fileno()).st_size - handle.tell()
    if not byte_rate or size in (0, 0xFFFFFFFF) or present >= size:
        return None
    declared, available = Fraction(size, byte_rate), Fraction(present, byte_rate)
    return (float(declared), float(available)) if is_cut_short(declared, True, available) else None


def _read_soundfile(path: str, max_samples_at: Callable[[int], int | None]) -> tuple[np.ndarray, int, int]:
    import soundfile as sf

    with sf.SoundFile(path) as handle:
        rate, channels = handle.samplerate, handle.channels
        limit = max_samples_at(rate)
        data = handle.read(frames=-1 if limit is None else limit, dtype="float32", always_2d=True)
    return data.T, rate, channels  # (channels, samples)


def _read_av_audio(
    opener: ContainerOpener, max_samples_at: Callable[[int], int | None], allow_partial: bool
) -> tuple[np.ndarray, int, int, bool, bool]:
    av = import_av()
    name = opener.name
    container = opener.open()
    try:
        stream = first_stream(container, "audio", name)
        rate = stream.rate or stream.codec_context.sample_rate
        channels = stream.codec_context.channels or stream.layout.nb_channels
        limit = max_samples_at(rate) if rate else None
        declared, exact = declared_duration(container, stream)
        declared = None if declared is None else float(declared)
        expected = declared if limit is None or not rate else min(declared or math.inf, limit / rate)
        progress = DecodeProgress(name, expected if expected != math.inf else None, "audio")
        # the samples go into one array sized from the declared duration (+1 s), doubled if it runs out: the track
        # is never held twice (a list of frames and their concatenation)
        samples = np.empty(int(((expected if expected not in (None, math.inf) else 60.0) + 1) * (rate or 48000)),
                           dtype=np.float32)
        total, more, failure = 0, False, None
        channel_counts = set()
        try:
            for frame in container.decode(stream):
                if not rate:
                    rate = frame.sample_rate
                    limit = max_samples_at(rate)
                chunk = _audio_frame_to_channels(frame)
                channels = chunk.shape[0]
                channel_counts.add(channels)
                # mixed down frame by frame: a long multichannel track is never held at full width (a 10-minute
                # 48 kHz stereo track would be 230 MB, plus a float64 mean)
                if total + chunk.shape[1] > samples.shape[0]:
                    samples.resize(max(2 * samples.shape[0], total + chunk.shape[1]), refcheck=False)
                samples[total : total + chunk.shape[1]] = mix_to_mono(chunk)[0]
                total += chunk.shape[1]
                progress.advance_to(total / rate)
                if limit is not None and total >= limit:
                    more = True
                    break
        except av.FFmpegError as error:
            if not allow_partial or total == 0:
                where = ""
                if declared and rate:
                    where = f" ({total / rate:.3f} s of the {declared:.3f} s its header declares)"
                advice = ". Pass allow_partial=True to use the decoded part." if total else ""
                raise MediaDecodeError(
                    f"Decoding the audio of {name} failed after {total} samples{where}: {error}{advice}"
                ) from error
            failure = error
        finally:
            progress.close()
        partial = False
        if not more and total and is_cut_short(None if declared is None else Fraction(declared), exact,
                                               Fraction(total, rate)):
            partial = True
            message = (
                f"{name}: the audio stops at {total / rate:.3f} s but the header declares {declared:.3f} s: the file "
                "is truncated or damaged" + (f" ({failure})" if failure is not None else "")
            )
            if not allow_partial:
                raise MediaDecodeError(f"{message}. Pass allow_partial=True to use the decoded part.")
            logger.warning("%s; keeping the decoded part (allow_partial=True).", message)
        if total == 0:
            raise MediaDecodeError(f"{name}: the audio track has no decodable samples (empty or corrupt)")
        if len(channel_counts) != 1:
            raise MediaDecodeError(f"{name}: the channel count changes inside the audio track")
        samples.resize(total if limit is None else min(total, limit), refcheck=False)  # in place
        return samples[None], int(rate), int(channels), more, partial
    finally:
        container.close()


def mix_to_mono(data: np.ndarray) -> np.ndarray:
    """float32 ``(channels, samples)`` -> ``(1, samples)``: the mean of the channels, computed in float64 (the array
    itself when it has one channel). Sample by sample, so mixing a track piece by piece gives the same values."""
    return data.mean(axis=0, dtype=np.float64).astype(np.float32)[None] if data.shape[0] > 1 else data


def _audio_frame_to_channels(frame) -> np.ndarray:
    """PyAV AudioFrame -> float32 ``(channels, samples)``."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:  # packed: (1, samples * channels)
        array = array.reshape(-1, channels).T
    return _to_float(array)


def _memory_waveform(source: Any) -> np.ndarray:
    """Waveform array -> float32 ``(channels, samples)``."""
    if is_torch_tensor(source):
        source = source.detach().cpu().float().numpy() if source.is_floating_point() else source.detach().cpu().numpy()
    array = np.asarray(source)
    if array.ndim == 1:
        array = array[None]
    elif array.ndim == 2:
        # the short axis (<= 8) holds the channels: (channels, samples) or (samples, channels)
        if array.shape[0] > 8 and array.shape[1] <= 8:
            array = array.T
        elif array.shape[0] > 8:
            raise ValueError(
                f"A 2-D waveform must be (channels, samples) or (samples, channels) with at most 8 channels, got "
                f"{array.shape}"
            )
    else:
        raise ValueError(
            f"A waveform must be (samples,), (channels, samples) or (samples, channels), got {array.shape}"
        )
    return _to_float(array)


def _to_float(array: np.ndarray) -> np.ndarray:
    """PCM samples of any integer or float type as float32 in ``[-1, 1]``."""
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise TypeError(f"Unsupported audio sample type {array.dtype}")


# --------------------------------------------------------------------------------------------------------------------
# resampling
# --------------------------------------------------------------------------------------------------------------------


#: Output frames (groups of ``new / gcd`` samples) per conv1d call of `resample_audio` on signals longer than two of
#: them: bounds its working memory.
_RESAMPLE_BLOCK_FRAMES = 1 << 16


def resample_audio(
    waveform: np.ndarray, orig_sampling_rate: int, new_sampling_rate: int, *, lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> np.ndarray:
    """Band-limited (windowed-sinc, Hann window) polyphase resampling of a 1-D float waveform.

    The algorithm and defaults of ``torchaudio.functional.resample(..., resampling_method="sinc_interp_hann")``:
    cutoff ``rolloff * min(orig, new) / 2``, ``lowpass_filter_width`` zero crossings; output length
    ``ceil(len * new / orig)``. Computed as a strided ``conv1d`` in float32. Rate pairs whose reduced ratio would
    need a huge kernel fall back to FFmpeg's swresample (PyAV ``AudioResampler``).
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"resample_audio expects a 1-D waveform, got shape {waveform.shape}")
    orig, new = int(orig_sampling_rate), int(new_sampling_rate)
    if orig <= 0 or new <= 0:
        raise ValueError(f"Sample rates must be positive, got {orig} -> {new}")
    if orig == new or waveform.shape[0] == 0:
        return waveform.copy()
    gcd = math.gcd(orig, new)
    orig_r, new_r = orig // gcd, new // gcd
    base_freq = min(orig_r, new_r) * rolloff
    width = int(math.ceil(lowpass_filter_width * orig_r / base_freq))
    if new_r * (2 * width + orig_r) > _MAX_KERNEL_ELEMENTS:
        return _resample_swr(waveform, orig, new)

    import torch

    length = waveform.shape[0]
    idx = torch.arange(-width, width + orig_r, dtype=torch.float64)[None, :] / orig_r
    t = torch.arange(0, -new_r, -1, dtype=torch.float64)[:, None] / new_r + idx
    t = (t * base_freq).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    scale = base_freq / orig_r
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernels = (kernels * window * scale).to(torch.float32)[:, None, :]  # (new_r, 1, taps)
    # the strided conv1d over the signal zero-padded by (width, width + orig_r). A long signal is done in blocks
    # of `_RESAMPLE_BLOCK_FRAMES` output frames, each read from the part of the signal it covers and written
    # straight into the result: one conv1d over all of it needs a working buffer of several times the signal
    # (~150 MB more for 2 minutes at 48 kHz). Every block has the same large size (the last one padded with
    # zeros) because conv1d picks its algorithm, and so its float rounding, by size: at that size the blocks give
    # the values of one call bit for bit (tests/media/test_audio.py); shorter signals take one call, as before.
    taps = kernels.shape[-1]
    signal = torch.from_numpy(waveform)
    frames = (length + 2 * width + orig_r - taps) // orig_r + 1
    block = frames if frames <= 2 * _RESAMPLE_BLOCK_FRAMES else _RESAMPLE_BLOCK_FRAMES
    result = torch.empty(-(-frames // block) * block * new_r, dtype=torch.float32)
    for first in range(0, frames, block):
        start, stop = first * orig_r - width, (first + block - 1) * orig_r + taps - width  # in unpadded samples
        piece = signal[max(start, 0) : min(stop, length)][None, None, :]
        if start < 0 or stop > length:
            piece = torch.nn.functional.pad(piece, (max(-start, 0), max(stop - length, 0)))
        out = torch.nn.functional.conv1d(piece, kernels, stride=orig_r)  # (1, new_r, block)
        result[first * new_r : (first + block) * new_r] = out.transpose(1, 2).reshape(-1)
    target = int(math.ceil(new_r * length / orig_r))
    return result[:target].numpy()


def _resample_swr(waveform: np.ndarray, orig: int, new: int) -> np.ndarray:  # pragma: no cover - rare rate pairs
    av = import_av()
    frame = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
    frame.sample_rate = orig
    resampler = av.AudioResampler(format="flt", layout="mono", rate=new)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    out = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return out[: int(math.ceil(new * waveform.shape[0] / orig))].astype(np.float32)
