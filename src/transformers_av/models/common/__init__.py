"""What every model family of the package shares: frozen encoders, placeholder scatter, left-padding positions
(`modeling_common`), per-sample batching and errors that name the sample (`processing_common`), the CLIP frame encoder,
saving with code (`remote_code`), the ViT patch grid (`patch_grid`) and the family record (`family`)."""

from .family import FAMILIES, LLM_LORA_TARGETS, ModelFamily, count_parameters, family_of, register_family

__all__ = ["FAMILIES", "LLM_LORA_TARGETS", "ModelFamily", "count_parameters", "family_of", "register_family"]
