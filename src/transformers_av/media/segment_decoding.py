"""Decode one video on several cores: segments cut at IDR frames, decoded side by side, their frames handed on in order.

An H.264 / HEVC IDR frame starts a closed group of pictures: no frame after it in decoding order refers to a frame
before it, and every frame decoded before it is shown before it. Cut at IDR frames, a stream is a chain of segments
that decode independently, each giving exactly the frames a decoder running through the whole stream gives there.
FFmpeg's own threads work inside one segment (frame threading: a frame waits for the rows of the frames it refers to;
on the benchmark's 720p H.264, 3 threads on 2 cores run at 1.2x one thread). Decoding whole segments side by side has
no such waits: one single-threaded decoder per core runs at close to one core each.

`plan_segments` picks the cut points: keyframes from the container's index (mp4 / mov; containers without an index
are decoded by one decoder), at least `MIN_SEGMENT_SECONDS` apart, each checked to be an IDR frame by reading its
packet's NAL unit types (open-GOP files, whose keyframes are recovery points, are never cut there). `decode_segments`
runs `decode_workers()` threads, each with its own container and decoder: a thread takes the next segment, seeks to its
first packet, decodes its packets with `frame_skipping.decode_needed_frames` (skipping what the sampler will not keep)
and drains the decoder; only the frames the sampler may keep are held, at most `MAX_BUFFERED_BYTES` of them ahead of
the segment being read. The caller gets ``(index, frame)`` in presentation order, with the indices of a full decode.

Each segment is checked as it ends: it must give one frame per packet, in increasing presentation order, after the
previous segment's. A segment that does not (a decoder that drops or reorders frames after a seek) raises
`SegmentsDisagree`, and `video.load_video` decodes the file again with one decoder; ``tests/media/test_segment_decoding.py``
checks the frames against one decoder's, frame by frame. An FFmpeg error in a segment is raised after the frames
decoded before it, as one decoder would.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .background import release_freed_memory
from .frame_sampling import FrameNeed
from .frame_skipping import decode_needed_frames

__all__ = [
    "MAX_BUFFERED_BYTES",
    "MAX_DECODE_WORKERS",
    "MIN_SEGMENT_SECONDS",
    "SegmentPlan",
    "SegmentsDisagree",
    "decode_segments",
    "decode_workers",
    "is_idr_packet",
    "plan_segments",
]

#: Decoder threads at most (each holds its own decoder and reference frames).
MAX_DECODE_WORKERS = 4

#: A segment spans at least this much of the stream: every segment costs a seek and a decoder restart.
MIN_SEGMENT_SECONDS = 4

#: Decoded frames held ahead of the segment being read, in bytes of their planes; a thread whose segment is further
#: ahead waits for the reader (the thread decoding the segment being read never waits).
MAX_BUFFERED_BYTES = 128 * 2**20

#: NAL unit types of an IDR picture: H.264 5; HEVC 19 (IDR_W_RADL) and 20 (IDR_N_LP).
_IDR_NAL_TYPES = {"h264": frozenset({5}), "hevc": frozenset({19, 20})}


class SegmentsDisagree(RuntimeError):
    """A segment decoded on its own did not give the frames one decoder gives there (see the module docstring)."""


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def decode_workers() -> int:
    """How many segments are decoded at once: the CPUs this process may use, at most `MAX_DECODE_WORKERS`."""
    return max(1, min(MAX_DECODE_WORKERS, _usable_cpus()))


def _nal_units(data: bytes, length_size: int | None) -> Iterator[int]:
    """The first header byte of each NAL unit of a packet: length-prefixed (mp4 / mkv: ``length_size`` bytes) or
    Annex B (``length_size=None``: start codes)."""
    if length_size is not None:
        at = 0
        while at + length_size < len(data):
            size = int.from_bytes(data[at : at + length_size], "big")
            if size <= 0:
                return
            yield data[at + length_size]
            at += length_size + size
        return
    at = data.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(data):
        yield data[at + 3]
        at = data.find(b"\x00\x00\x01", at + 3)


def _length_size(codec: str, extradata: bytes | None) -> int | None:
    """Bytes of the NAL unit length prefix from the codec's configuration record, or None for Annex B."""
    if not extradata or extradata[0] != 1:  # Annex B streams carry start codes (their extradata, if any, too)
        return None
    if codec == "h264" and len(extradata) > 4:  # avcC: lengthSizeMinusOne in byte 4
        return (extradata[4] & 3) + 1
    if codec == "hevc" and len(extradata) > 21:  # hvcC: lengthSizeMinusOne in byte 21
        return (extradata[21] & 3) + 1
    return None


def is_idr_packet(codec: str, data: bytes, extradata: bytes | None) -> bool:
    """Whether an H.264 / HEVC packet holds an IDR picture: every picture slice in it is an IDR slice."""
    idr = _IDR_NAL_TYPES[codec]
    length_size = _length_size(codec, extradata)
    slices = []
    for header in _nal_units(data, length_size):
        if codec == "h264":
            nal_type = header & 0x1F
            if nal_type in (1, 5):  # picture slices (partitions 2-4 never come with an IDR)
                slices.append(nal_type)
        else:
            nal_type = (header >> 1) & 0x3F
            if nal_type < 32:  # VCL NAL units
                slices.append(nal_type)
    return bool(slices) and all(nal_type in idr for nal_type in slices)


@dataclass(frozen=True)
class SegmentPlan:
    """Where the segments start: the decoding timestamps (stream time base) of their first packets, IDR keyframes
    (the first is the stream's first keyframe, but segment 0 is read from the stream's first packet). Segment ``k``
    runs up to segment ``k + 1``'s first packet, the last one to the end of the stream."""

    starts: tuple[int, ...]
    workers: int
    threads_per_decoder: int = 1

    def __len__(self) -> int:
        return len(self.starts)


def plan_segments(
    open_container: Callable[[], Any],
    stream: Any,
    *,
    limit_seconds: Fraction | None = None,
    workers: int | None = None,
    min_seconds: float | None = None,
) -> SegmentPlan | None:
    """Cut points for `decode_segments`, or ``None`` when the stream is better decoded by one decoder (one CPU, a codec
    without IDR frames, no index, fewer than two segments).

    Args:
        open_container: opens a fresh PyAV container on the same file (the candidates are checked by seeking in it).
        stream: the video stream, in an open container.
        limit_seconds: only the first ``limit_seconds`` of the stream will be sampled: no segment starts much later.
        workers: decoder threads (default `decode_workers()`).
        min_seconds: the shortest segment (default `MIN_SEGMENT_SECONDS`).
    """
    workers = decode_workers() if workers is None else workers
    min_seconds = MIN_SEGMENT_SECONDS if min_seconds is None else min_seconds
    codec = stream.codec_context.name
    if workers < 2 or codec not in _IDR_NAL_TYPES or not stream.time_base:
        return None
    time_base = Fraction(stream.time_base)
    try:
        entries = stream.index_entries
        keyframes = sorted({entry.timestamp for entry in entries if entry.is_keyframe})
    except (AttributeError, TypeError):  # pragma: no cover - PyAV without index access
        return None
    if len(keyframes) < 2:
        return None
    origin = keyframes[0]
    candidates = []
    last = origin
    for timestamp in keyframes[1:]:
        if (timestamp - last) * time_base < min_seconds:
            continue
        candidates.append(timestamp)
        last = timestamp
        if limit_seconds is not None and (timestamp - origin) * time_base > limit_seconds + 1:
            break  # this segment starts past every frame the sampler can want
    if not candidates:
        return None
    starts = [origin]
    container = open_container()
    try:
        probe = container.streams.video[stream.index]
        extradata = probe.codec_context.extradata
        for timestamp in candidates:
            packet = _first_packet(container, probe, timestamp)
            if packet is not None and is_idr_packet(codec, bytes(packet), extradata):
                starts.append(timestamp)
    finally:
        container.close()
    if len(starts) < 2:
        return None
    return SegmentPlan(tuple(starts), workers, threads_per_decoder=max(1, _usable_cpus() // workers))


def _seek_to(container: Any, stream: Any, dts: int) -> Iterator[Any]:
    """The stream's packets from the keyframe packet whose decoding timestamp is ``dts`` on (empty if the seek does
    not find it: then the stream cannot be cut there)."""
    container.seek(dts, stream=stream, backward=True, any_frame=False)
    packets = container.demux(stream)
    for packet in packets:
        if packet.dts is None:
            continue
        if packet.dts < dts:  # seeking lands on a keyframe at or before the target
            continue
        if packet.dts == dts and packet.is_keyframe:
            yield packet
            yield from packets
        return


def _first_packet(container: Any, stream: Any, dts: int) -> Any | None:
    return next(_seek_to(container, stream, dts), None)


class _Drain:
    """The empty packet that ends a segment: it drains the decoder (``codec.decode(None)``)."""

    pts = None
    dts = None

    def __init__(self, codec: Any):
        self.codec = codec

    def decode(self) -> list:
        return self.codec.decode(None)


@dataclass
class _Segment:
    frames: deque = field(default_factory=deque)  # (index in the segment, frame, bytes)
    done: bool = False
    frame_count: int = 0  # frames of the segment's packets, skipped ones included (known when done)
    error: BaseException | None = None


def _frame_bytes(frame: Any) -> int:
    return sum(plane.buffer_size for plane in frame.planes)


class _SegmentDecoders:
    """The decoder threads and what they hand over (one lock, one condition)."""

    def __init__(self, plan: SegmentPlan, open_container, stream_index: int, needs: FrameNeed | None,
                 decoder_options: dict[str, str]):
        self.plan, self.open_container, self.stream_index = plan, open_container, stream_index
        self.needs, self.decoder_options = needs, decoder_options
        self.segments = [_Segment() for _ in plan.starts]
        self.condition = threading.Condition()
        self.next_segment = 0  # the next segment a thread takes
        self.head = 0  # the segment being read
        self.buffered = 0  # bytes of frames held for segments after the head
        self.stopped = False
        self.threads = [
            threading.Thread(target=self._work, name=f"transformers-av-decode-{i}", daemon=True)
            for i in range(min(plan.workers, len(plan.starts)))
        ]
        for thread in self.threads:
            thread.start()

    # -- decoder threads --------------------------------------------------------------------------------------------

    def _take(self) -> int | None:
        with self.condition:
            if self.stopped or self.next_segment >= len(self.segments):
                return None
            self.next_segment += 1
            return self.next_segment - 1

    def _put(self, k: int, index: int, frame: Any) -> bool:
        """Hold a frame of segment ``k`` (waiting while too much is held ahead of the reader); False once stopped."""
        size = _frame_bytes(frame)
        with self.condition:
            while not self.stopped and k != self.head and self.buffered + size > MAX_BUFFERED_BYTES:
                self.condition.wait()
            if self.stopped:
                return False
            if k != self.head:
                self.buffered += size
            self.segments[k].frames.append((index, frame, size if k != self.head else 0))
            self.condition.notify_all()
            return True

    def _finish(self, k: int, frame_count: int = 0, error: BaseException | None = None) -> None:
        with self.condition:
            segment = self.segments[k]
            segment.done, segment.frame_count, segment.error = True, frame_count, error
            self.condition.notify_all()

    def _work(self) -> None:
        try:
            container = self.open_container()
        except BaseException as error:  # noqa: BLE001 - handed to the reader (every segment, so none is left waiting)
            while (k := self._take()) is not None:
                self._finish(k, error=error)
            return
        try:
            stream = container.streams.video[self.stream_index]
            if self.plan.threads_per_decoder > 1:  # more CPUs than decoders: FFmpeg's threads inside each
                stream.thread_type = "AUTO"
                stream.thread_count = self.plan.threads_per_decoder
            else:
                stream.thread_type = "NONE"
            if self.decoder_options:
                stream.codec_context.options = {**stream.codec_context.options, **self.decoder_options}
            while (k := self._take()) is not None:
                try:
                    self._decode(k, container, stream)
                except BaseException as error:  # noqa: BLE001 - handed to the reader, raised in its thread
                    self._finish(k, error=error)
        finally:
            container.close()
            release_freed_memory()  # this thread's malloc arena (the decoder's buffers) back to the system

    def _decode(self, k: int, container: Any, stream: Any) -> None:
        codec = stream.codec_context
        codec.flush_buffers()
        end = self.plan.starts[k + 1] if k + 1 < len(self.plan.starts) else None
        packet_count = 0

        # segment 0 is read from the stream's first packet, like one decoder reads it (a fresh container: the first
        # segment taken is 0); the others from their IDR keyframe on
        source = container.demux(stream) if k == 0 else _seek_to(container, stream, self.plan.starts[k])

        def packets() -> Iterator[Any]:
            nonlocal packet_count
            for packet in source:
                if end is not None and packet.dts is not None and packet.dts >= end:
                    break
                if not packet.size:  # the demuxer's final empty packet: the decoder is drained below
                    continue
                packet_count += 1
                yield packet
            yield _Drain(codec)

        frames = decode_needed_frames(packets(), stream, self.needs)
        while True:
            try:
                index, frame = next(frames)
            except StopIteration as stop:
                frame_count = stop.value
                break
            if not self._put(k, index, frame):
                return
        if packet_count == 0 or frame_count != packet_count:
            raise SegmentsDisagree(
                f"segment {k} holds {packet_count} packet(s) but its decoder gave {frame_count} frame(s)"
            )
        self._finish(k, frame_count)

    # -- the reader -------------------------------------------------------------------------------------------------

    def read(self) -> Iterator[tuple[int, Any]]:
        """``(index, frame)`` of every segment in order, indices counted from the stream's first frame."""
        offset = 0
        last_pts = None
        for k, segment in enumerate(self.segments):
            with self.condition:
                self.head = k
                self.buffered -= sum(size for _, _, size in segment.frames)  # the head's frames no longer count
                segment.frames = deque((index, frame, 0) for index, frame, _ in segment.frames)
                self.condition.notify_all()
            while True:
                with self.condition:
                    while not segment.frames and not segment.done:
                        self.condition.wait()
                    if not segment.frames:
                        break
                    index, frame, _ = segment.frames.popleft()
                if frame.pts is not None:
                    if last_pts is not None and frame.pts <= last_pts:
                        raise SegmentsDisagree(f"segment {k} gave a frame shown before the previous segment's last")
                    last_pts = frame.pts
                yield offset + index, frame
            if segment.error is not None:
                raise segment.error
            offset += segment.frame_count

    def close(self) -> None:
        with self.condition:
            self.stopped = True
            self.condition.notify_all()
        for thread in self.threads:
            thread.join()
        self.segments = []


def decode_segments(
    plan: SegmentPlan,
    open_container: Callable[[], Any],
    stream_index: int,
    needs: FrameNeed | None,
    decoder_options: dict[str, str] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Like `frame_skipping.decode_needed_frames` over the whole stream, decoding ``plan``'s segments side by side.

    Args:
        plan: from `plan_segments`.
        open_container: opens a fresh PyAV container on the file (one per thread).
        stream_index: the video stream's index in the container.
        needs: the sampler's `FrameNeed` (or ``None``: every frame).
        decoder_options: FFmpeg decoder options for every decoder (``decode="fast"``'s).

    Yields:
        ``(index, frame)`` in presentation order, as `decode_needed_frames` would over the whole stream.

    Raises:
        SegmentsDisagree: a segment did not decode as it would within the whole stream (decode it with one decoder).
    """
    decoders = _SegmentDecoders(plan, open_container, stream_index, needs, decoder_options or {})
    try:
        yield from decoders.read()
    finally:
        decoders.close()
