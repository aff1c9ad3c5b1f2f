"""Write audio and video files with soundfile / PyAV, so that tests decode real files with a known content.

* :func:`write_wav` -- ``.wav`` / ``.flac`` (16-bit PCM) or ``.ogg`` (Vorbis);
* :func:`write_video` -- RGB frames and an optional sound track in mp4, m4v, mov, mkv, webm or avi (lossless on
  request), with the encoder picked from what the installed FFmpeg has.

PyAV and soundfile (the ``video`` extra) are imported lazily, only when a file is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .validation import (
    PathLike,
    as_audio,
    check_extension,
    check_frames,
    check_positive,
    check_sampling_rate,
)

__all__ = ["AUDIO_EXTENSIONS", "VIDEO_EXTENSIONS", "write_video", "write_wav"]

#: Extensions accepted by :func:`write_wav`.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")
#: Extensions accepted by :func:`write_video`.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def write_wav(path: PathLike, waveform: Any, sampling_rate: int, *, subtype: str | None = None) -> Path:
    """Write audio with soundfile: ``.wav`` / ``.flac`` as 16-bit PCM, ``.ogg`` as Vorbis (chosen by extension).

    Args:
        path: Output file; parent folders are created.
        waveform: ``(samples,)`` or ``(samples, channels)``; float in ``[-1, 1]`` or integer PCM.
        sampling_rate: Samples per second.
        subtype: soundfile subtype overriding the default (e.g. ``"FLOAT"`` for exact float wav).

    Returns:
        The written path.

    Example:
        >>> write_wav("/tmp/tone.wav", make_tone(440.0, 1.0), 16000)
        PosixPath('/tmp/tone.wav')
    """
    suffix = check_extension(path, AUDIO_EXTENSIONS)
    sampling_rate = check_sampling_rate(sampling_rate)
    audio = as_audio(waveform, "waveform")
    import soundfile as sf

    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[suffix]
    if subtype is None:
        subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio if audio.shape[1] > 1 else audio[:, 0], sampling_rate, format=fmt, subtype=subtype)
    return path


# --------------------------------------------------------------------------------------------------------------------
# video
# --------------------------------------------------------------------------------------------------------------------


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.Codec(name, "w")
    except Exception:
        return False
    return True


def _first_encoder(candidates: Sequence[str], what: str) -> str:
    for name in candidates:
        if _has_encoder(name):
            return name
    raise RuntimeError(f"the installed PyAV/FFmpeg has none of the {what} encoders {list(candidates)}")


def _default_codecs(suffix: str, lossless: bool) -> tuple[str, str]:
    """(video encoder, audio encoder) for a container extension."""
    if suffix == ".webm":
        video = _first_encoder(["libvpx-vp9"] if lossless else ["libvpx-vp9", "libvpx"], "VP9/VP8")
        audio = _first_encoder(["libopus", "opus", "libvorbis", "vorbis"], "Opus/Vorbis")
    elif suffix == ".avi":
        video = _first_encoder(["ffv1", "libx264rgb"] if lossless else ["mpeg4", "libx264"], "video")
        audio = _first_encoder(["pcm_s16le", "libmp3lame", "mp3"], "PCM/MP3")
    else:  # mp4, m4v, mov, mkv
        video = _first_encoder(["libx264rgb"] if lossless else ["libx264", "h264", "mpeg4"], "H.264")
        audio = _first_encoder(["aac", "libfdk_aac"], "AAC")
    return video, audio


def _rate_fraction(fps: Any) -> Fraction:
    if isinstance(fps, Fraction):
        value = fps
    else:
        number = check_positive(fps, "fps")
        value = Fraction(number).limit_denominator(1001)
    if value <= 0:
        raise ValueError(f"`fps` must be > 0, got {fps!r}")
    return value


def _video_pix_fmt(codec: str, lossless: bool) -> str:
    import av

    known = {"libx264rgb": "rgb24", "ffv1": "bgr0", "libvpx-vp9": "gbrp" if lossless else "yuv420p"}
    if codec in known:
        return known[codec]
    formats = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    if not formats or "yuv420p" in formats:
        return "yuv420p"
    for candidate in ("rgb24", "yuv444p", "bgr0", "gbrp"):
        if candidate in formats:
            return candidate
    return formats[0]


def _configure_video(stream: Any, codec: str, lossless: bool, width: int, height: int, pix_fmt: str) -> None:
    stream.width = width
    stream.height = height
    stream.pix_fmt = pix_fmt
    options: dict[str, str] = {}
    if codec in ("libx264rgb", "libx264", "h264"):
        options = {"crf": "0" if lossless else "18", "preset": "veryfast"}
    elif codec == "libvpx-vp9":
        options = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        options.update({"lossless": "1"} if lossless else {"crf": "20", "b": "0"})
    elif codec == "libvpx":
        stream.bit_rate = 4_000_000
        options = {"deadline": "realtime", "cpu-used": "8", "crf": "8"}
    elif codec == "mpeg4":
        stream.bit_rate = 4_000_000
        options = {"qmax": "4"}
    if options:
        stream.options = options


def _audio_frame(chunk: np.ndarray, fmt: Any, layout: str, rate: int, pts: int) -> Any:
    """An ``av.AudioFrame`` in the encoder's sample format from a float32 ``(samples, channels)`` chunk."""
    import av

    packed = fmt.packed.name  # e.g. "flt", "s16"
    if packed == "flt":
        data = chunk.astype(np.float32)
    elif packed == "dbl":
        data = chunk.astype(np.float64)
    elif packed == "s16":
        data = np.round(chunk.astype(np.float64) * 32767.0).astype(np.int16)
    elif packed == "s32":
        data = np.round(chunk.astype(np.float64) * 2147483647.0).astype(np.int32)
    elif packed == "u8":
        data = np.round(chunk.astype(np.float64) * 127.0 + 128.0).astype(np.uint8)
    else:  # pragma: no cover - every FFmpeg sample format is one of the above
        raise RuntimeError(f"unsupported encoder sample format {fmt.name!r}")
    data = np.ascontiguousarray(data.T) if fmt.is_planar else np.ascontiguousarray(data.reshape(1, -1))
    frame = av.AudioFrame.from_ndarray(data, format=fmt.name, layout=layout)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def _resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample float32 ``(samples, channels)`` audio with FFmpeg's swresample."""
    if source_rate == target_rate:
        return audio
    import av

    layout = "mono" if audio.shape[1] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.reshape(1, -1)), format="flt", layout=layout)
    frame.sample_rate = source_rate
    frame.pts = 0
    frame.time_base = Fraction(1, source_rate)
    resampler = av.AudioResampler(format="flt", layout=layout, rate=target_rate)
    out = [f.to_ndarray().reshape(-1, audio.shape[1]) for f in resampler.resample(frame) + resampler.resample(None)]
    return np.concatenate(out, axis=0).astype(np.float32) if out else np.zeros((0, audio.shape[1]), np.float32)


def _pick_rate(codec_name: str, rate: int) -> int:
    import av

    rates = av.Codec(codec_name, "w").audio_rates
    if not rates or rate in rates:
        return rate
    higher = sorted(r for r in rates if r >= rate)
    return higher[0] if higher else max(rates)


def write_video(
    path: PathLike,
    frames: np.ndarray,
    fps: float,
    *,
    audio: np.ndarray | None = None,
    audio_sampling_rate: int = 16000,
    lossless: bool = False,
    video_codec: str | None = None,
    audio_codec: str | None = None,
) -> Path:
    """Write RGB frames (and optionally a sound track) with PyAV; the container is chosen by extension.

    ==========================  =====================================  ==========================================
    extension                   video                                   audio
    ==========================  =====================================  ==========================================
    ``.mp4 .m4v .mov .mkv``     H.264 (``libx264``, yuv420p, crf 18)    AAC
    ``.webm``                   VP9 (``libvpx-vp9``; VP8 fallback)      Opus (``libopus``; Vorbis fallback)
    ``.avi``                    MPEG-4 part 2 (``mpeg4``)               16-bit PCM (``pcm_s16le``)
    ==========================  =====================================  ==========================================

    ``lossless=True`` uses ``libx264rgb`` crf 0 (mp4/mov/mkv), VP9 lossless in ``gbrp`` (webm) or FFV1 (avi), so the
    frames decode back to exactly the same RGB values. Lossy H.264/VP9/MPEG-4 (yuv420p) needs even width and height.

    Audio is encoded in frames of the encoder's ``frame_size`` (the last one short where the codec allows it,
    zero-padded otherwise), with sample timestamps, and the encoders are flushed, so the track lasts as long as
    ``audio`` (within one codec frame: 1024 samples for AAC). Mono or stereo at any rate; a rate the codec does not
    support (e.g. 44.1 kHz for Opus) is resampled with FFmpeg to the nearest supported higher rate.

    Args:
        path: Output file; parent folders are created.
        frames: uint8 ``(num_frames, height, width, 3)`` RGB.
        fps: Frames per second (float, int or ``fractions.Fraction``; e.g. ``30000/1001``).
        audio: Optional ``(samples,)`` / ``(samples, channels)`` waveform, float in ``[-1, 1]`` or integer PCM.
        audio_sampling_rate: Sample rate of ``audio``.
        lossless: Encode the frames losslessly (see above).
        video_codec: Override the video encoder (any PyAV encoder name the container accepts).
        audio_codec: Override the audio encoder (e.g. ``"libopus"`` in ``.mkv``, ``"libmp3lame"`` in ``.avi``).

    Returns:
        The written path.

    Example:
        >>> frames = make_frames(16, 96, 128)
        >>> write_video("/tmp/clip.mp4", frames, fps=8, audio=make_tone(440.0, 2.0), audio_sampling_rate=16000)
        PosixPath('/tmp/clip.mp4')
    """
    suffix = check_extension(path, VIDEO_EXTENSIONS)
    frames = check_frames(frames)
    rate = _rate_fraction(fps)
    waveform = None
    if audio is not None:
        audio_sampling_rate = check_sampling_rate(audio_sampling_rate, "audio_sampling_rate")
        waveform = as_audio(audio, "audio")
        if waveform.shape[1] > 2:
            raise ValueError(f"`audio` must be mono or stereo, got {waveform.shape[1]} channels")

    default_video, default_audio = _default_codecs(suffix, lossless)
    video_name = video_codec or default_video
    audio_name = audio_codec or default_audio
    height, width = frames.shape[1:3]

    if video_codec is not None and not _has_encoder(video_codec):
        raise ValueError(f"`video_codec` {video_codec!r} is not an encoder of the installed PyAV/FFmpeg")
    if audio_codec is not None and not _has_encoder(audio_codec):
        raise ValueError(f"`audio_codec` {audio_codec!r} is not an encoder of the installed PyAV/FFmpeg")
    pix_fmt = _video_pix_fmt(video_name, lossless)
    if pix_fmt.startswith(("yuv420", "yuv422", "yuv411", "yuv410", "nv")) and (width % 2 or height % 2):
        raise ValueError(
            f"`frames` must have even height and width for {video_name} ({pix_fmt}), got "
            f"{height}x{width}; crop/pad them or pass lossless=True"
        )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _encode(path, frames, rate, waveform, audio_sampling_rate, video_name, pix_fmt, lossless, audio_name)
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written files
        raise
    return path


def _encode(
    path: Path,
    frames: np.ndarray,
    rate: Fraction,
    waveform: np.ndarray | None,
    audio_sampling_rate: int,
    video_name: str,
    pix_fmt: str,
    lossless: bool,
    audio_name: str,
) -> None:
    """Encode and mux ``frames`` (and ``waveform``) into ``path``, interleaving the two streams by time."""
    import av

    num_frames, height, width = frames.shape[:3]
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(video_name, rate=rate)
        _configure_video(vstream, video_name, lossless, width, height, pix_fmt)
        vstream.codec_context.time_base = 1 / rate

        astream = None
        if waveform is not None:
            target_rate = _pick_rate(audio_name, audio_sampling_rate)
            waveform = _resample(waveform, audio_sampling_rate, target_rate)
            if audio_name == "vorbis" and waveform.shape[1] == 1:  # FFmpeg's native Vorbis encoder is stereo-only
                waveform = np.repeat(waveform, 2, axis=1)
            layout = "mono" if waveform.shape[1] == 1 else "stereo"
            astream = container.add_stream(audio_name, rate=target_rate)
            astream.layout = layout
            astream.codec_context.time_base = Fraction(1, target_rate)
            if av.Codec(audio_name, "w").experimental:
                astream.options = {"strict": "experimental"}
            if audio_name in ("aac", "libopus", "opus", "vorbis", "libvorbis", "libmp3lame", "mp3"):
                astream.bit_rate = 128_000 if layout == "mono" else 192_000

        container.start_encoding()  # opens the encoders, so the audio frame size is known

        events: list[tuple[float, int, Any]] = []  # (time, kind, payload) to interleave the streams by time
        for i in range(num_frames):
            events.append((i / rate, 0, i))
        if astream is not None and waveform is not None:
            ctx = astream.codec_context
            codec_caps = int(ctx.codec.capabilities)
            variable = bool(codec_caps & int(av.codec.Capabilities.variable_frame_size))
            small_last = bool(codec_caps & int(av.codec.Capabilities.small_last_frame))
            frame_size = int(ctx.frame_size) if ctx.frame_size and not variable else 1024
            strict_size = bool(ctx.frame_size) and not variable
            total = waveform.shape[0]
            for start in range(0, total, frame_size):
                chunk = waveform[start : start + frame_size]
                if strict_size and chunk.shape[0] < frame_size and not small_last:
                    chunk = np.concatenate([chunk, np.zeros((frame_size - chunk.shape[0], chunk.shape[1]), np.float32)])
                events.append((start / ctx.sample_rate, 1, (start, chunk)))
        events.sort(key=lambda e: (e[0], e[1]))

        for _, kind, payload in events:
            if kind == 0:
                frame = av.VideoFrame.from_ndarray(frames[payload], format="rgb24")
                frame.pts = payload
                frame.time_base = 1 / rate
                container.mux(vstream.encode(frame))
            else:
                start, chunk = payload
                ctx = astream.codec_context  # type: ignore[union-attr]
                frame = _audio_frame(chunk, ctx.format, ctx.layout.name, ctx.sample_rate, start)
                container.mux(astream.encode(frame))  # type: ignore[union-attr]
        container.mux(vstream.encode(None))
        if astream is not None:
            container.mux(astream.encode(None))
