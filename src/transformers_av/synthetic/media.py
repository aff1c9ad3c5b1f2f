"""Deterministic synthetic audio, images and videos for tests, benchmarks and demos.

Nothing in this project downloads media; everything is generated here, with a known ground truth:

* :func:`make_tone` / :func:`make_beep_track` -- sine tones and "beeps at known times" sound tracks;
* :func:`make_frames` / :func:`make_image` -- solid-colour frames (one known colour per frame) with a moving square;
* :func:`write_wav` / :func:`write_video` -- write them with soundfile / PyAV (mp4, mkv, mov, webm, avi);
* :func:`make_av_clip` -- one call that writes a clip with pictures and sound and returns a :class:`SyntheticClip`
  describing exactly what is in it ("which colour was on screen when the beep sounded").

Example:

    >>> from transformers_av.synthetic.media import make_av_clip
    >>> clip = make_av_clip("/tmp/clip.mp4", seconds=3.0, fps=8, beep_at=1.5, colors=["red", "green", "blue"])
    >>> clip.colors_per_frame[clip.frame_index_at(1.5)]
    (0, 128, 0)
    >>> clip.beeps
    ((1.5, 0.25, 1000.0),)

Audio arrays are float32 in ``[-1, 1]`` shaped ``(samples,)`` (mono) or ``(samples, channels)``; frames are uint8
``(num_frames, height, width, 3)`` RGB. PyAV, soundfile and Pillow (the ``video`` extra) are imported lazily, only by
the functions that write or draw files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_PALETTE",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "SyntheticClip",
    "make_av_clip",
    "make_beep_track",
    "make_frames",
    "make_image",
    "make_tone",
    "to_rgb",
    "write_video",
    "write_wav",
]

ColorLike = Union[str, Sequence[int]]
PathLike = Union[str, "os.PathLike[str]"]
Beep = tuple[float, float, float]

#: Default colours, chosen to stay distinguishable after lossy compression.
DEFAULT_PALETTE: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan", "white", "black")

#: Extensions accepted by :func:`write_wav`.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")
#: Extensions accepted by :func:`write_video`.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
#: Extensions accepted by :func:`make_image`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

DEFAULT_BEEP_SECONDS = 0.25
DEFAULT_BEEP_FREQUENCY = 1000.0


# --------------------------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------------------------


def _check_seconds(seconds: float, name: str = "seconds") -> float:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number, got {seconds!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {seconds!r}")
    return value


def _check_positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return number


def _check_sampling_rate(sampling_rate: Any, name: str = "sampling_rate") -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"`{name}` must be a positive integer (samples per second), got {sampling_rate!r}")
    return int(sampling_rate)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_frequency(frequency: Any, sampling_rate: int, name: str = "frequency") -> float:
    value = _check_positive(frequency, name)
    if value >= sampling_rate / 2:
        raise ValueError(
            f"`{name}` must be below the Nyquist frequency ({sampling_rate / 2:g} Hz at {sampling_rate} Hz), "
            f"got {frequency!r}"
        )
    return value


def _num_samples(seconds: float, sampling_rate: int) -> int:
    return int(round(seconds * sampling_rate))


def _as_audio(waveform: Any, name: str) -> np.ndarray:
    """``waveform`` as float32 ``(samples, channels)``; integer PCM is scaled to [-1, 1]."""
    array = np.asarray(waveform)
    if array.dtype.kind == "i":
        array = array.astype(np.float64) / float(-np.iinfo(array.dtype).min)
    elif array.dtype.kind == "u":
        half = (float(np.iinfo(array.dtype).max) + 1.0) / 2.0
        array = (array.astype(np.float64) - half) / half
    elif array.dtype.kind != "f":
        raise ValueError(f"`{name}` must be a float or integer array, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"`{name}` must have shape (samples,) or (samples, channels), got {tuple(np.shape(waveform))}")
    if array.shape[1] > 2 and array.shape[0] <= 2:
        raise ValueError(
            f"`{name}` must have shape (samples,) or (samples, channels), got {array.shape}; "
            "it looks channels-first, pass `waveform.T`"
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return np.clip(array, -1.0, 1.0).astype(np.float32)


def _check_frames(frames: Any, name: str = "frames") -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"`{name}` must be a uint8 array, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`{name}` must have shape (num_frames, height, width, 3), got {frames.shape}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"`{name}` must hold at least one frame of at least 1x1 pixels, got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def _suffix(path: PathLike, allowed: Sequence[str], name: str = "path") -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"`{name}` has unsupported extension {suffix or '(none)'!r} (supported: {', '.join(allowed)})")
    return suffix


# --------------------------------------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------------------------------------


def make_tone(
    frequency: float,
    seconds: float,
    sampling_rate: int = 16000,
    amplitude: float = 0.3,
    channels: int = 1,
) -> np.ndarray:
    """A sine tone.

    Args:
        frequency: Tone frequency in Hz, ``0 < frequency < sampling_rate / 2``.
        seconds: Duration (``round(seconds * sampling_rate)`` samples).
        sampling_rate: Samples per second.
        amplitude: Peak amplitude in ``[0, 1]``.
        channels: ``1`` returns shape ``(samples,)``; more returns ``(samples, channels)`` (same tone on all).

    Returns:
        float32 waveform.

    Example:
        >>> tone = make_tone(440.0, 0.5, sampling_rate=16000)
        >>> tone.shape, tone.dtype
        ((8000,), dtype('float32'))
    """
    sampling_rate = _check_sampling_rate(sampling_rate)
    frequency = _check_frequency(frequency, sampling_rate)
    seconds = _check_seconds(seconds)
    channels = _check_int(channels, "channels", 1)
    amplitude = float(amplitude)
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"`amplitude` must be in [0, 1], got {amplitude!r}")
    t = np.arange(_num_samples(seconds, sampling_rate), dtype=np.float64) / sampling_rate
    wave = (amplitude * np.sin(2.0 * np.pi * frequency * t)).astype(np.float32)
    if channels == 1:
        return wave
    return np.repeat(wave[:, None], channels, axis=1)


def _normalise_beeps(beeps: Any, seconds: float, sampling_rate: int) -> tuple[Beep, ...]:
    if beeps is None:
        return ()
    if isinstance(beeps, (str, bytes)) or not isinstance(beeps, Sequence):
        raise ValueError(f"`beeps` must be a sequence of (start_s, duration_s, frequency) tuples, got {beeps!r}")
    result = []
    for i, beep in enumerate(beeps):
        if not isinstance(beep, Sequence) or len(beep) != 3:
            raise ValueError(f"`beeps[{i}]` must be a (start_s, duration_s, frequency) tuple, got {beep!r}")
        start = _check_seconds(beep[0], f"beeps[{i}] start_s")
        duration = _check_positive(beep[1], f"beeps[{i}] duration_s")
        frequency = _check_frequency(beep[2], sampling_rate, f"beeps[{i}] frequency")
        if start + duration > seconds + 1e-9:
            raise ValueError(
                f"`beeps[{i}]` = {tuple(beep)!r} ends at {start + duration:g} s, "
                f"after the end of the track ({seconds:g} s)"
            )
        result.append((start, duration, frequency))
    return tuple(result)


def make_beep_track(
    beeps: Sequence[tuple[float, float, float]],
    seconds: float,
    sampling_rate: int = 16000,
    *,
    amplitude: float = 0.3,
    channels: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    fade_seconds: float = 0.005,
) -> np.ndarray:
    """Silence (or low white noise) with sine beeps at known times.

    Args:
        beeps: ``(start_s, duration_s, frequency)`` per beep; each must end within the track.
        seconds: Track duration.
        sampling_rate: Samples per second.
        amplitude: Peak amplitude of each beep, in ``[0, 1]``.
        channels: ``1`` returns ``(samples,)``, more returns ``(samples, channels)``.
        noise: Standard deviation of the Gaussian background noise (``0`` is digital silence).
        seed: Seed of the noise generator (same seed, same track).
        fade_seconds: Linear fade in/out of each beep, to avoid clicks.

    Example:
        >>> track = make_beep_track([(0.5, 0.25, 1000.0), (1.5, 0.25, 2000.0)], seconds=2.0)
        >>> track.shape
        (32000,)
        >>> float(abs(track[:8000]).max())  # silent before the first beep
        0.0
    """
    sampling_rate = _check_sampling_rate(sampling_rate)
    seconds = _check_seconds(seconds)
    channels = _check_int(channels, "channels", 1)
    amplitude = float(amplitude)
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"`amplitude` must be in [0, 1], got {amplitude!r}")
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be >= 0, got {noise!r}")
    fade_seconds = _check_seconds(fade_seconds, "fade_seconds")
    normalised = _normalise_beeps(beeps, seconds, sampling_rate)

    total = _num_samples(seconds, sampling_rate)
    track = np.zeros(total, dtype=np.float64)
    if noise > 0:
        track += np.random.default_rng(seed).normal(0.0, noise, size=total)
    for start, duration, frequency in normalised:
        first = _num_samples(start, sampling_rate)
        last = min(_num_samples(start + duration, sampling_rate), total)
        n = last - first
        if n <= 0:
            continue
        t = np.arange(n, dtype=np.float64) / sampling_rate
        tone = amplitude * np.sin(2.0 * np.pi * frequency * t)
        fade = min(_num_samples(fade_seconds, sampling_rate), n // 2)
        if fade > 0:
            ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
            tone[:fade] *= ramp
            tone[n - fade :] *= ramp[::-1]
        track[first:last] += tone
    track = np.clip(track, -1.0, 1.0).astype(np.float32)
    if channels == 1:
        return track
    return np.repeat(track[:, None], channels, axis=1)


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
    suffix = _suffix(path, AUDIO_EXTENSIONS)
    sampling_rate = _check_sampling_rate(sampling_rate)
    audio = _as_audio(waveform, "waveform")
    import soundfile as sf

    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[suffix]
    if subtype is None:
        subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio if audio.shape[1] > 1 else audio[:, 0], sampling_rate, format=fmt, subtype=subtype)
    return path


# --------------------------------------------------------------------------------------------------------------------
# pictures
# --------------------------------------------------------------------------------------------------------------------


def to_rgb(color: ColorLike) -> tuple[int, int, int]:
    """An RGB tuple from a colour name (``"red"``), hex string (``"#ff8000"``) or ``(r, g, b)`` sequence.

    Names follow CSS / Pillow (``"green"`` is ``(0, 128, 0)``, ``"lime"`` is ``(0, 255, 0)``).

    Example:
        >>> to_rgb("red"), to_rgb("#0000ff"), to_rgb((1, 2, 3))
        ((255, 0, 0), (0, 0, 255), (1, 2, 3))
    """
    if isinstance(color, str):
        from PIL import ImageColor

        try:
            rgb = ImageColor.getrgb(color)
        except ValueError:
            raise ValueError(f"`color` {color!r} is not a known colour name or hex string") from None
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    try:
        values = tuple(int(v) for v in color)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"`color` must be a name, a hex string or an (r, g, b) tuple, got {color!r}") from None
    if len(values) != 3 or any(not 0 <= v <= 255 for v in values):
        raise ValueError(f"`color` must be an (r, g, b) tuple of integers in [0, 255], got {color!r}")
    return values  # type: ignore[return-value]


def _colors_per_frame(num_frames: int, colors: Sequence[ColorLike] | None) -> list[tuple[int, int, int]]:
    if colors is None:
        palette = [to_rgb(c) for c in DEFAULT_PALETTE]
        return [palette[i % len(palette)] for i in range(num_frames)]
    if isinstance(colors, str) or not isinstance(colors, Sequence) or len(colors) == 0:
        raise ValueError(f"`colors` must be a non-empty list of colour names or (r, g, b) tuples, got {colors!r}")
    if len(colors) > num_frames:
        raise ValueError(f"`colors` has {len(colors)} entries but there are only {num_frames} frames")
    rgb = [to_rgb(c) for c in colors]
    return [rgb[i * len(rgb) // num_frames] for i in range(num_frames)]


def _square_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def make_frames(
    num_frames: int,
    height: int = 96,
    width: int = 128,
    *,
    colors: Sequence[ColorLike] | None = None,
    moving_square: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Deterministic RGB frames: a solid background colour per frame plus an optional moving square.

    Background colours: with ``colors=None`` frame ``i`` is ``DEFAULT_PALETTE[i % 8]`` (every frame differs from its
    neighbours). With ``colors`` given, the frames are split into ``len(colors)`` contiguous, (near) equal runs:
    frame ``i`` gets ``colors[i * len(colors) // num_frames]`` -- so passing one colour per frame colours each frame,
    and passing 3 colours for a 3 s clip changes colour every second.

    The square (side ``min(height, width) // 4``, white on dark / black on light backgrounds) bounces across the
    frame; ``seed`` picks its start position and direction.

    Returns:
        uint8 array ``(num_frames, height, width, 3)``.

    Example:
        >>> frames = make_frames(4, 32, 48, colors=["red", "blue"], moving_square=False)
        >>> frames.shape, frames[0, 0, 0].tolist(), frames[3, 0, 0].tolist()
        ((4, 32, 48, 3), [255, 0, 0], [0, 0, 255])
    """
    num_frames = _check_int(num_frames, "num_frames", 1)
    height = _check_int(height, "height", 1)
    width = _check_int(width, "width", 1)
    backgrounds = _colors_per_frame(num_frames, colors)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[:] = np.asarray(backgrounds, dtype=np.uint8)[:, None, None, :]
    if moving_square:
        side = max(1, min(height, width) // 4)
        rng = np.random.default_rng(seed)
        span_x, span_y = max(width - side, 0), max(height - side, 0)
        x0, y0 = int(rng.integers(0, span_x + 1)), int(rng.integers(0, span_y + 1))
        vx = int(rng.choice([-1, 1])) * max(1, width // 16)
        vy = int(rng.choice([-1, 1])) * max(1, height // 24)
        for i, background in enumerate(backgrounds):
            x, y = _bounce(x0 + i * vx, span_x), _bounce(y0 + i * vy, span_y)
            frames[i, y : y + side, x : x + side] = _square_color(background)
    return frames


def _bounce(position: int, span: int) -> int:
    """Reflect ``position`` into ``[0, span]`` (a ball bouncing between two walls)."""
    if span <= 0:
        return 0
    position %= 2 * span
    return position if position <= span else 2 * span - position


def make_image(
    path: PathLike | None = None,
    color: ColorLike = "red",
    size: tuple[int, int] = (96, 128),
    *,
    square_color: ColorLike | None = None,
) -> Image.Image:
    """A solid-colour RGB Pillow image, optionally with a square in its top-left quarter, saved when ``path`` is given.

    Args:
        path: Where to save it (format by extension: png, jpg, bmp, gif, webp, tiff); ``None`` only returns it.
        color: Background colour (name, hex or ``(r, g, b)``).
        size: ``(height, width)`` -- the same order as the frames' arrays (Pillow's ``image.size`` is ``(w, h)``).
        square_color: Colour of a ``min(h, w) // 4`` square at ``(h // 8, w // 8)``; ``None`` draws none.

    Example:
        >>> image = make_image(color="blue", size=(32, 48))
        >>> image.size, image.getpixel((0, 0))
        ((48, 32), (0, 0, 255))
    """
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"`size` must be (height, width), got {size!r}")
    height, width = _check_int(size[0], "size[0] (height)", 1), _check_int(size[1], "size[1] (width)", 1)
    suffix = _suffix(path, IMAGE_EXTENSIONS) if path is not None else None
    from PIL import Image as PILImage

    array = np.empty((height, width, 3), dtype=np.uint8)
    array[:] = to_rgb(color)
    if square_color is not None:
        side = max(1, min(height, width) // 4)
        array[height // 8 : height // 8 + side, width // 8 : width // 8 + side] = to_rgb(square_color)
    image = PILImage.fromarray(array, mode="RGB") if _pil_needs_mode() else PILImage.fromarray(array)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **({"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}))
    return image


def _pil_needs_mode() -> bool:
    import PIL

    try:
        return int(PIL.__version__.split(".")[0]) < 11
    except ValueError:  # pragma: no cover
        return False


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
        number = _check_positive(fps, "fps")
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
    suffix = _suffix(path, VIDEO_EXTENSIONS)
    frames = _check_frames(frames)
    rate = _rate_fraction(fps)
    waveform = None
    if audio is not None:
        audio_sampling_rate = _check_sampling_rate(audio_sampling_rate, "audio_sampling_rate")
        waveform = _as_audio(audio, "audio")
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


# --------------------------------------------------------------------------------------------------------------------
# clips with ground truth
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticClip:
    """What :func:`make_av_clip` wrote: the exact inputs, i.e. the ground truth for tests.

    Attributes:
        path: The video file.
        frames: uint8 ``(num_frames, height, width, 3)`` RGB frames as given to the encoder (a lossy file decodes to
            approximately these; a lossless one exactly).
        audio: float32 sound track as given to the encoder, ``(samples,)`` or ``(samples, channels)``.
        fps: Frames per second; frame ``i`` is on screen during ``[i / fps, (i + 1) / fps)``.
        sampling_rate: Sample rate of ``audio``.
        beeps: ``(start_s, duration_s, frequency)`` per beep.
        colors_per_frame: Background RGB colour of each frame.
    """

    path: Path
    frames: np.ndarray = field(repr=False)
    audio: np.ndarray = field(repr=False)
    fps: float
    sampling_rate: int
    beeps: tuple[tuple[float, float, float], ...]
    colors_per_frame: tuple[tuple[int, int, int], ...] = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Length of the video in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps

    def frame_index_at(self, seconds: float) -> int:
        """Index of the frame on screen at time ``seconds``."""
        seconds = _check_seconds(seconds)
        return min(int(math.floor(seconds * self.fps + 1e-9)), self.num_frames - 1)

    def color_at(self, seconds: float) -> tuple[int, int, int]:
        """Background colour on screen at time ``seconds``."""
        return self.colors_per_frame[self.frame_index_at(seconds)]

    def beep_frame_indices(self) -> list[list[int]]:
        """For each beep, the indices of the frames on screen while it sounds."""
        result = []
        for start, duration, _ in self.beeps:
            first = self.frame_index_at(start)
            last = self.frame_index_at(max(start, start + duration - 1e-6))
            result.append(list(range(first, last + 1)))
        return result


def _beeps_from_beep_at(beep_at: Any, seconds: float) -> list[Beep]:
    if beep_at is None:
        if seconds <= 0:
            return []
        duration = min(DEFAULT_BEEP_SECONDS, seconds / 2)
        return [(seconds / 2, duration, DEFAULT_BEEP_FREQUENCY)]
    items = [beep_at] if isinstance(beep_at, (int, float, np.number)) else beep_at
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(
            f"`beep_at` must be a time, a list of times or of (start_s, duration_s, frequency), got {beep_at!r}"
        )
    beeps: list[Beep] = []
    for i, item in enumerate(items):
        if isinstance(item, Sequence) and not isinstance(item, str):
            if len(item) != 3:
                raise ValueError(
                    f"`beep_at[{i}]` must be a time or a (start_s, duration_s, frequency) tuple, got {item!r}"
                )
            beeps.append((float(item[0]), float(item[1]), float(item[2])))
        else:
            start = _check_seconds(item, f"beep_at[{i}]")
            if start >= seconds:
                raise ValueError(f"`beep_at[{i}]` = {item!r} is not before the end of the clip ({seconds:g} s)")
            beeps.append((start, min(DEFAULT_BEEP_SECONDS, seconds - start), DEFAULT_BEEP_FREQUENCY))
    return beeps


def make_av_clip(
    path: PathLike,
    seconds: float = 3.0,
    fps: float = 8,
    *,
    beep_at: float | Sequence[float] | Sequence[tuple[float, float, float]] | None = None,
    colors: Sequence[ColorLike] | None = None,
    sampling_rate: int = 16000,
    size: tuple[int, int] = (96, 128),
    lossless: bool = False,
    seed: int = 0,
    channels: int = 1,
    noise: float = 0.0,
) -> SyntheticClip:
    """Write a video with coloured frames and a beeping sound track; return exactly what is in it.

    Args:
        path: Output file; container by extension (see :func:`write_video`).
        seconds: Clip length; the video has ``round(seconds * fps)`` frames, the audio ``round(seconds * rate)``
            samples.
        fps: Frames per second.
        beep_at: ``None`` gives one 0.25 s 1 kHz beep in the middle of the clip; a time or list of times gives 0.25 s
            1 kHz beeps starting there; ``(start_s, duration_s, frequency)`` tuples give full control; ``[]`` gives
            a silent track.
        colors: Background colours, spread over the clip in equal runs (see :func:`make_frames`). ``None`` gives one
            colour per second from :data:`DEFAULT_PALETTE` (red for 0-1 s, green for 1-2 s, ...).
        sampling_rate: Audio sample rate.
        size: ``(height, width)`` of the frames.
        lossless: Encode the frames losslessly.
        seed: Seed of the moving square (and of the background noise).
        channels: Audio channels (1 or 2).
        noise: Standard deviation of background noise in the sound track.

    Example:
        >>> clip = make_av_clip("/tmp/clip.mp4", seconds=3.0, fps=8, beep_at=[0.5, 2.0], colors=["red", "lime", "blue"])
        >>> [clip.colors_per_frame[i[0]] for i in clip.beep_frame_indices()]
        [(255, 0, 0), (0, 0, 255)]
    """
    _suffix(path, VIDEO_EXTENSIONS)
    seconds = _check_seconds(seconds)
    fps_value = _check_positive(fps, "fps")
    sampling_rate = _check_sampling_rate(sampling_rate)
    channels = _check_int(channels, "channels", 1)
    if channels > 2:
        raise ValueError(f"`channels` must be 1 or 2, got {channels}")
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"`size` must be (height, width), got {size!r}")
    height, width = _check_int(size[0], "size[0] (height)", 1), _check_int(size[1], "size[1] (width)", 1)
    num_frames = int(round(seconds * fps_value))
    if num_frames < 1:
        raise ValueError(f"`seconds` * `fps` must give at least one frame, got seconds={seconds!r}, fps={fps!r}")
    if colors is None:
        n_colors = min(max(1, int(round(seconds))), num_frames)
        colors = [DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)] for i in range(n_colors)]

    beeps = _normalise_beeps(_beeps_from_beep_at(beep_at, seconds), seconds, sampling_rate)
    audio = make_beep_track(beeps, seconds, sampling_rate, channels=channels, noise=noise, seed=seed)
    frames = make_frames(num_frames, height, width, colors=colors, moving_square=True, seed=seed)
    colors_per_frame = tuple(_colors_per_frame(num_frames, colors))
    written = write_video(
        path,
        frames,
        fps_value,
        audio=audio if audio.shape[0] else None,
        audio_sampling_rate=sampling_rate,
        lossless=lossless,
    )
    return SyntheticClip(
        path=written,
        frames=frames,
        audio=audio,
        fps=fps_value,
        sampling_rate=sampling_rate,
        beeps=beeps,
        colors_per_frame=colors_per_frame,
    )
