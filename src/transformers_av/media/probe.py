"""Checking media files before a long job reads them: `probe_media` for one file, `find_bad_media` for the files of
many rows (with a progress bar), so that a training or evaluation run never dies part-way on a file that could have
been checked up front.

A probe opens the file, finds the stream its role needs (a video stream for ``"video"``, an audio stream for
``"audio"``), reads the duration the header declares, demuxes every packet of that stream (no decoding: the cost of
reading the file once) to find where the stream really ends, and decodes its first frame. It catches missing files,
non-media, empty or codec-less streams, and files cut short (`sources.is_cut_short`: the packets stop well before the
declared duration). An image is fully decoded (images are small). Damage in the middle of an otherwise complete
stream shows only when that frame is decoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .audio import wav_cut_short
from .errors import MediaDecodeError, describe_source
from .image import load_image
from .remote import downloaded
from .sources import ContainerOpener, declared_duration, first_stream, import_av, is_cut_short

__all__ = ["MEDIA_KINDS", "MediaProbe", "find_bad_media", "probe_media"]

MEDIA_KINDS = ("video", "audio", "image")


@dataclass(frozen=True)
class MediaProbe:
    """What a probe found: the role the file was checked for, its stream duration in seconds (``None`` for an image
    or when nothing declares it) and the kinds of all its streams."""

    kind: str
    duration: float | None
    streams: tuple[str, ...]


def probe_media(source: Any, kind: str) -> MediaProbe:
    """Check that `source` (a path, URL, bytes or file object) is readable media with a `kind` stream
    (``"video"``, ``"audio"`` or ``"image"``).

    Raises:
        FileNotFoundError: no such file.
        MediaDecodeError / NoVideoTrackError / NoAudioTrackError: not readable, no such stream, cut short, or its
            first frame does not decode (all ``ValueError``).
        MediaDownloadError: a URL that cannot be downloaded.
    """
    if kind not in MEDIA_KINDS:
        raise ValueError(f"`kind` must be one of {MEDIA_KINDS}, got {kind!r}")
    if kind == "image":
        load_image(source)
        return MediaProbe("image", None, ("image",))
    name = describe_source(source)
    with downloaded(source) as local:
        return _probe_container(ContainerOpener(local, name), kind)


def _probe_container(opener: ContainerOpener, kind: str) -> MediaProbe:
    av = import_av()
    name = opener.name
    container = opener.open()
    try:
        stream = first_stream(container, kind, name)
        streams = tuple(s.type for s in container.streams)
        declared, exact = declared_duration(container, stream)
        time_base = Fraction(stream.time_base) if stream.time_base else None
        start = stream.start_time or 0
        end, packets = None, 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's final flush packet
                    continue
                packets += 1
                if packet.pts is not None and time_base is not None:
                    packet_end = (packet.pts - start + (packet.duration or 0)) * time_base
                    end = packet_end if end is None else max(end, packet_end)
        except av.FFmpegError as error:
            raise MediaDecodeError(f"Reading the {kind} packets of {name} failed after {packets}: {error}") from error
        if packets == 0:
            raise MediaDecodeError(f"{name}: the {kind} stream has no packets (empty or corrupt)")
        if kind == "audio" and isinstance(opener.target, str):  # a WAV's declared size is in its data chunk
            cut = wav_cut_short(opener.target)
            if cut is not None:
                declared, end, exact = Fraction(cut[0]), Fraction(cut[1]), True
        if end is not None and is_cut_short(declared, exact, end):
            raise MediaDecodeError(
                f"{name}: the {kind} stream stops at {float(end):.3f} s but the header declares "
                f"{float(declared):.3f} s: the file is truncated or damaged"
            )
        _decode_first_frame(opener, kind, name)
        duration = end if end is not None else declared
        return MediaProbe(kind, None if duration is None else float(duration), streams)
    finally:
        container.close()


def _decode_first_frame(opener: ContainerOpener, kind: str, name: str) -> None:
    av = import_av()
    container = opener.open()
    try:
        stream = first_stream(container, kind, name)
        try:
            for _ in container.decode(stream):
                return
        except av.FFmpegError as error:
            raise MediaDecodeError(f"{name}: the first {kind} frame does not decode: {error}") from error
        raise MediaDecodeError(f"{name}: the {kind} stream has no decodable frame")
    finally:
        container.close()
        opener.rewind()


def find_bad_media(
    rows: Iterable[tuple[str, Mapping[str, Any]]], *, total: int | None = None, progress: bool = True
) -> list[tuple[str, list[str]]]:
    """Probe the media of many rows and return the bad ones, in order, each with ALL its problems.

    Args:
        rows: ``(where, {kind: source})`` per row: where the row is (e.g. ``"line 12"``) and its media by kind.
        total: the number of rows (for the progress bar), if `rows` has no length.
        progress: show a progress bar (counting rows).

    Returns:
        ``[(where, ["video: Media file not found: 'clips/a.mp4'", ...]), ...]`` for the rows with a problem.
    """
    from tqdm.auto import tqdm

    rows = list(rows)
    bad = []
    for where, media in tqdm(rows, total=total or len(rows), desc="Checking media", unit="row", disable=not progress):
        problems = []
        for kind, source in media.items():
            try:
                probe_media(source, kind)
            except (OSError, ValueError) as error:  # every error the loaders raise for bad input
                problems.append(f"{kind}: {error}")  # the loaders' errors name the file
        if problems:
            bad.append((where, problems))
    return bad
