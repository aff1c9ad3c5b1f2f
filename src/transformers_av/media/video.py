"""Decode real media (video files, sound tracks, audio files, images) for [`FavorProcessor`].

Public API:

* :func:`load_video` -> :class:`VideoClip` -- sampled RGB frames with their timestamps, the source fps and duration.
  Decoding **streams**: frames are decoded one after another and only the sampled ones are kept (converted to RGB,
  optionally downscaled right away with ``size=``), so a long video never sits in memory at full resolution.
  Three samplers:

  - ``sampling="fps"`` (default): one frame every ``1 / fps`` seconds, at ``t = 0, 1/fps, 2/fps, ... < duration``;
    for each target time the frame on screen is taken (the last decoded frame whose presentation time is ``<= t``;
    a target before the first frame takes the first frame). Deterministic, no seeking.
  - ``sampling="clip_ends"``: the official video-SALMONN / FAVOR sampler (``ImageBind/data.py:
    load_and_transform_video_data_blip``): pytorchvideo ``UniformClipSampler(clip_duration=1, backpad_last=True)``
    cuts the video into 1 s clips ``[k, k + 1)`` (a last partial clip is moved back to ``[D - 1, D)``, so it may
    overlap the previous one; a video shorter than 1 s gives the single clip ``[0, 1)``), and
    ``UniformTemporalSubsample(2)`` keeps the first and the last decoded frame of each clip. At most 60 clips (the
    official limit, ``OFFICIAL_MAX_CLIPS``). The duration ``D`` is computed exactly as pytorchvideo's
    ``EncodedVideoPyAV`` does (``(stream.duration - stream.start_time) * time_base``; containers without a stream
    duration -- e.g. mkv / webm -- use the presentation time of the LAST frame, which is one frame shorter: an
    official quirk, reproduced), and clip membership uses the same exact rational comparison
    (``pts >= ceil(start / time_base) + start_pts`` and ``pts < ceil(end / time_base) + start_pts``).
    On a lossless video the frames are bit-identical to the official ones (RGB conversion is PyAV's
    ``frame.to_ndarray(format="rgb24")`` = pytorchvideo's ``frame.to_rgb().to_ndarray()``).
  - ``sampling="uniform", num_frames=N``: a fixed number of frames spread evenly over the whole clip, as in the
    Audio-Visual LLM (Shu et al.; 32 frames per video). The targets are ``t_k = k * D / N`` for ``k = 0 .. N - 1``,
    where ``D`` is the clip duration (the header duration -- stream, else container -- or, without one, the
    presentation time of the last packet; at most ``max_seconds``), and each target takes the frame on screen (the
    rule of ``"fps"``). Always exactly ``N`` frames: a clip with fewer frames repeats some.

* :func:`load_audio` -> :class:`AudioClip` -- a mono float32 waveform at ``sampling_rate`` (16 kHz) from an audio
  file, the sound track of a video file, or an in-memory waveform. Channels are averaged (mean); resampling uses
  :func:`resample_audio`, a windowed-sinc polyphase resampler (Hann window, 6 zero crossings, roll-off 0.99 -- the
  algorithm and defaults of ``torchaudio.functional.resample``, run with ``torch.nn.functional.conv1d``).
* :func:`load_image` -> ``(H, W, 3)`` uint8 RGB.
* :func:`has_audio_track`.

``max_seconds`` keeps the FIRST ``max_seconds`` of a video or waveform (decoding stops there) and logs a warning
when something is cut; nothing else is dropped silently.

Errors (all name the input): a missing file raises ``FileNotFoundError``; a file FFmpeg / libsndfile / Pillow cannot
read, a corrupt or truncated container, or a video with no decodable frame raises :class:`MediaDecodeError`; a file
without the requested track raises :class:`NoVideoTrackError` / :class:`NoAudioTrackError` (all ``ValueError``
subclasses); an unsupported input type raises ``TypeError``; bad arguments (``fps <= 0``, ``sampling="uniform"``
without ``num_frames``, ...) raise ``ValueError``. A file whose duration is needed (``"clip_ends"``, ``"uniform"``)
but is neither in the header nor readable from its packets raises :class:`MediaDecodeError`.

Truncated files: an mp4 / mov cut short usually loses its index (the ``moov`` atom is written at the end), so it
cannot be opened -> :class:`MediaDecodeError`. An error raised by FFmpeg while demuxing / decoding also becomes a
:class:`MediaDecodeError` (with the number of frames decoded before it). A container that simply ends early without an
error (mkv / webm / faststart mp4 cut short) yields the frames that can be read: ``sampling="fps"`` samples only up
to the last decoded frame (a warning is logged when the header promised a longer stream), ``"uniform"`` keeps its
targets over the header duration (those past the last decoded frame take that frame), while ``"clip_ends"`` raises
:class:`MediaDecodeError` when a clip of the header duration lies beyond the decoded frames (the official code fails
there too: "No clip found").

Audio samples are concatenated in decode order from the first audio stream (FFmpeg drops codec priming samples); a
sound track that starts later than its video is not shifted or padded.

PyAV, soundfile and Pillow (the ``video`` extra) are imported lazily.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "OFFICIAL_CLIP_SECONDS",
    "OFFICIAL_FRAMES_PER_CLIP",
    "OFFICIAL_MAX_CLIPS",
    "AudioClip",
    "MediaDecodeError",
    "NoAudioTrackError",
    "NoVideoTrackError",
    "VideoClip",
    "clip_ends_timepoints",
    "has_audio_track",
    "load_audio",
    "load_image",
    "load_video",
    "resample_audio",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Official video-SALMONN sampler: 1 s clips, 2 frames per clip (first and last), at most 60 clips.
OFFICIAL_CLIP_SECONDS = 1
OFFICIAL_FRAMES_PER_CLIP = 2
OFFICIAL_MAX_CLIPS = 60

#: Files read with soundfile first (PyAV is the fallback and handles everything else).
_SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif")
#: Largest polyphase kernel (elements) built by :func:`resample_audio` before it falls back to FFmpeg's swresample.
_MAX_KERNEL_ELEMENTS = 20_000_000


class MediaDecodeError(ValueError):
    """A media file (or buffer) that cannot be opened or decoded: corrupt, truncated, not media, or empty."""


class NoAudioTrackError(ValueError):
    """The file has no audio stream (e.g. a silent video given to :func:`load_audio`)."""


class NoVideoTrackError(ValueError):
    """The file has no video stream (e.g. an audio file given to :func:`load_video`)."""


# --------------------------------------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class VideoClip:
    """Frames sampled from a video, with everything needed to place them in time.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB (or the stacked results of ``frame_transform``).
        timestamps: float64 ``(T,)`` presentation time (seconds, relative to the stream start) of each returned frame.
        fps: frame rate of the source (average rate of the stream; for in-memory frames the given rate).
        duration: duration of the source in seconds (stream header when known, else up to the end of the last
            decoded frame).
        source_frame_indices: int64 ``(T,)`` index of each returned frame among all decoded frames (0-based,
            presentation order).
        sampling: ``"fps"``, ``"clip_ends"``, ``"uniform"`` or ``"all"`` (in-memory frames taken as they are).
        sample_times: float64 ``(T,)`` the time each frame was sampled for: the target time ``k / fps`` for
            ``"fps"``, ``k * D / num_frames`` for ``"uniform"``, the clip start (first frame) / clip end (last frame)
            for ``"clip_ends"``.
        clip_timepoints: ``(n_clips, 2)`` float64 ``[start, end)`` of each clip (``"clip_ends"`` only, else ``None``).
        truncated: ``True`` when ``max_seconds`` / ``max_frames`` (or the official 60 clip limit) cut the video
            (``"uniform"``: only ``max_seconds`` can).
        source_size: ``(height, width)`` of the source frames (``frames`` differ when ``size=`` was given).
        source: a description of the input (path) for messages.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    fps: float
    duration: float
    source_frame_indices: np.ndarray
    sampling: str = "fps"
    sample_times: np.ndarray | None = None
    clip_timepoints: np.ndarray | None = None
    truncated: bool = False
    source_size: tuple[int, int] | None = None
    source: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def __len__(self) -> int:
        return self.num_frames


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
    """

    waveform: np.ndarray
    sampling_rate: int
    duration: float
    source_sampling_rate: int
    source_channels: int
    truncated: bool = False
    source: str | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------------------------------
# argument checks and small helpers
# --------------------------------------------------------------------------------------------------------------------


def _import_av():
    try:
        import av
    except ImportError as error:  # pragma: no cover
        raise ImportError(
            "Decoding media needs PyAV: `pip install av` (or `pip install transformers-av[video]`)."
        ) from error
    return av


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return f"<{type(source).__name__} {name!r}>"
    return f"<{type(source).__name__}>"


def _is_pathlike(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _is_filelike(source: Any) -> bool:
    return hasattr(source, "read") and callable(source.read)


def _check_file(path: PathLike) -> Path:
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"Media file not found: {str(path)!r}")
    if not path.is_file():
        raise MediaDecodeError(f"Expected a media file, got a directory or special file: {str(path)!r}")
    return path


def _positive_fraction(value: Any, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a positive number, got {value!r} ({type(value).__name__})")
    if isinstance(value, Fraction):
        result = value
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"`{name}` must be a finite positive number, got {value!r}")
        # exact for integers and "decimal" rates such as 29.97; limit_denominator keeps 1/3-style floats sane
        result = Fraction(number).limit_denominator(1_000_000)
    if result <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return result


def _optional_positive(value: Any, name: str) -> float | None:
    if value is None:
        return None
    return float(_positive_fraction(value, name))


def _optional_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1, got {value!r}")
    return int(value)


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"`size` must be (height, width) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------------------------------------------------
# opening containers
# --------------------------------------------------------------------------------------------------------------------


class _Opener:
    """Opens a PyAV container for a path, bytes or a seekable file-like object (possibly several times)."""

    def __init__(self, source: Any):
        self.name = _describe(source)
        if _is_pathlike(source):
            self.target: Any = str(_check_file(source))
            self.start = None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise MediaDecodeError(f"Cannot decode {self.name}: the buffer is empty")
            self.target = io.BytesIO(bytes(source))
            self.start = 0
        elif _is_filelike(source):
            self.target = source
            try:
                self.start = source.tell() if source.seekable() else None
            except (AttributeError, OSError):
                self.start = None
        else:  # pragma: no cover - callers dispatch before
            raise TypeError(f"Cannot open {self.name} as media")

    @property
    def reopenable(self) -> bool:
        return isinstance(self.target, str) or self.start is not None

    def open(self):
        av = _import_av()
        if not isinstance(self.target, str) and self.start is not None:
            self.target.seek(self.start)
        try:
            return av.open(self.target, mode="r")
        except av.FFmpegError as error:
            raise MediaDecodeError(
                f"Cannot open {self.name}: FFmpeg cannot read it as a media container (corrupt, truncated or not a "
                f"video/audio file): {error}"
            ) from error


# --------------------------------------------------------------------------------------------------------------------
# frame sources: (index, time, frame) in presentation order, times as exact fractions of a second
# --------------------------------------------------------------------------------------------------------------------


def _stream_rate(stream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _decode_video(container, stream, name: str, rate: Fraction | None) -> Iterator[tuple[int, Fraction, Any]]:
    av = _import_av()
    time_base = Fraction(stream.time_base) if stream.time_base else None
    start_pts = stream.start_time or 0
    index = 0
    try:
        for frame in container.decode(stream):
            if frame.pts is not None and time_base is not None:
                time = (frame.pts - start_pts) * time_base
            else:  # no timestamps at all: assume a constant frame rate
                time = Fraction(index) / (rate or 1)
            yield index, time, frame
            index += 1
    except av.FFmpegError as error:
        raise MediaDecodeError(f"Decoding the video of {name} failed after {index} frame(s): {error}") from error


def _frame_duration(frame, stream, rate: Fraction | None) -> Fraction:
    if getattr(frame, "duration", None) and stream.time_base:
        return frame.duration * Fraction(stream.time_base)
    return 1 / rate if rate else Fraction(0)


def _frame_to_rgb(frame: Any, size: tuple[int, int] | None) -> np.ndarray:
    """One decoded frame (PyAV ``VideoFrame`` or an ``(H, W, 3)`` array) -> ``(H, W, 3)`` uint8, resized if asked."""
    if isinstance(frame, np.ndarray):
        if size is None or frame.shape[:2] == size:
            return np.array(frame, dtype=np.uint8, copy=True)
        from PIL import Image

        return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    if size is None:
        return frame.to_ndarray(format="rgb24")
    # swscale area averaging: a good, cheap downscaler
    return frame.reformat(width=size[1], height=size[0], format="rgb24", interpolation="AREA").to_ndarray()


# --------------------------------------------------------------------------------------------------------------------
# samplers (streaming: fed one frame at a time, keep only what they pick)
# --------------------------------------------------------------------------------------------------------------------


class _FpsSampler:
    """Frames at ``t_k = k / fps`` (``t_k < end``): for each target, the last frame with time ``<= t_k``."""

    def __init__(self, step: Fraction, limit: Fraction | None, max_frames: int | None, convert: Callable):
        self.step, self.limit, self.max_frames, self.convert = step, limit, max_frames, convert
        self.k = 0
        self.prev: tuple[int, Fraction, Any] | None = None
        self.picked: list[tuple[float, int, Fraction, np.ndarray]] = []
        self._cache: tuple[int, np.ndarray] | None = None
        self.done = False
        self.cut = False

    def _target(self) -> Fraction:
        return self.k * self.step

    def _exhausted(self) -> bool:
        if self.max_frames is not None and self.k >= self.max_frames:
            self.cut = True
            return True
        if self.limit is not None and self._target() >= self.limit:
            self.cut = True
            return True
        return False

    def _emit(self, item: tuple[int, Fraction, Any]) -> None:
        index, time, frame = item
        if self._cache is None or self._cache[0] != index:
            self._cache = (index, self.convert(frame))
        self.picked.append((float(self._target()), index, time, self._cache[1]))
        self.k += 1

    def feed(self, index: int, time: Fraction, frame: Any) -> bool:
        while self._target() < time:
            if self._exhausted():
                self.done = True
                return True
            # a target before the very first frame takes the first frame
            self._emit(self.prev if self.prev is not None else (index, time, frame))
        self.prev = (index, time, frame)
        return False

    def finish(self, end: Fraction) -> None:
        if self.done or self.prev is None:
            return
        while self._target() < end and not self._exhausted():
            self._emit(self.prev)
        self.prev = None


class _ClipEndsSampler:
    """First and last frame of each clip ``[start, end)`` (``UniformTemporalSubsample(2)`` on the clip's frames)."""

    def __init__(self, clips: Sequence[tuple[Fraction, Fraction]], convert: Callable, name: str):
        self.clips, self.convert, self.name = list(clips), convert, name
        n = len(self.clips)
        self.first: list[tuple[int, Fraction] | None] = [None] * n
        self.last: list[tuple[int, Fraction, Any] | None] = [None] * n
        self.result: list[list[tuple[int, Fraction]] | None] = [None] * n
        self.arrays: dict[int, np.ndarray] = {}
        self.lo = 0
        self.prev: tuple[int, Fraction, Any] | None = None
        self.done = n == 0

    def _finalize(self, c: int, at_eof: bool) -> None:
        start, end = self.clips[c]
        if self.first[c] is None:
            if self.prev is None or at_eof:
                raise MediaDecodeError(
                    f"{self.name}: no decoded frame in the clip [{float(start):.3f}, {float(end):.3f}) s "
                    + (
                        "(the stream ends before its header duration: truncated or corrupt file?)"
                        if at_eof and self.prev is not None
                        else ""
                    )
                    + "; try sampling='fps'."
                )
            # a gap of more than a clip without frames (variable frame rate): take the frame on screen
            logger.warning(
                "%s: no frame in the clip [%.3f, %.3f) s; using the frame on screen (t=%.3f s).",
                self.name, float(start), float(end), float(self.prev[1]),
            )
            index, time, frame = self.prev
            if index not in self.arrays:
                self.arrays[index] = self.convert(frame)
            self.result[c] = [(index, time), (index, time)]
            return
        index, time, frame = self.last[c]
        if index not in self.arrays:
            self.arrays[index] = self.convert(frame)
        self.result[c] = [self.first[c], (index, time)]
        self.last[c] = None

    def feed(self, index: int, time: Fraction, frame: Any) -> bool:
        n = len(self.clips)
        while self.lo < n and self.clips[self.lo][1] <= time:  # clips ending at or before this frame are complete
            self._finalize(self.lo, at_eof=False)
            self.lo += 1
        c = self.lo
        while c < n and self.clips[c][0] <= time:  # starts are sorted; ends > time for every c >= lo
            if self.first[c] is None:
                self.first[c] = (index, time)
                if index not in self.arrays:
                    self.arrays[index] = self.convert(frame)
            self.last[c] = (index, time, frame)
            c += 1
        self.prev = (index, time, frame)
        self.done = self.lo == n
        return self.done

    def finish(self) -> None:
        while self.lo < len(self.clips):
            self._finalize(self.lo, at_eof=True)
            self.lo += 1
        self.prev = None
        self.done = True


def clip_ends_timepoints(duration: Any, clip_duration: Any = OFFICIAL_CLIP_SECONDS) -> list[tuple[Fraction, Fraction]]:
    """Clip ``[start, end)`` times of pytorchvideo's ``UniformClipSampler(clip_duration, backpad_last=True)``.

    Reproduces ``ImageBind/data.py: get_clip_timepoints`` with exact fractions, e.g. ``1.5 -> [(0, 1), (1/2, 3/2)]``,
    ``0.5 -> [(0, 1)]``, ``3 -> [(0, 1), (1, 2), (2, 3)]``.
    """
    duration = Fraction(duration)
    clip = Fraction(clip_duration)
    if duration < 0:
        raise ValueError(f"duration must be >= 0, got {duration}")

    def start_end(last_end: Fraction) -> tuple[Fraction, Fraction]:
        start = max(last_end, Fraction(0))  # stride == clip_duration
        end = start + clip
        start = max(Fraction(0), start - max(Fraction(0), end - duration))  # back-pad the last clip
        return start, start + clip

    clips, end, eps = [], Fraction(0), 1e-6
    while True:
        start, end = start_end(end)
        clips.append((start, end))
        _, next_end = start_end(end)
        if abs(next_end - end) < eps:
            return clips


# --------------------------------------------------------------------------------------------------------------------
# load_video
# --------------------------------------------------------------------------------------------------------------------


def _memory_frames(source: Any, name: str) -> np.ndarray | list[np.ndarray]:
    """In-memory video -> ``(T, H, W, 3)`` uint8 array (or list of ``(H, W, 3)``)."""
    if _is_torch_tensor(source):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        if source.ndim != 4:
            raise ValueError(
                f"A video array must be (T, H, W, 3) (numpy) or (T, 3, H, W) / (T, H, W, 3) (torch), got shape "
                f"{source.shape}"
            )
        if source.shape[-1] != 3 and source.shape[1] == 3:
            source = source.transpose(0, 2, 3, 1)
        if source.shape[-1] != 3:
            raise ValueError(f"A video array needs 3 RGB channels ((T, H, W, 3) or (T, 3, H, W)), got {source.shape}")
        if source.dtype != np.uint8:
            raise TypeError(
                f"Video frames must be uint8 RGB, got dtype {source.dtype} (convert with (x * 255).round())"
            )
        if source.shape[0] == 0:
            raise ValueError("The video array has 0 frames")
        return source
    frames = []
    for i, item in enumerate(source):
        try:
            frames.append(load_image(item))
        except (TypeError, ValueError) as error:
            raise type(error)(f"Frame {i} of the frame list: {error}") from error
    if not frames:
        raise ValueError("The frame list is empty: a video needs at least one frame")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"All frames of a frame list must have the same size, got {sorted(shapes)}")
    return frames


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def load_video(
    source: Any,
    *,
    fps: float = 2.0,
    sampling: str = "fps",
    num_frames: int | None = None,
    max_seconds: float | None = None,
    max_frames: int | None = None,
    size: tuple[int, int] | int | None = None,
    source_fps: float | None = None,
    frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    frames_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    transform_batch_size: int = 16,
) -> VideoClip:
    """Decode and sample a video.

    Args:
        source: a path (mp4 / mkv / webm / avi / mov / anything FFmpeg reads), a seekable binary file-like object,
            ``bytes``, a numpy array ``(T, H, W, 3)`` uint8, a torch tensor ``(T, 3, H, W)`` or ``(T, H, W, 3)``
            uint8, or a list of PIL images / ``(H, W, 3)`` arrays.
        fps: frames per second to sample with ``sampling="fps"`` (and the frame rate assumed for in-memory frames
            without ``source_fps``).
        sampling: ``"fps"``, ``"clip_ends"`` (the official sampler) or ``"uniform"`` (``num_frames`` frames spread
            evenly over the clip); see the module docstring.
        num_frames: with ``sampling="uniform"`` (and only then; required there): how many frames to return, at the
            target times ``t_k = k * D / num_frames``, ``k = 0 .. num_frames - 1``, each taking the frame on screen
            at ``t_k``. ``D`` is the clip duration: the header duration (``stream.duration * time_base``, else
            ``container.duration``), or the presentation time of the last packet when the header has none; at most
            ``max_seconds``. The result always has ``num_frames`` frames (repeated when the clip has fewer).
        max_seconds: use only the first ``max_seconds`` of the video (``"fps"``: targets ``t < max_seconds``;
            ``"clip_ends"``: clips of the first ``max_seconds``, default ``OFFICIAL_MAX_CLIPS`` = 60 s like the
            official code; ``"uniform"``: ``D = min(D, max_seconds)``). A warning is logged when the video is cut.
        max_frames: keep at most this many sampled frames (the first ones). Not with ``"uniform"`` (``num_frames``
            fixes the count).
        size: ``(height, width)`` (or an int for a square) to downscale each kept frame right away (swscale area
            averaging) -- only to save memory on huge videos: the image processor does the model's resize, and
            frames resized here are no longer bit-identical to the official pipeline.
        source_fps: frame rate of in-memory frames. Given: they are sampled like a decoded video with that rate
            (``"uniform"``: ``D = T / source_fps``). Not given: they are taken as already sampled at ``fps`` (all
            kept, ``timestamps = arange(T) / fps``); ``"uniform"`` then picks the indices
            ``floor(k * T / num_frames)`` (the frames on screen when frame ``i`` lasts ``[i / fps, (i + 1) / fps)``;
            timestamps ``index / fps``; with ``max_seconds``, ``D = min(T / fps, max_seconds)``).
            Ignored for files (their timestamps are used).
        frame_transform: applied to each kept frame (uint8 ``(H, W, 3)`` RGB) as soon as it is decoded; ``frames``
            then stacks its results. `FavorProcessor` turns frames into model pixels here, so a long high-resolution
            video never holds its sampled frames at full resolution.
        frames_transform: like ``frame_transform`` but for a batch ``(k, H, W, 3)`` -> ``(k, ...)``, applied to groups
            of ``transform_batch_size`` kept frames as they are decoded (faster than one call per frame; at most that
            many full-resolution frames are held at once). Give one of the two transforms.

    Returns:
        a :class:`VideoClip`.

    Raises:
        MediaDecodeError: unreadable / corrupt file, no decodable frame, or (``"clip_ends"`` / ``"uniform"``) a
            duration that is neither in the header nor readable from the packets.

    Example:
        the Audio-Visual LLM sampler, 32 frames over the whole clip::

            clip = load_video("video.mp4", sampling="uniform", num_frames=32)
    """
    if sampling not in ("fps", "clip_ends", "uniform"):
        raise ValueError(f"`sampling` must be 'fps', 'clip_ends' or 'uniform', got {sampling!r}")
    step = 1 / _positive_fraction(fps, "fps")
    max_seconds_f = _optional_positive(max_seconds, "max_seconds")
    max_frames = _optional_count(max_frames, "max_frames")
    if sampling == "uniform":
        if num_frames is None:
            raise ValueError(
                "sampling='uniform' needs `num_frames` (how many frames to spread over the clip, e.g. 32), got None"
            )
        num_frames = _optional_count(num_frames, "num_frames")
        if max_frames is not None:
            raise ValueError(
                f"`max_frames` cannot be used with sampling='uniform' (`num_frames` already fixes the frame count), "
                f"got max_frames={max_frames}"
            )
        max_frames = num_frames  # the uniform sampler is the fps sampler capped at num_frames targets
    elif num_frames is not None:
        raise ValueError(
            f"`num_frames` is only used with sampling='uniform', got num_frames={num_frames!r} with "
            f"sampling={sampling!r} (use max_frames to cap the number of frames)"
        )
    size = _check_size(size)
    if sampling == "clip_ends" and max_seconds_f is None:
        max_seconds_f = float(OFFICIAL_MAX_CLIPS * OFFICIAL_CLIP_SECONDS)
    limit = None if max_seconds_f is None else Fraction(max_seconds_f).limit_denominator(1_000_000)

    if frame_transform is not None and frames_transform is not None:
        raise ValueError("give frame_transform or frames_transform, not both")
    batcher = _FrameBatcher(frames_transform, _optional_count(transform_batch_size, "transform_batch_size") or 1) \
        if frames_transform is not None else None

    def convert(frame):
        rgb = _frame_to_rgb(frame, size)
        if batcher is not None:
            return batcher.add(rgb)
        return rgb if frame_transform is None else frame_transform(rgb)

    finalize = batcher.finalize if batcher is not None else None

    if _is_pathlike(source) or _is_filelike(source) or isinstance(source, (bytes, bytearray, memoryview)):
        return _load_video_file(source, sampling, step, limit, max_frames, size, convert, finalize)
    if not (isinstance(source, (np.ndarray, list, tuple)) or _is_torch_tensor(source)):
        raise TypeError(
            f"load_video expects a path, a file-like object, bytes, a (T, H, W, 3) uint8 array, a torch tensor or a "
            f"list of images, got {type(source).__name__}"
        )
    name = f"<{type(source).__name__} video>"
    frames = _memory_frames(source, name)
    count = len(frames)
    height, width = frames[0].shape[:2]
    if source_fps is None and sampling != "uniform":  # already sampled at `fps`
        times = [i * step for i in range(count)]
        keep = [i for i in range(count) if limit is None or times[i] < limit]
        if max_frames is not None:
            keep = keep[:max_frames]
        truncated = len(keep) < count
        if truncated:
            logger.warning("%s: keeping the first %d of %d frames (max_seconds/max_frames).", name, len(keep), count)
        stamps = np.array([float(times[i]) for i in keep], dtype=np.float64)
        return VideoClip(
            frames=np.stack(_finalized([convert(frames[i]) for i in keep], finalize)),
            timestamps=stamps,
            fps=float(1 / step),
            duration=float(count * step),
            source_frame_indices=np.array(keep, dtype=np.int64),
            sampling="all",
            sample_times=stamps.copy(),
            truncated=truncated,
            source_size=(height, width),
            source=name,
        )
    # "uniform" without source_fps: frame i is taken to last [i / fps, (i + 1) / fps), so the targets k * D / N with
    # D = count / fps pick exactly the indices floor(k * count / N)
    rate = 1 / step if source_fps is None else _positive_fraction(source_fps, "source_fps")
    duration = count / rate
    frame_iter = ((i, i / rate, frames[i]) for i in range(count))
    return _sample(
        frame_iter, sampling=sampling, step=step, limit=limit, max_frames=max_frames, convert=convert, name=name,
        finalize=finalize,
        clip_duration=duration, header_duration=duration, rate=rate, frame_period=lambda item: 1 / rate,
        source_size=(height, width),
    )


def _load_video_file(source, sampling, step, limit, max_frames, size, convert, finalize=None) -> VideoClip:
    opener = _Opener(source)
    name = opener.name
    container = opener.open()
    try:
        if len(container.streams) == 0:
            raise MediaDecodeError(f"{name} contains no audio or video stream (empty / zero-length media)")
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise NoVideoTrackError(f"{name} has no video stream (streams: {kinds}); expected a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = _stream_rate(stream)
        time_base = Fraction(stream.time_base) if stream.time_base else None
        start_pts = stream.start_time or 0
        header_duration = None
        if stream.duration is not None and time_base is not None:
            header_duration = stream.duration * time_base
        elif container.duration is not None:
            header_duration = Fraction(container.duration, 1_000_000)
        clip_duration = None
        if sampling == "uniform":
            # D: the header duration, else the time of the last packet (found by demuxing, without decoding)
            if header_duration is not None and header_duration > 0:
                clip_duration = header_duration
            else:
                clip_duration = _last_packet_time(opener, container, name)
        elif sampling == "clip_ends":
            # pytorchvideo EncodedVideoPyAV.duration: (stream.duration - start_pts) * time_base, or -- without a
            # stream duration -- the pts of the last frame (found here by demuxing, without decoding)
            if stream.duration is not None and time_base is not None:
                clip_duration = int(stream.duration - start_pts) * time_base
            else:
                clip_duration = _last_packet_time(opener, container, name)
        frames = _decode_video(container, stream, name, rate)
        clip = _sample(
            frames, sampling=sampling, step=step, limit=limit, max_frames=max_frames, convert=convert, name=name,
            finalize=finalize,
            clip_duration=clip_duration, header_duration=header_duration, rate=rate,
            frame_period=lambda item: _frame_duration(item[2], stream, rate),
            source_size=(stream.codec_context.height, stream.codec_context.width),
        )
        return clip
    finally:
        container.close()


def _last_packet_time(opener: _Opener, container, name: str) -> Fraction:
    av = _import_av()
    # a buffer / file object is shared with the open `container`: its read position is restored after the probe
    shared = not isinstance(opener.target, str) and opener.start is not None
    position = opener.target.tell() if shared else None
    if opener.reopenable:
        probe = opener.open()
    else:  # pragma: no cover - non seekable stream: best effort
        if container.duration is None:
            raise MediaDecodeError(f"{name}: no duration in the header and the input cannot be read twice")
        return Fraction(container.duration, 1_000_000)
    try:
        stream = probe.streams.video[0]
        start_pts = stream.start_time or 0
        last = None
        try:
            for packet in probe.demux(stream):
                if packet.pts is not None and (last is None or packet.pts > last):
                    last = packet.pts
        except av.FFmpegError as error:
            raise MediaDecodeError(f"Reading the packets of {name} failed: {error}") from error
        if last is None:
            raise MediaDecodeError(f"{name}: the video stream has no frames (no timestamped packets)")
        return int(last - start_pts) * Fraction(stream.time_base)
    finally:
        probe.close()
        if shared:
            opener.target.seek(position)


class _PendingFrame:
    """A kept frame whose batched transform has not run yet."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = None


class _FrameBatcher:
    """Runs a batch transform over kept frames in groups, as they are decoded."""

    def __init__(self, transform: Callable[[np.ndarray], np.ndarray], batch_size: int):
        self.transform, self.batch_size = transform, batch_size
        self.pending: list[tuple[_PendingFrame, np.ndarray]] = []

    def add(self, rgb: np.ndarray) -> _PendingFrame:
        slot = _PendingFrame()
        self.pending.append((slot, rgb))
        if len(self.pending) >= self.batch_size:
            self.flush()
        return slot

    def flush(self) -> None:
        if not self.pending:
            return
        outputs = self.transform(np.stack([rgb for _, rgb in self.pending]))
        if len(outputs) != len(self.pending):
            raise ValueError(f"frames_transform returned {len(outputs)} frames for {len(self.pending)}")
        for (slot, _), output in zip(self.pending, outputs):
            slot.value = output
        self.pending = []

    def finalize(self, arrays: list) -> list:
        self.flush()
        return [a.value if isinstance(a, _PendingFrame) else a for a in arrays]


def _finalized(arrays: list, finalize: Callable[[list], list] | None) -> list:
    return arrays if finalize is None else finalize(arrays)


def _sample(
    frames: Iterator[tuple[int, Fraction, Any]],
    *,
    sampling: str,
    step: Fraction,
    limit: Fraction | None,
    max_frames: int | None,
    convert: Callable,
    name: str,
    clip_duration: Fraction | None,
    header_duration: Fraction | None,
    rate: Fraction | None,
    frame_period: Callable,
    source_size: tuple[int, int],
    finalize: Callable[[list], list] | None = None,
) -> VideoClip:
    clips = None
    cut = False
    if sampling == "clip_ends":
        effective = clip_duration if limit is None else min(clip_duration, limit)
        cut = limit is not None and clip_duration > limit
        clips = clip_ends_timepoints(effective)
        sampler: Any = _ClipEndsSampler(clips, convert, name)
    elif sampling == "uniform":
        # max_frames (= num_frames) targets k * D / num_frames: the fps sampler with step D / num_frames
        if clip_duration is None:  # pragma: no cover - callers always know D
            raise MediaDecodeError(f"{name}: the duration of the video is unknown")
        effective = clip_duration if limit is None else min(clip_duration, limit)
        cut = limit is not None and clip_duration > limit
        step = Fraction(effective) / max_frames
        sampler = _FpsSampler(step, None, max_frames, convert)
    else:
        sampler = _FpsSampler(step, limit, max_frames, convert)

    count = 0
    last = None
    reached_eof = True
    for item in frames:
        count += 1
        last = item
        if sampler.feed(*item):
            reached_eof = False
            break
    if hasattr(frames, "close"):
        frames.close()
    if count == 0:
        raise MediaDecodeError(f"{name} contains no decodable video frame (zero-length or corrupt video)")

    decoded_end = last[1] + frame_period(last) if reached_eof else None
    if sampling in ("fps", "uniform"):
        if reached_eof:
            tolerance = max(Fraction(1, 2), 3 * frame_period(last))
            if header_duration is not None and header_duration - decoded_end > tolerance:
                logger.warning(
                    "%s: the frames stop at %.3f s but the header says %.3f s (truncated file?); %s.",
                    name, float(decoded_end), float(header_duration),
                    "sampling the decoded part only" if sampling == "fps" else "the last frame fills the later targets",
                )
            # "uniform" keeps all its targets (all < max_frames * step): past the last frame, it stays on screen
            sampler.finish(decoded_end if sampling == "fps" else max_frames * step + 1)
        if sampling == "fps":
            cut = sampler.cut  # set only when frames exist past the last target kept (max_seconds / max_frames)
        picked = sampler.picked
        if not picked:  # pragma: no cover - at least one target (t=0) always exists
            raise MediaDecodeError(f"{name}: no frame could be sampled")
        indices = [p[1] for p in picked]
        times = [float(p[2]) for p in picked]
        sample_times = [p[0] for p in picked]
        arrays = [p[3] for p in picked]
        clip_array = None
    else:
        if reached_eof:
            sampler.finish()
        indices, times, sample_times = [], [], []
        for (start, end), pair in zip(clips, sampler.result):
            for (index, time), target in zip(pair, (start, end)):
                indices.append(index)
                times.append(float(time))
                sample_times.append(float(target))
        arrays = [sampler.arrays[i] for i in indices]
        if max_frames is not None and len(arrays) > max_frames:
            cut = True
            indices, times, sample_times, arrays = (x[:max_frames] for x in (indices, times, sample_times, arrays))
        clip_array = np.array([[float(s), float(e)] for s, e in clips], dtype=np.float64)
    if cut and sampling == "uniform":
        logger.warning(
            "%s: video cut to its first %g s (max_seconds): %d frames spread over it.", name, float(limit), len(arrays)
        )
    elif cut:
        logger.warning(
            "%s: video cut to its first %s (max_seconds=%s, max_frames=%s): %d frames kept.",
            name, f"{float(limit):g} s" if limit is not None else f"{max_frames} frames",
            None if limit is None else float(limit), max_frames, len(arrays),
        )
    if decoded_end is not None and (header_duration is None or header_duration - decoded_end > Fraction(1, 2)):
        duration = float(decoded_end)  # no header duration, or the stream ends early (truncated)
    elif header_duration is not None:
        duration = float(header_duration)
    else:
        duration = float(last[1] + frame_period(last))
    return VideoClip(
        frames=np.stack(_finalized(arrays, finalize)),
        timestamps=np.array(times, dtype=np.float64),
        fps=float(rate) if rate else float("nan"),
        duration=duration,
        source_frame_indices=np.array(indices, dtype=np.int64),
        sampling=sampling,
        sample_times=np.array(sample_times, dtype=np.float64),
        clip_timepoints=clip_array,
        truncated=bool(cut),
        source_size=(int(source_size[0]), int(source_size[1])),
        source=name,
    )


# --------------------------------------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------------------------------------


def _to_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise TypeError(f"Unsupported audio sample type {array.dtype}")


def _audio_frame_to_channels(frame) -> np.ndarray:
    """PyAV AudioFrame -> float32 ``(channels, samples)``."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:  # packed: (1, samples * channels)
        array = array.reshape(-1, channels).T
    return _to_float(array)


def has_audio_track(source: Any) -> bool:
    """Whether a media file (path, bytes or seekable file-like) has an audio stream."""
    opener = _Opener(source)
    container = opener.open()
    try:
        return len(container.streams.audio) > 0
    finally:
        container.close()
        if not isinstance(opener.target, str) and opener.start is not None:
            opener.target.seek(opener.start)


def _read_soundfile(path: str, max_samples_at: Callable[[int], int | None]) -> tuple[np.ndarray, int, int]:
    import soundfile as sf

    with sf.SoundFile(path) as handle:
        rate, channels = handle.samplerate, handle.channels
        limit = max_samples_at(rate)
        data = handle.read(frames=-1 if limit is None else limit, dtype="float32", always_2d=True)
    return data.T, rate, channels  # (channels, samples)


def _read_av_audio(opener: _Opener, max_samples_at: Callable[[int], int | None]) -> tuple[np.ndarray, int, int, bool]:
    av = _import_av()
    name = opener.name
    container = opener.open()
    try:
        if len(container.streams) == 0:
            raise MediaDecodeError(f"{name} contains no audio or video stream (empty / zero-length media)")
        if not container.streams.audio:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise NoAudioTrackError(f"{name} has no audio track (streams: {kinds}); expected a file with sound")
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        channels = stream.codec_context.channels or stream.layout.nb_channels
        limit = max_samples_at(rate) if rate else None
        chunks, total, more = [], 0, False
        try:
            for frame in container.decode(stream):
                if not rate:
                    rate = frame.sample_rate
                    limit = max_samples_at(rate)
                chunk = _audio_frame_to_channels(frame)
                channels = chunk.shape[0]
                chunks.append(chunk)
                total += chunk.shape[1]
                if limit is not None and total >= limit:
                    more = True
                    break
        except av.FFmpegError as error:
            raise MediaDecodeError(
                f"Decoding the audio of {name} failed after {total} samples: {error}"
            ) from error
        if total == 0:
            raise MediaDecodeError(f"{name}: the audio track has no decodable samples (empty or corrupt)")
        if len({c.shape[0] for c in chunks}) != 1:
            raise MediaDecodeError(f"{name}: the channel count changes inside the audio track")
        data = np.concatenate(chunks, axis=1)
        if limit is not None:
            data = data[:, :limit]
        return data, int(rate), int(channels), more
    finally:
        container.close()


def _memory_waveform(source: Any) -> np.ndarray:
    """Waveform array -> float32 ``(channels, samples)``."""
    if _is_torch_tensor(source):
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


def load_audio(
    source: Any,
    *,
    sampling_rate: int = 16000,
    max_seconds: float | None = None,
    source_sampling_rate: int | None = None,
) -> AudioClip:
    """Load a mono waveform at ``sampling_rate``.

    Args:
        source: a path to an audio file (wav / flac / ogg: soundfile; mp3 / m4a / aac / opus / anything else: PyAV)
            or to a VIDEO file (its first audio stream), bytes, a seekable file-like object (PyAV), or a numpy /
            torch waveform ``(samples,)``, ``(channels, samples)`` or ``(samples, channels)`` (float in ``[-1, 1]``
            or integer PCM) -- then ``source_sampling_rate`` is required.
        sampling_rate: output rate (16 kHz for Whisper / BEATs).
        max_seconds: keep the first ``max_seconds`` (decoding stops shortly after; the result equals, to float
            rounding, the first samples of the full decode). A warning is logged when audio is cut.
        source_sampling_rate: rate of an in-memory waveform (ignored for files, which carry their own rate).

    Returns:
        an :class:`AudioClip`: channels averaged, resampled with :func:`resample_audio`.

    Raises:
        NoAudioTrackError: the file has no audio stream (e.g. a silent video); see :func:`has_audio_track`.
        MediaDecodeError: unreadable / corrupt file.
    """
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"`sampling_rate` must be a positive int, got {sampling_rate!r}")
    sampling_rate = int(sampling_rate)
    max_seconds_f = _optional_positive(max_seconds, "max_seconds")

    def max_samples_at(rate: int) -> int | None:
        if max_seconds_f is None:
            return None
        # a margin past the cut so that the resampled head equals the head of the full resampled waveform
        return int(math.ceil(max_seconds_f * rate)) + rate // 10 + 64

    more = False
    if _is_pathlike(source) or _is_filelike(source) or isinstance(source, (bytes, bytearray, memoryview)):
        name = _describe(source)
        data = None
        if _is_pathlike(source) and Path(os.fspath(source)).suffix.lower() in _SOUNDFILE_EXTENSIONS:
            path = str(_check_file(source))
            try:
                data, rate, channels = _read_soundfile(path, max_samples_at)
            except Exception as error:  # libsndfile cannot read it: let FFmpeg try
                logger.debug("soundfile could not read %s (%s); trying PyAV", name, error)
                data = None
            if data is not None:
                limit = max_samples_at(rate)
                more = limit is not None and data.shape[1] >= limit
                if data.shape[1] == 0:
                    raise MediaDecodeError(f"{name}: the audio file has no samples")
        if data is None:
            data, rate, channels, more = _read_av_audio(_Opener(source), max_samples_at)
    elif isinstance(source, (np.ndarray, list, tuple)) or _is_torch_tensor(source):
        name = f"<{type(source).__name__} waveform>"
        if source_sampling_rate is None:
            raise ValueError(
                "An in-memory waveform needs `source_sampling_rate=` (its sample rate, e.g. 44100); got None"
            )
        if isinstance(source_sampling_rate, bool) or not isinstance(source_sampling_rate, (int, np.integer)) or (
            source_sampling_rate <= 0
        ):
            raise ValueError(f"`source_sampling_rate` must be a positive int, got {source_sampling_rate!r}")
        rate = int(source_sampling_rate)
        data = _memory_waveform(source)
        channels = data.shape[0]
        if data.shape[1] == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        limit = max_samples_at(rate)
        if limit is not None and data.shape[1] > limit:
            data, more = data[:, :limit], True
    else:
        raise TypeError(
            f"load_audio expects a path, a file-like object, bytes or a numpy/torch waveform, got "
            f"{type(source).__name__}"
        )

    mono = data.mean(axis=0, dtype=np.float64).astype(np.float32) if data.shape[0] > 1 else data[0]
    waveform = resample_audio(mono, rate, sampling_rate)
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
    )


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
    signal = torch.from_numpy(waveform)[None, None, :]
    signal = torch.nn.functional.pad(signal, (width, width + orig_r))
    out = torch.nn.functional.conv1d(signal, kernels, stride=orig_r)  # (1, new_r, frames)
    out = out.transpose(1, 2).reshape(-1)
    target = int(math.ceil(new_r * length / orig_r))
    return out[:target].numpy().copy()


def _resample_swr(waveform: np.ndarray, orig: int, new: int) -> np.ndarray:  # pragma: no cover - rare rate pairs
    av = _import_av()
    frame = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
    frame.sample_rate = orig
    resampler = av.AudioResampler(format="flt", layout="mono", rate=new)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    out = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return out[: int(math.ceil(new * waveform.shape[0] / orig))].astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------------------------------


def load_image(source: Any) -> np.ndarray:
    """Load an image as ``(H, W, 3)`` uint8 RGB.

    ``source``: a path / bytes / file-like (any format Pillow reads; EXIF orientation applied, alpha dropped, grey
    expanded), a PIL image, a numpy array ``(H, W, 3)`` / ``(H, W, 4)`` / ``(H, W)`` uint8, or a torch tensor
    ``(3, H, W)`` / ``(H, W, 3)`` uint8.
    """
    if _is_pathlike(source) or _is_filelike(source) or isinstance(source, (bytes, bytearray, memoryview)):
        from PIL import Image, ImageOps, UnidentifiedImageError

        name = _describe(source)
        if _is_pathlike(source):
            target: Any = str(_check_file(source))
        elif isinstance(source, (bytes, bytearray, memoryview)):
            target = io.BytesIO(bytes(source))
        else:
            target = source
        try:
            with Image.open(target) as image:
                image = ImageOps.exif_transpose(image)
                return np.array(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise MediaDecodeError(f"Cannot read the image {name}: {error}") from error
    if type(source).__module__.startswith("PIL.") and hasattr(source, "convert"):
        return np.array(source.convert("RGB"), dtype=np.uint8)
    if _is_torch_tensor(source):
        array = source.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        source = array
    if isinstance(source, np.ndarray):
        array = source
        if array.dtype != np.uint8:
            raise TypeError(f"Image arrays must be uint8 RGB, got dtype {array.dtype}")
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise ValueError(f"An image array must be (H, W, 3), (H, W, 4) or (H, W), got shape {source.shape}")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"The image is empty: shape {source.shape}")
        return np.array(array[..., :3], dtype=np.uint8, copy=True)
    raise TypeError(
        f"load_image expects a path, bytes, a file-like object, a PIL image, a uint8 array or a torch tensor, got "
        f"{type(source).__name__}"
    )
