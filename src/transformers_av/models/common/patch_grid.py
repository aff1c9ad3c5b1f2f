"""The patch grid of a ViT from its configuration alone: what configurations, processors and models of several
families count with; pure Python, no torch."""

from __future__ import annotations


def clip_num_patches(config: CLIPVisionConfig) -> int:
    """Patch tokens per frame, `(image_size // patch_size) ** 2`, from the config alone (256 for ViT-L/14 at 224)."""
    return (config.image_size // config.patch_size) ** 2


__all__ = ["clip_num_patches"]
