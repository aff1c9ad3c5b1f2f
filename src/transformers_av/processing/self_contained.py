"""`save_pretrained` with the processor's own code and a checked `push_to_hub`, for every processor of the package."""

from __future__ import annotations

from typing import Any


class SelfContainedProcessorMixin:
    """For a `ProcessorMixin` subclass whose `remote_code_family` names its entry in `transformers_av.remote_code`:

    * `save_pretrained` also writes the processor's source files and `auto_map` entries, so the folder loads with
      `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` where transformers_av is not installed;
    * `push_to_hub` checks the processor first (`transformers_av.hub.push_processor_to_hub`).

    Where this file itself runs as remote code, both fall back to the plain transformers methods."""

    remote_code_family: str

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        if push_to_hub:
            raise ValueError(
                f"Use {type(self).__name__}.push_to_hub(repo_id) to upload (it validates the processor first)."
            )
        result = super().save_pretrained(save_directory, **kwargs)
        try:  # absent when this file itself runs as remote code: then the folder already has the sources
            from transformers_av.remote_code import add_processor_code
        except ImportError:
            return result
        add_processor_code(save_directory, self.remote_code_family)
        return result

    def push_to_hub(self, repo_id: str, **kwargs) -> Any:
        """Upload the processor to the Hub (see [`transformers_av.hub.push_processor_to_hub`] for the arguments): its
        tokens and settings are checked against the model's before anything is sent."""
        try:
            from transformers_av.hub import push_processor_to_hub
        except ImportError:  # running as remote code
            return super().push_to_hub(repo_id, **kwargs)
        return push_processor_to_hub(self, repo_id, **kwargs)


__all__ = ["SelfContainedProcessorMixin"]
