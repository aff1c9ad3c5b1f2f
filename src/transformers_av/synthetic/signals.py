"""Generated signals with a known ground truth: sine tones, "beeps at known times" sound tracks, and solid-colour
frames and images.

Audio arrays are float32 in ``[-1, 1]`` shaped ``(samples,)`` (mono) or ``(samples, channels)``; frames are uint8
``(num_frames, height, width, 3)`` RGB. Pillow is imported lazily (colour names, images); nothing here writes video
or audio files (see `writers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .validation import (
    PathLike,
    check_extension,
    check_frequency,
    check_int,
    check_positive,
    check_sampling_rate,
    check_seconds,
    check_size,
)

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "DEFAULT_PALETTE",
    "IMAGE_EXTENSIONS",
    "Beep",
    "ColorLike",
    "colors_per_frame",
    "make_beep_track",
    "make_frames",
    "make_image",
    "make_tone",
    "normalise_beeps",
    "to_rgb",
]

ColorLike = Union[str, Sequence[int]]
#: ``(start_s, duration_s, frequency)`` of one beep.
Beep = tuple[float, float, float]

#: Default colours, chosen to stay distinguishable after lossy compression.
DEFAULT_PALETTE: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan", "white", "black")

#: Extensions accepted by :func:`make_image`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------------------------------
# sounds
# --------------------------------------------------------------------------------------------------------------------


def _num_samples(seconds: float, sampling_rate: int) -> int:
    return int(round(seconds * sampling_rate))


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
    sampling_rate = check_sampling_rate(sampling_rate)
    frequency = check_frequency(frequency, sampling_rate)
    seconds = check_seconds(seconds)
    channels = check_int(channels, "channels", 1)
    amplitude = float(amplitude)
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"`amplitude` must be in [0, 1], got {amplitude!r}")
    t = np.arange(_num_samples(seconds, sampling_rate), dtype=np.float64) / sampling_rate
    wave = (amplitude * np.sin(2.0 * np.pi * frequency * t)).astype(np.float32)
    if channels == 1:
        return wave
    return np.repeat(wave[:, None], channels, axis=1)


def normalise_beeps(beeps: Any, seconds: float, sampling_rate: int) -> tuple[Beep, ...]:
    """``beeps`` checked (times, durations, frequencies below Nyquist, each beep within the track) as float tuples."""
    if beeps is None:
        return ()
    if isinstance(beeps, (str, bytes)) or not isinstance(beeps, Sequence):
        raise ValueError(f"`beeps` must be a sequence of (start_s, duration_s, frequency) tuples, got {beeps!r}")
    result = []
    for i, beep in enumerate(beeps):
        if not isinstance(beep, Sequence) or len(beep) != 3:
            raise ValueError(f"`beeps[{i}]` must be a (start_s, duration_s, frequency) tuple, got {beep!r}")
        start = check_seconds(beep[0], f"beeps[{i}] start_s")
        duration = check_positive(beep[1], f"beeps[{i}] duration_s")
        frequency = check_frequency(beep[2], sampling_rate, f"beeps[{i}] frequency")
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
    sampling_rate = check_sampling_rate(sampling_rate)
    seconds = check_seconds(seconds)
    channels = check_int(channels, "channels", 1)
    amplitude = float(amplitude)
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"`amplitude` must be in [0, 1], got {amplitude!r}")
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be >= 0, got {noise!r}")
    fade_seconds = check_seconds(fade_seconds, "fade_seconds")
    normalised = normalise_beeps(beeps, seconds, sampling_rate)

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


def colors_per_frame(num_frames: int, colors: Sequence[ColorLike] | None) -> list[tuple[int, int, int]]:
    """The background colour of each frame (the rule of :func:`make_frames`)."""
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
    num_frames = check_int(num_frames, "num_frames", 1)
    height = check_int(height, "height", 1)
    width = check_int(width, "width", 1)
    backgrounds = colors_per_frame(num_frames, colors)
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
    height, width = check_size(size)
    suffix = check_extension(path, IMAGE_EXTENSIONS) if path is not None else None
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
