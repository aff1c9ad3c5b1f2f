"""Decode only the frames a sampler may keep, and get exactly the frames a full decode gives.

Sampling 2 frames per second from a 30 fps video keeps one frame in 15, yet a decoder must decode every frame that
another one is predicted from. A *non-reference* frame (in H.264 / HEVC with B-frames, most B-frames; in MPEG-2 /
MPEG-4 part 2, every B-frame) is predicted from others but nothing is predicted from it: not decoding it changes no
other frame. So, packet by packet, a non-reference frame that the sampler will not keep (`frame_sampling.FrameNeed`,
asked with the presentation times of the frames around it) is handed to the decoder with
``skip_frame = "NONREF"`` (FFmpeg's ``AVDISCARD_NONREF``), which drops it after reading its header; every other packet
is decoded as usual. The decoder -- not this module -- tells which frames are non-reference: a reference frame handed
over with ``"NONREF"`` is decoded anyway (other frames need it) but not handed to the sampler, so the kept frames are
bit-identical to those of a full decode (``tests/media/test_frame_skipping.py`` checks it frame by frame). On the
benchmark's 720p30 H.264 file (x264 defaults: B-frames, b-pyramid) 1,458 of 3,600 frames are skipped this way.

The times around a packet come from a window of the next `LOOKAHEAD_PACKETS` packets (demuxed ahead, in decoding
order): enough for any B-frame reordering (H.264 and HEVC reorder at most 16 frames). A neighbour not seen yet makes
`FrameNeed` err towards decoding (see its contract), so a deeper reordering costs speed, never exactness.

Frame indices count the skipped frames too: they are the indices a full decode gives (presentation order).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Generator, Iterable
from fractions import Fraction
from typing import Any

from .frame_sampling import FrameNeed

__all__ = ["LOOKAHEAD_PACKETS", "SKIPPABLE_CODECS", "decode_needed_frames"]

#: Decoders that honour ``skip_frame="NONREF"`` frame by frame, dropping only frames nothing is predicted from
#: (FFmpeg's h264 / hevc decoders test the NAL unit's reference flag; MPEG-1/2 and MPEG-4 part 2 never predict from
#: B-frames). Other codecs are decoded in full.
SKIPPABLE_CODECS = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})

#: Packets demuxed ahead of the one being decoded, to know the presentation times around it.
LOOKAHEAD_PACKETS = 32

#: Presentation times remembered (the oldest are forgotten past this many; a forgotten neighbour only means "decode").
_REMEMBERED_TIMES = 8 * LOOKAHEAD_PACKETS


def decode_needed_frames(
    packets: Iterable[Any], stream: Any, needs: FrameNeed | None
) -> Generator[tuple[int, Any], None, int]:
    """The frames of ``stream`` that ``needs`` says the sampler may keep, in presentation order, each with its index
    among all the frames of ``packets``; non-reference frames it will not keep are not decoded at all.

    Args:
        packets: the stream's packets in decoding order, ending with an empty one (no ``pts``) that drains the
            decoder -- ``container.demux(stream)`` gives exactly that.
        stream: the PyAV video stream they belong to (its codec context decodes them).
        needs: the sampler's `FrameNeed` (times in seconds since the stream start), or ``None`` to decode and
            return every frame.

    Yields:
        ``(index, frame)``: the index a full decode of ``packets`` would give the frame, and the PyAV ``VideoFrame``.
        A reference frame the sampler will not keep is decoded (others need it) but not yielded.

    Returns:
        how many frames ``packets`` hold: those yielded, decoded but not yielded, and skipped.
    """
    codec = stream.codec_context
    if needs is None or codec.name not in SKIPPABLE_CODECS or not stream.time_base:
        count = 0
        for packet in packets:
            for frame in packet.decode():
                yield count, frame
                count += 1
        return count

    time_base = Fraction(stream.time_base)
    start_pts = stream.start_time or 0

    def seconds(pts: int | None) -> Fraction | None:
        return None if pts is None else (pts - start_pts) * time_base

    packets = iter(packets)
    window: deque = deque()  # demuxed, not yet decoded (decoding order)
    seen: list[int] = []  # sorted presentation timestamps of the packets demuxed so far (the oldest forgotten)
    exhausted = False
    skipping = False  # the decoder's current skip_frame setting
    skipped: list[int] = []  # sorted pts of packets handed over with "NONREF" that the output has not passed yet
    skipped_before = decoded = 0
    while True:
        while not exhausted and len(window) <= LOOKAHEAD_PACKETS:
            packet = next(packets, None)
            if packet is None:
                exhausted = True
                break
            if packet.pts is not None:
                bisect.insort(seen, packet.pts)
                if len(seen) > _REMEMBERED_TIMES:
                    del seen[: len(seen) // 2]
            window.append(packet)
        if not window:
            return decoded + skipped_before + len(skipped)
        packet = window.popleft()
        needed = True
        # (the last, empty packet has no pts: it drains the decoder.) Nothing is skipped before the decoder's first
        # frame: frames it would drop anyway (those before the first keyframe it can decode from) must not be counted
        # in the indices as skipped ones
        if packet.pts is not None and decoded > 0:
            below = bisect.bisect_left(seen, packet.pts)
            above = bisect.bisect_right(seen, packet.pts)
            before = seconds(seen[below - 1]) if below > 0 else None
            after = seconds(seen[above]) if above < len(seen) else None
            needed = needs(seconds(packet.pts), before, after)
        if needed == skipping:
            codec.skip_frame = "DEFAULT" if needed else "NONREF"
            skipping = not needed
        if not needed:
            bisect.insort(skipped, packet.pts)
        for frame in packet.decode():
            wanted = True
            if frame.pts is not None:
                # skipped frames shown before this one count in its index; a skipped packet that comes out
                # decoded after all (a reference frame) counts as decoded, and is not one the sampler keeps
                passed = bisect.bisect_left(skipped, frame.pts)
                skipped_before += passed
                del skipped[:passed]
                if skipped and skipped[0] == frame.pts:
                    del skipped[0]
                    wanted = False
            if wanted:
                yield decoded + skipped_before, frame
            decoded += 1
