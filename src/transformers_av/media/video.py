"""Decode and sample a video: `load_video` -> `VideoClip`, sampled RGB frames with their timestamps.

Decoding **streams**: frames are decoded one after another and only the sampled ones are kept (converted to RGB,
optionally downscaled right away with ``size=``, then transformed or written into their row by a `FrameWriter`; see
`frame_conversion`). Non-reference frames that the sampler will not keep are not decoded at all (`frame_skipping`),
and a file that can be cut at IDR frames (H.264 / HEVC in mp4 / mov, several CPUs) is decoded by several decoders at
once, one segment each (`segment_decoding`): the kept frames stay bit-identical to one decoder's full decode.
``decode="fast"`` trades exactness for speed (see `load_video`). Three samplers (described in `frame_sampling`):
``sampling="fps"`` (default, one frame every ``1 / fps`` s), ``"clip_ends"`` (the official video-SALMONN / FAVOR
sampler: first and last frame of each 1 s clip, at most 60 clips) and ``"uniform"`` (``num_frames`` frames spread over
the whole clip, as in the Audio-Visual LLM).

Durations. ``"clip_ends"`` computes the duration ``D`` exactly as pytorchvideo's ``EncodedVideoPyAV`` does
(``(stream.duration - stream.start_time) * time_base``; containers without a stream duration -- e.g. mkv / webm -- use
the presentation time of the LAST frame, which is one frame shorter: an official quirk, reproduced); on a lossless
video the frames are bit-identical to the official ones (RGB conversion is PyAV's ``frame.to_ndarray(format="rgb24")``
= pytorchvideo's ``frame.to_rgb().to_ndarray()``). ``"uniform"`` uses the header duration (stream, else container) or,
without one, the presentation time of the last packet. A file whose duration is needed but is neither in the header
nor readable from its packets raises `MediaDecodeError`.

Length policy. ``max_seconds`` keeps the FIRST ``max_seconds`` of a video (decoding stops there) and logs a warning
when something is cut; nothing else is dropped silently. Its default keeps the whole video (``"clip_ends"``: the
official 60 s). The kept frames are written into one array sized before the first frame is stored (see
`frame_conversion`), so a video that will need more than `frame_conversion.LARGE_FRAMES_BYTES` is announced by a
warning giving the figure before it is decoded; a progress bar appears when decoding takes more than a few seconds.

Orientation. Frames come out upright: the stream's display matrix (what phones write), or its ``rotate`` tag, is
applied to each kept frame (`orientation`); ``size=`` and ``source_size`` are the upright sizes.

Errors (all name the input): a missing file raises ``FileNotFoundError``; a file FFmpeg cannot read, a corrupt or
truncated container, or a video with no decodable frame raises `MediaDecodeError`; a file without a video track raises
`NoVideoTrackError` (both ``ValueError`` subclasses); an unsupported input type raises ``TypeError``; bad arguments
(``fps <= 0``, ``sampling="uniform"`` without ``num_frames``, ...) raise ``ValueError``.

Truncated files: an mp4 / mov cut short usually loses its index (the ``moov`` atom is written at the end), so it
cannot be opened -> `MediaDecodeError`. An error raised by FFmpeg while demuxing / decoding also becomes a
`MediaDecodeError` (with the number of frames decoded before it). A container that simply ends early without an error
(mkv / webm / faststart mp4 cut short) is caught by comparing where its frames stop with the duration its header
declares (`sources.is_cut_short`): `MediaDecodeError` naming both durations. With ``allow_partial=True`` (both cases)
the frames that can be read are used, with a warning: ``sampling="fps"`` samples only up to the last decoded frame,
``"uniform"`` keeps its targets over the header duration (those past the last decoded frame take that frame), while
``"clip_ends"`` still raises `MediaDecodeError` when a clip of the header duration lies beyond the decoded frames (the
official code fails there too: "No clip found").

PyAV (and Pillow, for in-memory frames given as images or resized) are imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .arguments import optional_count, optional_positive, positive_fraction
from .errors import MediaDecodeError
from .frame_conversion import FrameConverter, FrameWriter
from .frame_skipping import decode_needed_frames
from .segment_decoding import SegmentsDisagree, decode_segments, plan_segments
from .frame_sampling import (
    OFFICIAL_CLIP_SECONDS,
    OFFICIAL_MAX_CLIPS,
    FrameNeed,
    SampledFrames,
    TimedFrame,
    sample_frames,
)
from .image import load_image, uint8_hint
from .orientation import frame_orientation
from .progress import DecodeProgress
from .remote import downloaded
from .errors import describe_source
from .sources import ContainerOpener, declared_duration, first_stream, import_av, is_encoded, is_torch_tensor

logger = logging.getLogger(__name__)

__all__ = ["DECODE_MODES", "VideoClip", "load_video"]

#: ``load_video(decode=...)``: ``"exact"`` frames as FFmpeg decodes them, or ``"fast"`` (see `load_video`).
DECODE_MODES = ("exact", "fast")

#: FFmpeg decoder options of ``decode="fast"``: no deblocking (loop filter) in any frame.
FAST_DECODER_OPTIONS = {"skip_loop_filter": "all"}


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
        source_size: ``(height, width)`` of the source frames as displayed (upright: a portrait phone clip stored
            as landscape with a 90 degree display matrix reports its portrait size; ``frames`` differ when
            ``size=`` was given).
        source: a description of the input (path) for messages.
        partial: ``True`` when the file ended well before its declared duration and ``allow_partial=True`` let the
            decoded part through.
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
    partial: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def __len__(self) -> int:
        return self.num_frames


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
    frame_writer: FrameWriter | None = None,
    decode: str = "exact",
    allow_partial: bool = False,
) -> VideoClip:
    """Decode and sample a video.

    Args:
        source: a path (mp4 / mkv / webm / avi / mov / anything FFmpeg reads), an ``http(s)://`` URL (downloaded
            first, see `remote`), a seekable binary file-like object,
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
            many full-resolution frames are held at once).
        frame_writer: a `frame_conversion.FrameWriter`: writes each kept frame's result straight into its row of
            ``frames`` (no per-frame result copied, no batch stacked; what the processors use). Give at most one of
            ``frame_transform``, ``frames_transform`` and ``frame_writer``.
        decode: ``"exact"`` (default): every frame as FFmpeg decodes it (non-reference frames the sampler will not
            keep are not decoded, which changes nothing: `frame_skipping`). ``"fast"``: the same frames, decoded
            with FFmpeg's ``skip_loop_filter="all"`` (H.264 / HEVC deblocking off: ~10% less decoding on the
            benchmark's 720p H.264; the pixels differ slightly, errors growing until the next keyframe); with
            ``size=``, the swscale resize is the model's resize. The README ("### Measured") gives what it changes.
        allow_partial: a file whose frames stop more than half a second (or 3 frames) before the duration its
            header declares is truncated or damaged: by default that raises `MediaDecodeError` (naming both
            durations); ``True`` decodes the part that is there, with a warning, and sets ``VideoClip.partial``.

    Returns:
        a `VideoClip`.

    Raises:
        MediaDecodeError: unreadable / corrupt / truncated file, no decodable frame, or (``"clip_ends"`` /
            ``"uniform"``) a duration that is neither in the header nor readable from the packets.

    Example:
        the Audio-Visual LLM sampler, 32 frames over the whole clip::

            clip = load_video("video.mp4", sampling="uniform", num_frames=32)
    """
    if sampling not in ("fps", "clip_ends", "uniform"):
        raise ValueError(f"`sampling` must be 'fps', 'clip_ends' or 'uniform', got {sampling!r}")
    step = 1 / positive_fraction(fps, "fps")
    max_seconds_f = optional_positive(max_seconds, "max_seconds")
    max_frames = optional_count(max_frames, "max_frames")
    if sampling == "uniform":
        if num_frames is None:
            raise ValueError(
                "sampling='uniform' needs `num_frames` (how many frames to spread over the clip, e.g. 32), got None"
            )
        num_frames = optional_count(num_frames, "num_frames")
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

    if decode not in DECODE_MODES:
        raise ValueError(f"`decode` must be one of {', '.join(map(repr, DECODE_MODES))}, got {decode!r}")

    def converter(name: str) -> FrameConverter:
        return FrameConverter(
            size, frame_transform, frames_transform, transform_batch_size, name=name, frame_writer=frame_writer
        )

    if is_encoded(source):
        with downloaded(source) as local:
            return _load_video_file(
                local, sampling, step, limit, max_frames, converter, allow_partial, describe_source(source), decode
            )
    if not (isinstance(source, (np.ndarray, list, tuple)) or is_torch_tensor(source)):
        raise TypeError(
            f"load_video expects a path, a file-like object, bytes, a (T, H, W, 3) uint8 array, a torch tensor or a "
            f"list of images, got {type(source).__name__}"
        )
    return _load_video_frames(source, sampling, step, limit, max_frames, converter, source_fps)


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


def _clip(
    sampled: SampledFrames,
    convert: FrameConverter,
    *,
    sampling: str,
    rate: Fraction | None,
    source_size: tuple[int, int],
    name: str,
) -> VideoClip:
    return VideoClip(
        frames=convert.stack(sampled.frames),
        timestamps=np.array(sampled.timestamps, dtype=np.float64),
        fps=float(rate) if rate else float("nan"),
        duration=sampled.duration,
        source_frame_indices=np.array(sampled.source_frame_indices, dtype=np.int64),
        sampling=sampling,
        sample_times=np.array(sampled.sample_times, dtype=np.float64),
        clip_timepoints=sampled.clip_timepoints,
        truncated=sampled.truncated,
        source_size=(int(source_size[0]), int(source_size[1])),
        source=name,
        partial=sampled.partial,
    )


# --------------------------------------------------------------------------------------------------------------------
# in-memory frames
# --------------------------------------------------------------------------------------------------------------------


def _load_video_frames(source, sampling, step, limit, max_frames, converter, source_fps) -> VideoClip:
    name = f"<{type(source).__name__} video>"
    convert = converter(name)
    frames = _memory_frames(source)
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
        convert.expect(len(keep))
        stamps = np.array([float(times[i]) for i in keep], dtype=np.float64)
        return VideoClip(
            frames=convert.stack([convert(frames[i]) for i in keep]),
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
    rate = 1 / step if source_fps is None else positive_fraction(source_fps, "source_fps")
    duration = count / rate
    sampled = sample_frames(
        lambda needs: ((i, i / rate, frames[i]) for i in range(count)), sampling=sampling, step=step, limit=limit,
        max_frames=max_frames, convert=convert, name=name, clip_duration=duration, header_duration=duration,
        frame_period=lambda item: 1 / rate,
    )
    return _clip(sampled, convert, sampling=sampling, rate=rate, source_size=(height, width), name=name)


def _memory_frames(source: Any) -> np.ndarray | list[np.ndarray]:
    """In-memory video -> ``(T, H, W, 3)`` uint8 array (or list of ``(H, W, 3)``)."""
    if is_torch_tensor(source):
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
            raise TypeError(f"Video frames must be uint8 RGB, got dtype {source.dtype}{uint8_hint(source.dtype)}")
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


# --------------------------------------------------------------------------------------------------------------------
# files and buffers (PyAV)
# --------------------------------------------------------------------------------------------------------------------


def _load_video_file(
    source, sampling, step, limit, max_frames, converter, allow_partial, name, decode, segments: bool = True
) -> VideoClip:
    opener = ContainerOpener(source, name)
    name = opener.name
    convert = converter(name)
    container = opener.open()
    options = FAST_DECODER_OPTIONS if decode == "fast" else {}
    try:
        stream = first_stream(container, "video", name)
        stream.thread_type = "AUTO"
        if options:
            stream.codec_context.options = {**stream.codec_context.options, **options}
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
        expected_seconds = header_duration if limit is None else limit if header_duration is None else min(
            header_duration, limit
        )
        # several decoders at once, one per segment between IDR frames (a file with such frames, several CPUs)
        plan = plan_segments(opener.open, stream, limit_seconds=limit) if segments and opener.is_file else None

        def frames(needs: FrameNeed) -> Iterator[tuple[int, Any]]:
            if plan is None:
                return decode_needed_frames(container.demux(stream), stream, needs)
            return decode_segments(plan, opener.open, stream.index, needs, options)

        sampled = sample_frames(
            lambda needs: _decode_video(container, stream, name, rate, convert, expected_seconds, allow_partial,
                                        frames(needs)),
            sampling=sampling,
            step=step, limit=limit, max_frames=max_frames, convert=convert, name=name, clip_duration=clip_duration,
            header_duration=header_duration, frame_period=lambda item: _frame_duration(item[2], stream, rate),
            declared=declared_duration(container, stream), allow_partial=allow_partial,
        )
        source_size = convert.orientation.displayed_size(stream.codec_context.height, stream.codec_context.width)
        return _clip(sampled, convert, sampling=sampling, rate=rate, source_size=source_size, name=name)
    except SegmentsDisagree as error:
        logger.info("%s: %s; decoding it again with one decoder.", name, error)
    finally:
        container.close()
    return _load_video_file(
        source, sampling, step, limit, max_frames, converter, allow_partial, name, decode, segments=False
    )


def _stream_rate(stream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _decode_video(
    container,
    stream,
    name: str,
    rate: Fraction | None,
    convert: FrameConverter,
    expected_seconds: Fraction | None,
    allow_partial: bool,
    decoded: Iterator[tuple[int, Any]],
) -> Iterator[TimedFrame]:
    """The ``decoded`` frames of `stream` -- those the sampler may keep, in presentation order, with their indices
    (`frame_skipping`, `segment_decoding`) -- with their times as exact fractions of a second.

    The first frame tells `convert` which way up the video is shown (its display matrix, else the stream's ``rotate``
    tag); a progress bar appears when decoding takes more than a few seconds. An FFmpeg error part-way raises
    `MediaDecodeError`, or -- with `allow_partial` -- ends the frames there (a warning says so)."""
    av = import_av()
    time_base = Fraction(stream.time_base) if stream.time_base else None
    start_pts = stream.start_time or 0
    progress = DecodeProgress(name, None if expected_seconds is None else float(expected_seconds), "video")
    count = 0  # frames decoded
    try:
        for index, frame in decoded:
            if frame.pts is not None and time_base is not None:
                time = (frame.pts - start_pts) * time_base
            else:  # no timestamps at all: assume a constant frame rate
                time = Fraction(index) / (rate or 1)
            if count == 0:
                convert.orientation = frame_orientation(frame, stream.metadata.get("rotate"), name)
            progress.advance_to(time)
            yield index, time, frame
            count += 1
    except av.FFmpegError as error:
        if not allow_partial or count == 0:
            raise MediaDecodeError(
                f"Decoding the video of {name} failed after {count} frame(s)"
                + (" (pass allow_partial=True to use them)" if count else "") + f": {error}"
            ) from error
        logger.warning("%s: decoding stopped after %d frame(s): %s; keeping them (allow_partial=True).",
                       name, count, error)
    finally:
        decoded.close()  # stops the segment decoders' threads now, when the sampler stops early
        progress.close()


def _frame_duration(frame, stream, rate: Fraction | None) -> Fraction:
    if getattr(frame, "duration", None) and stream.time_base:
        return frame.duration * Fraction(stream.time_base)
    return 1 / rate if rate else Fraction(0)


def _last_packet_time(opener: ContainerOpener, container, name: str) -> Fraction:
    """The presentation time of the last video packet (demuxed, not decoded): the duration of a stream without one."""
    av = import_av()
    # a buffer / file object is shared with the open `container`: its read position is restored after the probe
    shared = opener.is_seekable_buffer
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
