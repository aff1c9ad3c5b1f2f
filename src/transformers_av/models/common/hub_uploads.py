"""Where a model's or processor's `push_to_hub` sends its upload.

The checked upload with a rendered model card lives in `transformers_av.hub`, a layer above the models; it installs
itself here when it is imported (`import transformers_av` does). Without it -- a checkpoint's code running with
`trust_remote_code=True` where the package is not installed -- `push_to_hub` is transformers' plain upload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_UPLOADERS: dict[str, Callable[..., Any]] = {}


def set_hub_uploader(kind: str, upload: Callable[..., Any]) -> None:
    """Use `upload(obj, repo_id, **kwargs)` for `push_to_hub` of every model (`kind="model"`) or processor
    (`kind="processor"`) of the package."""
    if kind not in ("model", "processor"):
        raise ValueError(f"kind must be 'model' or 'processor', got {kind!r}.")
    _UPLOADERS[kind] = upload


def hub_uploader(kind: str) -> Callable[..., Any] | None:
    """The upload installed for `kind`, or None (then `push_to_hub` is transformers' own)."""
    return _UPLOADERS.get(kind)


__all__ = ["hub_uploader", "set_hub_uploader"]
