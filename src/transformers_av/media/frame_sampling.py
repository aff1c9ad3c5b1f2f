"""Which decoded frames a video keeps: the three samplers of `load_video`, fed one frame at a time.

Frames arrive as ``(index, time, frame)`` in presentation order, ``time`` an exact `Fraction` of a second since the
stream start. A sampler keeps only the frames it picks (converted right away by the caller's ``convert``), so a long
video never sits in memory at full resolution. Nothing here knows about PyAV or files.

* ``"fps"``: one frame every ``1 / fps`` seconds, at ``t = 0, 1/fps, 2/fps, ... < duration``; for each target time the
  frame on screen is taken (the last decoded frame whose presentation time is ``<= t``; a target before the first
  frame takes the first frame). Deterministic, no seeking.
* ``"clip_ends"``: the official video-SALMONN / FAVOR sampler (``ImageBind/data.py:
  load_and_transform_video_data_blip``): pytorchvideo ``UniformClipSampler(clip_duration=1, backpad_last=True)`` cuts
  the video into 1 s clips ``[k, k + 1)`` (a last partial clip is moved back to ``[D - 1, D)``, so it may overlap the
  previous one; a video shorter than 1 s gives the single clip ``[0, 1)``), and ``UniformTemporalSubsample(2)`` keeps
  the first and the last decoded frame of each clip. At most 60 clips (the official limit, ``OFFICIAL_MAX_CLIPS``).
  Clip membership uses pytorchvideo's exact rational comparison (``pts >= ceil(start / time_base) + start_pts`` and
  ``pts < ceil(end / time_base) + start_pts``).
* ``"uniform"``: ``N`` frames spread evenly over the clip duration ``D``, as in the Audio-Visual LLM (Shu et al.; 32
  frames per video): targets ``t_k = k * D / N``, ``k = 0 .. N - 1``, each taking the frame on screen (the rule of
  ``"fps"``). Always exactly ``N`` frames: a clip with fewer frames repeats some.

Each sampler also answers, before a frame is decoded, whether it could keep it (`FrameNeed`, from the times of the
frames around it): the decoder then need not decode a frame that nothing else depends on and that the sampler will
not keep (see `video`), which changes no kept frame.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import MediaDecodeError
from .sources import is_cut_short

logger = logging.getLogger(__name__)

__all__ = [
    "OFFICIAL_CLIP_SECONDS",
    "OFFICIAL_FRAMES_PER_CLIP",
    "OFFICIAL_MAX_CLIPS",
    "FrameNeed",
    "FrameSource",
    "SampledFrames",
    "TimedFrame",
    "clip_ends_timepoints",
    "sample_frames",
]

#: Official video-SALMONN sampler: 1 s clips, 2 frames per clip (first and last), at most 60 clips.
OFFICIAL_CLIP_SECONDS = 1
OFFICIAL_FRAMES_PER_CLIP = 2
OFFICIAL_MAX_CLIPS = 60

#: One decoded frame: (index among all decoded frames, presentation time in seconds, the frame).
TimedFrame = tuple[int, Fraction, Any]

#: ``needs(time, before, after)``: whether the sampler may keep the frame shown at ``time`` (seconds, as in
#: `TimedFrame`), given the presentation times of the frames just before and just after it (``None``: unknown or none).
#: ``False`` is a promise that the frame will not be kept; ``True`` only means "maybe". Given a ``before`` too early or
#: an ``after`` too late (a frame between them not seen yet) the answer may turn ``True``, never ``False``: a caller
#: that knows only some of the frames around may ask, at worst a frame is decoded for nothing.
FrameNeed = Callable[[Fraction, Fraction | None, Fraction | None], bool]

#: The frames a sampler reads: called with the sampler's `FrameNeed`, returns the `TimedFrame`s in presentation order
#: (a decoder may leave out frames that are not needed and that no other frame depends on).
FrameSource = Callable[[FrameNeed], Iterator[TimedFrame]]


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


class _FpsSampler:
    """Frames at ``t_k = k * step`` (``t_k < end``): for each target, the last frame with time ``<= t_k``."""

    def __init__(self, step: Fraction, limit: Fraction | None, max_frames: int | None, convert: Callable):
        self.step, self.limit, self.max_frames, self.convert = step, limit, max_frames, convert
        self.k = 0
        self.prev: TimedFrame | None = None
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

    def _emit(self, item: TimedFrame) -> None:
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

    def needs(self, time: Fraction, before: Fraction | None, after: Fraction | None) -> bool:
        """`FrameNeed`: a frame is kept when a target falls while it is on screen, ``time <= t_k < after``; the first
        frame (it also serves the targets before it) and the first frame past the last target (it ends the
        decoding) are needed too."""
        if before is None or after is None:
            return True
        k = max(math.ceil(time / self.step), 0)  # the first target at or after `time`
        if (self.max_frames is not None and k >= self.max_frames) or (
            self.limit is not None and k * self.step >= self.limit
        ):
            return True
        return k * self.step < after


class _ClipEndsSampler:
    """First and last frame of each clip ``[start, end)`` (``UniformTemporalSubsample(2)`` on the clip's frames)."""

    def __init__(self, clips: Sequence[tuple[Fraction, Fraction]], convert: Callable, name: str):
        self.clips, self.convert, self.name = list(clips), convert, name
        n = len(self.clips)
        self.first: list[tuple[int, Fraction] | None] = [None] * n
        self.last: list[TimedFrame | None] = [None] * n
        self.result: list[list[tuple[int, Fraction]] | None] = [None] * n
        self.arrays: dict[int, np.ndarray] = {}
        self.lo = 0
        self.prev: TimedFrame | None = None
        self.done = n == 0
        self.starts = [start for start, _ in self.clips]  # both sorted: clips are laid end to end (the last back-padded)
        self.ends = [end for _, end in self.clips]

    def _keep(self, index: int, frame: Any) -> None:
        if index not in self.arrays:
            self.arrays[index] = self.convert(frame)

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
            self._keep(index, frame)
            self.result[c] = [(index, time), (index, time)]
            return
        index, time, frame = self.last[c]
        self._keep(index, frame)
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
                self._keep(index, frame)
            self.last[c] = (index, time, frame)
            c += 1
        self.prev = (index, time, frame)
        self.done = self.lo == n
        return self.done

    def needs(self, time: Fraction, before: Fraction | None, after: Fraction | None) -> bool:
        """`FrameNeed`: a frame is kept when it is the first of a clip (``before < start <= time < end``) or the last
        frame shown before a clip's end (``time < end <= after``: the clip's last frame, or the frame on screen for a
        clip without frames); the first frame past the last clip is needed too (it ends the decoding)."""
        if before is None or after is None or not self.clips or time >= self.ends[-1]:
            return True
        c = bisect.bisect_right(self.ends, time)  # the first clip ending after `time`
        if c < len(self.clips) and self.ends[c] <= after:
            return True
        c = bisect.bisect_right(self.starts, before)  # the clips starting after `before`
        while c < len(self.clips) and self.starts[c] <= time:
            if time < self.ends[c]:
                return True
            c += 1
        return False

    def finish(self) -> None:
        while self.lo < len(self.clips):
            self._finalize(self.lo, at_eof=True)
            self.lo += 1
        self.prev = None
        self.done = True


@dataclass
class SampledFrames:
    """What a sampler kept from a stream of decoded frames (the fields of a `VideoClip` that depend on sampling).

    Attributes:
        frames: the kept frames as ``convert`` returned them, in output order (one entry per sampled frame; a frame
            picked twice appears twice).
        source_frame_indices / timestamps / sample_times: per kept frame, as in `VideoClip`.
        clip_timepoints: ``(n_clips, 2)`` ``[start, end)`` of each clip (``"clip_ends"`` only).
        truncated: whether ``max_seconds`` / ``max_frames`` (or the official 60 clip limit) cut the video.
        duration: seconds: the header duration, or up to the end of the last decoded frame when there is none or the
            stream ends early.
        partial: the stream ended (without an error) well before its header duration and ``allow_partial`` let the
            decoded part through.
    """

    frames: list
    source_frame_indices: list[int]
    timestamps: list[float]
    sample_times: list[float]
    clip_timepoints: np.ndarray | None
    truncated: bool
    duration: float
    partial: bool = False


def sample_frames(
    frames: FrameSource,
    *,
    sampling: str,
    step: Fraction,
    limit: Fraction | None,
    max_frames: int | None,
    convert: Callable,
    name: str,
    clip_duration: Fraction | None,
    header_duration: Fraction | None,
    frame_period: Callable[[TimedFrame], Fraction],
    declared: tuple[Fraction | None, bool] = (None, False),
    allow_partial: bool = False,
) -> SampledFrames:
    """Run the ``sampling`` sampler over ``frames`` (stopping the decode as soon as it has what it needs).

    Args:
        frames: the `FrameSource`, told which frames the sampler may keep.
        step: seconds between targets of ``"fps"``.
        limit: ``max_seconds`` as a fraction, or ``None``.
        max_frames: at most this many frames (``"uniform"``: exactly this many, the ``num_frames``).
        convert: a `FrameConverter`: called once on each kept frame, as soon as it is picked (told first, through
            its ``expect``, how many frames to make room for).
        name: the input, for messages.
        clip_duration: the duration the clips (``"clip_ends"``) or the targets (``"uniform"``) are laid over.
        header_duration: the duration the container announces (to notice streams that end early), or ``None``.
        frame_period: how long a decoded frame stays on screen.
        declared: the stream's declared duration and whether it is its own (`sources.declared_duration`): a stream
            that ends well before it (`sources.is_cut_short`) is truncated or damaged.
        allow_partial: decode such a stream as far as it goes, with a warning, instead of raising
            `MediaDecodeError`.
    """
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

    convert.expect(_expected_rows(sampling, step, limit, max_frames, clips, clip_duration, header_duration))
    count = 0
    last = None
    reached_eof = True
    frames = frames(sampler.needs)
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
    # where the stream ends: "clip_ends" stops decoding after its last clip, laid over the stream's length (the last
    # packet's time when the header has no stream duration), so that length shows a cut-short file too
    stream_end = decoded_end
    if stream_end is None and sampling == "clip_ends":
        stream_end = clip_duration + frame_period(last)
    partial = stream_end is not None and is_cut_short(*declared, stream_end, frame_period(last))
    if partial:
        message = (
            f"{name}: the video frames stop at {float(stream_end):.3f} s but the header declares "
            f"{float(declared[0]):.3f} s: the file is truncated or damaged"
        )
        if not allow_partial:
            raise MediaDecodeError(f"{message}. Pass allow_partial=True to use the decoded part.")
        logger.warning(
            "%s; %s (allow_partial=True).", message,
            {"fps": "sampling the decoded part only", "uniform": "the last frame fills the later targets",
             "clip_ends": "sampling the clips of the decoded part"}[sampling],
        )
    if sampling in ("fps", "uniform"):
        if reached_eof:
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
    return SampledFrames(
        frames=arrays,
        source_frame_indices=indices,
        timestamps=times,
        sample_times=sample_times,
        clip_timepoints=clip_array,
        truncated=bool(cut),
        duration=duration,
        partial=partial,
    )


def _expected_rows(
    sampling: str,
    step: Fraction,
    limit: Fraction | None,
    max_frames: int | None,
    clips: list | None,
    clip_duration: Fraction | None,
    header_duration: Fraction | None,
) -> int | None:
    """An upper bound of the frames the sampler will convert (each kept decoded frame once), or ``None``."""
    if sampling == "clip_ends":
        expected = 2 * len(clips)
    elif sampling == "uniform":
        expected = max_frames
    else:
        end = header_duration if limit is None else limit if header_duration is None else min(header_duration, limit)
        if end is None:
            return max_frames
        expected = math.ceil(end / step)  # targets k * step < end (a stream running past its header grows the array)
    return expected if max_frames is None else min(expected, max_frames)
