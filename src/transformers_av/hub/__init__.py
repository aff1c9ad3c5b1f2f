"""Sharing the package's models (FAVOR / video-SALMONN, the Audio-Visual LLM) on the Hugging Face Hub.

* [`push_to_hub`] uploads a model (and its processor) in ONE commit with a model card; a PEFT-wrapped model is pushed
  as a LoRA adapter ([`push_adapter_to_hub`]); [`push_folder_to_hub`] uploads a `save_pretrained` folder without
  modifying it (`hub.push`). The models' and processors' own `push_to_hub` methods call these.
* Everything is checked before the first network call and a refused upload raises [`UploadRefusedError`] naming
  what is wrong (`hub.checks`).
* [`render_model_card`] builds the card alone, from a template of `hub_cards/` (`hub.card`).

What differs between model families is read from their records ([`transformers_av.models.ModelFamily`], keyed by
the configuration's `model_type`) and from the families' own configurations and processors; adding a family needs
no change here.
"""

from ..models import FAMILIES, ModelFamily, family_of
from ..models.common.hub_uploads import set_hub_uploader
from .card import (
    DEFAULT_LICENSE,
    LIBRARY_NAME,
    PIPELINE_TAG,
    EvaluationResult,
    TrainingDetails,
    architecture_table,
    card_templates,
    component_sources,
    lora_settings,
    parameter_counts,
    render_model_card,
    tokens_per_second,
    usage_snippet,
)
from .checks import (
    UploadRefusedError,
    check_config,
    non_finite_tensors,
    validate_adapter_for_upload,
    validate_folder_for_upload,
    validate_model_for_upload,
    validate_processor_for_upload,
)
from .push import folder_fingerprint, push_adapter_to_hub, push_folder_to_hub, push_processor_to_hub, push_to_hub

# Names of the first release, kept for code that imports them: the template names of today's families, and their
# sub-model roles (each family record's `components`).
TEMPLATES = card_templates()
COMPONENTS = FAMILIES["favor"].components
AV_LLM_COMPONENTS = FAMILIES["av_llm"].components

# `model.push_to_hub(...)` / `processor.push_to_hub(...)` of every family go through the checked uploads
set_hub_uploader("model", push_to_hub)
set_hub_uploader("processor", push_processor_to_hub)


__all__ = [
    "AV_LLM_COMPONENTS",
    "COMPONENTS",
    "DEFAULT_LICENSE",
    "EvaluationResult",
    "FAMILIES",
    "LIBRARY_NAME",
    "ModelFamily",
    "PIPELINE_TAG",
    "TEMPLATES",
    "TrainingDetails",
    "UploadRefusedError",
    "architecture_table",
    "card_templates",
    "check_config",
    "component_sources",
    "family_of",
    "folder_fingerprint",
    "lora_settings",
    "non_finite_tensors",
    "parameter_counts",
    "push_adapter_to_hub",
    "push_folder_to_hub",
    "push_processor_to_hub",
    "push_to_hub",
    "render_model_card",
    "tokens_per_second",
    "usage_snippet",
    "validate_adapter_for_upload",
    "validate_folder_for_upload",
    "validate_model_for_upload",
    "validate_processor_for_upload",
]
