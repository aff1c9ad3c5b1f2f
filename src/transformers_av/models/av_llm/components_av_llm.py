"""An Audio-Visual LLM from separately pretrained parts (`AvLlmForConditionalGeneration.from_pretrained_components`):
a causal LM, a CLIP model (only its vision tower is loaded) and a CLAP model (only its audio tower).

The matching processor is built by `transformers_av.assembly.av_llm_processor_from_components`.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModel, ClapAudioConfig, ClapAudioModel, CLIPVisionConfig, CLIPVisionModel

from ..common.components_common import (
    finish_assembly,
    hub_kwargs_of,
    load_causal_lm,
    module_from_weights,
    named_sub_config,
    new_token_ids,
    record_sources,
    refuse_component_settings,
    replace_connector,
    strip_prefix,
    text_config_of,
    tower_weights,
)
from .configuration_av_llm import MEDIA_TOKEN, MODALITY_TOKENS, AvLlmConfig

CLIP_VISION_PREFIX = "vision_model."  # CLIPModel checkpoints; a CLIPVisionModel one has the tower's keys unprefixed
CLAP_AUDIO_PREFIX = "audio_model."  # ClapModel checkpoints; a ClapAudioModel one has them unprefixed
TOKEN_ID_KEYS = ("media_token_id", "visual_modality_token_id", "audio_modality_token_id", "audio_visual_modality_token_id")


def assemble_av_llm_from_components(
    model_class: type,
    *,
    llm: str | os.PathLike,
    vision_encoder: str | os.PathLike,
    audio_encoder: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    freeze_encoders: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    **settings,
):
    """Build a `model_class` (an Audio-Visual LLM class) from pretrained parts.

    Args:
        llm: causal LM (local folder or Hub id), e.g. "lmsys/vicuna-7b-v1.5".
        vision_encoder: a CLIP model, e.g. "openai/clip-vit-large-patch14" (only its vision tower is loaded), or a
            saved `CLIPVisionModel`.
        audio_encoder: a CLAP model, e.g. "laion/clap-htsat-unfused" (only its audio tower is loaded), or a saved
            `ClapAudioModel`.
        dtype, freeze_encoders, revision, token, cache_dir: as for FAVOR's `assemble_from_components`.
        **settings: other [`AvLlmConfig`] settings (`num_frames`, `num_audio_segments`, `vision_feature_layer`, ...).

    The placeholder and the `<VIS>`, `<AUD>`, `<AUD_VIS>` tokens get the ids the LLM's tokenizer gives them once
    the processor adds them (and the LLM embedding rows for them). Returns the model in train mode, its projectors
    freshly initialised and the pretrained parts in place.
    """
    hub_kwargs = hub_kwargs_of(revision, token, cache_dir)
    refuse_component_settings(
        settings, ("text_config", "vision_config", "audio_config", *TOKEN_ID_KEYS), "the other AvLlmConfig settings"
    )

    text_config = text_config_of(llm, hub_kwargs)
    vision_config = CLIPVisionConfig.from_pretrained(str(vision_encoder), **hub_kwargs)
    audio_config = ClapAudioConfig.from_pretrained(str(audio_encoder), **hub_kwargs)
    token_ids = new_token_ids(llm, text_config.vocab_size, [MEDIA_TOKEN, *MODALITY_TOKENS.values()], hub_kwargs)
    text_dict = named_sub_config(text_config, llm)
    text_dict["vocab_size"] = max(text_config.vocab_size, max(token_ids) + 1)
    config = AvLlmConfig(
        text_config=text_dict,
        vision_config=named_sub_config(vision_config, vision_encoder),
        audio_config=named_sub_config(audio_config, audio_encoder),
        **dict(zip(TOKEN_ID_KEYS, token_ids)),
        **settings,
    )
    record_sources(config, {"text_config": llm, "vision_config": vision_encoder, "audio_config": audio_encoder})

    with torch.device("meta"):
        model = model_class(config)
    inner = model.model
    load_causal_lm(model, llm, config.text_config.vocab_size, dtype, hub_kwargs)
    inner.vision_encoder.vision_model = _tower(
        CLIPVisionModel, config.vision_config, CLIP_VISION_PREFIX, vision_encoder, "CLIP vision tower", dtype, hub_kwargs
    )
    inner.audio_encoder.audio_model = _tower(
        ClapAudioModel, config.audio_config, CLAP_AUDIO_PREFIX, audio_encoder, "CLAP audio tower", dtype, hub_kwargs
    )
    connector = type(inner.connector)(
        config.vision_config.hidden_size, config.audio_token_size, config.text_config.hidden_size,
        bias=config.projector_bias,
    )
    replace_connector(model, connector)
    return finish_assembly(model, dtype, freeze_encoders)


def _tower(tower_class: type, sub_config, prefix: str, source, what: str, dtype: torch.dtype, hub_kwargs: dict):
    """One tower of a two-tower checkpoint (CLIP, CLAP) or a one-tower checkpoint, built from its weights only."""
    weights = tower_weights(source, prefix, hub_kwargs)
    if weights is None:  # no safetensors: load the model with transformers and keep the tower
        everything = AutoModel.from_pretrained(str(source), dtype=dtype, **hub_kwargs).state_dict()
        weights = strip_prefix(everything, prefix) or everything
    return module_from_weights(tower_class, sub_config, weights, dtype, what, source)


__all__ = ["assemble_av_llm_from_components"]
