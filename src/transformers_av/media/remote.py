"""``http(s)://`` media inputs: downloaded through the Hugging Face Hub client's HTTP stack (``huggingface_hub``'s
shared ``httpx`` session: its proxies, certificates, retries with backoff and offline mode) into a temporary file that
the loaders then read like any local file, and delete afterwards.

``HF_HUB_OFFLINE=1`` (the setting that keeps `from_pretrained` off the network) also keeps media downloads off it: a
URL then raises `MediaDownloadError` saying so, as do HTTP errors and unreachable hosts, always naming the URL.

A processor reads one URL up to three times (the frames, whether it has sound, the sound track): inside
`reuse_downloads()`, each URL is downloaded once and its copy kept until the block ends, while the loaders still get
(and their messages still name) the URL.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .errors import MediaDownloadError

__all__ = ["DOWNLOAD_RETRIES", "DOWNLOAD_TIMEOUT_SECONDS", "downloaded", "is_url", "reuse_downloads"]

#: Retries of a download that fails on a network error or a 429 / 5xx answer (with exponential backoff).
DOWNLOAD_RETRIES = 3
#: Seconds without a byte from the server before a download fails.
DOWNLOAD_TIMEOUT_SECONDS = 30.0
_CHUNK_BYTES = 1 << 20
#: URL -> local copy, while a `reuse_downloads` block runs (None outside one).
_SHARED: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "transformers_av_downloads", default=None
)


def is_url(source: Any) -> bool:
    """Whether `source` is an ``http://`` or ``https://`` URL string."""
    return isinstance(source, str) and source[:8].lower().startswith(("http://", "https://"))


@contextlib.contextmanager
def downloaded(source: Any) -> Iterator[Any]:
    """`source` itself, or -- for an ``http(s)://`` URL -- the path of a temporary copy of it (with the URL's file
    extension, so format detection by extension keeps working), deleted when the block ends."""
    if not is_url(source):
        yield source
        return
    shared = _SHARED.get()
    if shared is not None:
        if source not in shared:
            shared[source] = _download_to_temporary_file(source)
        yield shared[source]  # deleted when the `reuse_downloads` block ends
        return
    path = _download_to_temporary_file(source)
    try:
        yield path
    finally:
        os.unlink(path)


@contextlib.contextmanager
def reuse_downloads() -> Iterator[None]:
    """Within the block, a URL read several times is downloaded once; the copies are deleted when it ends."""
    if _SHARED.get() is not None:  # an enclosing block already shares
        yield
        return
    token = _SHARED.set({})
    try:
        yield
    finally:
        for path in _SHARED.get().values():
            os.unlink(path)
        _SHARED.reset(token)


def _download_to_temporary_file(url: str) -> str:
    """Download `url` into a new temporary file (with the URL's extension) and return its path."""
    suffix = PurePosixPath(urlsplit(url).path).suffix[:16]
    handle, path = tempfile.mkstemp(prefix="transformers-av-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            _download(url, file)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _download(url: str, file) -> None:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import http_stream_backoff

    if constants.is_offline_mode():  # checked here too, so the message names the media file and the way out
        raise MediaDownloadError(
            f"Cannot download the media file {url!r}: offline mode is on (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE, "
            "or download the file and pass its local path."
        )
    try:
        with http_stream_backoff(
            "GET", url, max_retries=DOWNLOAD_RETRIES, timeout=DOWNLOAD_TIMEOUT_SECONDS, follow_redirects=True
        ) as response:
            if response.status_code >= 400:
                raise MediaDownloadError(
                    f"Cannot download the media file {url!r}: HTTP {response.status_code} {response.reason_phrase}"
                )
            for chunk in response.iter_bytes(_CHUNK_BYTES):
                file.write(chunk)
    except OfflineModeIsEnabled as error:
        raise MediaDownloadError(f"Cannot download the media file {url!r}: {error}") from error
    except MediaDownloadError:
        raise
    except Exception as error:  # the transport's own errors (httpx / httpx2, depending on the huggingface_hub version)
        raise MediaDownloadError(
            f"Cannot download the media file {url!r}: {type(error).__name__}: {error}. Check the network (or pass a "
            "local path)."
        ) from error
