"""``http(s)://`` media inputs: downloaded through the Hugging Face Hub client's HTTP stack (``huggingface_hub``'s
shared ``httpx`` session: its proxies, certificates, retries with backoff and offline mode) into a temporary file that
the loaders then read like any local file, and delete afterwards.

``HF_HUB_OFFLINE=1`` (the setting that keeps `from_pretrained` off the network) also keeps media downloads off it: a
URL then raises `MediaDownloadError` saying so, as do HTTP errors and unreachable hosts, always naming the URL.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .errors import MediaDownloadError

__all__ = ["DOWNLOAD_RETRIES", "DOWNLOAD_TIMEOUT_SECONDS", "downloaded", "is_url"]

#: Retries of a download that fails on a network error or a 429 / 5xx answer (with exponential backoff).
DOWNLOAD_RETRIES = 3
#: Seconds without a byte from the server before a download fails.
DOWNLOAD_TIMEOUT_SECONDS = 30.0
_CHUNK_BYTES = 1 << 20


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
    suffix = PurePosixPath(urlsplit(source).path).suffix[:16]
    handle, path = tempfile.mkstemp(prefix="transformers-av-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            _download(source, file)
        yield path
    finally:
        os.unlink(path)


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
