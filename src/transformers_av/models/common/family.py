"""One record per model family, declared once in the family's own package and read by every workflow.

`models/favor/__init__.py` (FAVOR / video-SALMONN), `models/av_llm/__init__.py` (the Audio-Visual LLM) and
`models/beats/__init__.py` (the BEATs audio encoder) each build a [`ModelFamily`] and add it to [`FAMILIES`] with
[`register_family`]. From that one record come the Auto-class registration (`import transformers_av`), the files and
`auto_map` of a checkpoint saved with its code, the Hub checks and model card, the parameter table and the LoRA targets. A fourth family is one folder and one record.
"""

from __future__ import annotations

import importlib.util

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


# PEFT matches a string `target_modules` with `re.fullmatch` against module names inside the generation model: only
# the decoder layers of `model.language_model` match (a plain list like ["q_proj"] would also hit Whisper or CLIP).
# LoRA targets of the LLM, as regexes PEFT matches against full module names (`re.fullmatch`), anchored on the LLM's
# decoder layers: the Whisper and CLIP encoders have attention layers with the same leaf names (`q_proj`, `k_proj`,
# `v_proj`), so a plain `target_modules=["q_proj", ...]` would put LoRA on them too. The optional `model.` prefix lets
# one regex serve the head model (`model.language_model...`) and the base model (`language_model...`).
LLM_LORA_TARGETS = {
    "attention": r"(model\.)?language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
    "attention+mlp": r"(model\.)?language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
}


@dataclass(frozen=True)
class CardVariant:
    """How the model card presents one variant of a family (FAVOR and video-SALMONN share a configuration class but
    not a card).

    The card's numbers come from the configuration itself: `config.architecture_rows(video_fps=)` gives the rows of
    its architecture table and `config.card_variables()` the values its template quotes.

    Args:
        name: the model's name in the card text and in messages ("video-SALMONN").
        template: the card template, a file of `hub_cards/` ("video_salmonn.md").
        tags: the variant's own card tags, after the family's [`ModelFamily.card_tags`].
        applies_to: configuration -> whether this variant describes it; `None` (the last variant) matches any.
    """

    name: str
    template: str
    tags: tuple[str, ...] = ()
    applies_to: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class ModelFamily:
    """What the package knows about one model family (one configuration `model_type`).

    Args:
        model_type: the configuration's `model_type`, the key in [`FAMILIES`].
        name: how documentation and model cards name the family.
        config_class, model_class: the configuration and the base model (`AutoConfig`, `AutoModel`).
        generation_class: the model with the LM head (`AutoModelForMultimodalLM`), if the family generates text.
        processor_class: the multimodal processor (`AutoProcessor`), if any.
        image_processor_class / feature_extractor_class: the family's own image processor / feature extractor,
            registered with `AutoImageProcessor` / `AutoFeatureExtractor` for its configuration.
        parameter_groups: a module name found in a parameter's path -> the part it counts for (in table order);
            parameters in none of them count for `"LLM"` ([`count_parameters`]).
        components: role -> (sub-configuration whose `_name_or_path` is the pretrained source, how cards name it).
        lora_target_modules: regex of the LLM linear layers LoRA adapts, by target name (`"attention"`, ...).
        lora_modules_to_save: modules trained in full beside the adapters (the connector).
        card_tags: the model card tags of every model of the family.
        card_variants: how model cards present the family's variants, the first that applies wins
            ([`card_variant`]); a family without any has no model card.
    """

    model_type: str
    name: str
    config_class: type
    model_class: type
    generation_class: type | None = None
    processor_class: type | None = None
    image_processor_class: type | None = None
    feature_extractor_class: type | None = None
    parameter_groups: Mapping[str, str] = field(default_factory=dict)
    components: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    lora_target_modules: Mapping[str, str] = field(default_factory=dict)
    lora_modules_to_save: tuple[str, ...] = ()
    card_tags: tuple[str, ...] = ()
    card_variants: tuple[CardVariant, ...] = ()

    def card_variant(self, config: Any) -> CardVariant:
        """The first of [`card_variants`] that applies to `config`."""
        for variant in self.card_variants:
            if variant.applies_to is None or variant.applies_to(config):
                return variant
        raise ValueError(f"The {self.name} family declares no model card that fits this configuration "
                         f"(ModelFamily.card_variants).")

    def register_auto_classes(self) -> None:
        """Register the family's classes with the transformers Auto* factories."""
        from transformers import (
            AutoConfig,
            AutoFeatureExtractor,
            AutoImageProcessor,
            AutoModel,
            AutoModelForImageTextToText,
            AutoModelForMultimodalLM,
            AutoProcessor,
        )
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
            MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES,
        )

        AutoConfig.register(self.model_type, self.config_class, exist_ok=True)
        AutoModel.register(self.config_class, self.model_class, exist_ok=True)
        if self.generation_class is not None:
            AutoModelForMultimodalLM.register(self.config_class, self.generation_class, exist_ok=True)
            AutoModelForImageTextToText.register(self.config_class, self.generation_class, exist_ok=True)
            # the "any-to-any" and "image-text-to-text" pipelines (and `transformers serve`) accept a model whose
            # class is listed in these name tables, which `register` does not touch; in-tree video LLMs are in both
            for names in (MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES):
                names.setdefault(self.model_type, self.generation_class.__name__)
        if self.processor_class is not None:
            AutoProcessor.register(self.config_class, self.processor_class, exist_ok=True)
        if self.image_processor_class is not None:
            AutoImageProcessor.register(
                self.config_class, slow_image_processor_class=self.image_processor_class, exist_ok=True
            )
        if self.feature_extractor_class is not None:
            AutoFeatureExtractor.register(self.config_class, self.feature_extractor_class, exist_ok=True)


    def register_peft_defaults(self) -> None:
        """Make the family's `"attention"` LoRA targets PEFT's default for its `model_type`, so that
        `LoraConfig(task_type="CAUSAL_LM")` without `target_modules` adapts the LLM only (as PEFT does for the
        architectures it knows)."""
        if "attention" not in self.lora_target_modules or importlib.util.find_spec("peft") is None:
            return
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.setdefault(
            self.model_type, self.lora_target_modules["attention"]
        )


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add `family` to [`FAMILIES`] (a family package calls this once, on import)."""
    FAMILIES[family.model_type] = family
    return family


def family_of(config_or_model_type: Any) -> ModelFamily:
    """The [`ModelFamily`] of a `model_type` string, a configuration, or a model (a PEFT wrapper included)."""
    value = config_or_model_type
    if hasattr(value, "get_base_model"):
        value = value.get_base_model()
    if hasattr(value, "config") and not isinstance(value, str):
        value = value.config
    model_type = value if isinstance(value, str) or value is None else getattr(value, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"transformers_av knows no model family with model_type {model_type!r} "
                         f"(known: {', '.join(sorted(FAMILIES))}).")
    return FAMILIES[model_type]


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per part of the model's family ([`ModelFamily.parameter_groups`], then `"LLM"` for the rest) and
    `"total"`. Shared (tied) parameters count once; a model on the meta device counts too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    groups = family_of(base.config).parameter_groups
    parts = dict.fromkeys(groups.values(), 0)
    parts.setdefault("LLM", 0)
    seen = set()
    for name, parameter in base.named_parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        part = next((groups[piece] for piece in name.split(".") if piece in groups), "LLM")
        parts[part] += parameter.numel()
    parts["total"] = sum(parts.values())
    return parts


__all__ = ["FAMILIES", "LLM_LORA_TARGETS", "CardVariant", "ModelFamily", "count_parameters", "family_of", "register_family"]
