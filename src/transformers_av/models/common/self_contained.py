"""`save_pretrained` with the processor's own code and a checked `push_to_hub`, for every processor of the package."""

from __future__ import annotations

from typing import Any

from .hub_uploads import hub_uploader


class SelfContainedProcessorMixin:
    """For a `ProcessorMixin` subclass of the package:

    * `save_pretrained` also writes the processor's source files and `auto_map` entries, so the folder loads with
      `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` where transformers_av is not installed;
    * `push_to_hub` checks the processor first (`transformers_av.hub.push_processor_to_hub`, see [`hub_uploader`]).

    Where this file itself runs as remote code, both fall back to the plain transformers methods."""

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        if push_to_hub:
            raise ValueError(
                f"Use {type(self).__name__}.push_to_hub(repo_id) to upload (it validates the processor first)."
            )
        result = super().save_pretrained(save_directory, **kwargs)
        try:  # absent when this file itself runs as remote code: then the folder already has the sources
            from transformers_av.models.common.remote_code import add_processor_code
        except ImportError:
            return result
        add_processor_code(save_directory, self)
        return result

    def push_to_hub(self, repo_id: str, **kwargs) -> Any:
        """Upload the processor to the Hub (see [`transformers_av.hub.push_processor_to_hub`] for the arguments): its
        tokens and settings are checked against the model's before anything is sent."""
        upload = hub_uploader("processor")
        if upload is None:
            return super().push_to_hub(repo_id, **kwargs)
        return upload(self, repo_id, **kwargs)


__all__ = ["SelfContainedProcessorMixin"]
