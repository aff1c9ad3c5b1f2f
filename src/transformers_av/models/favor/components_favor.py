"""A FAVOR / video-SALMONN model from separately pretrained parts (`FavorForConditionalGeneration.
from_pretrained_components`): a causal LM, a Whisper model (only its encoder is kept), an InstructBLIP model (only its
ViT, its instruction-aware Q-Former and the query tokens; its LLM is never loaded, and from a safetensors checkpoint only
the shards holding those weights are read) and, for video-SALMONN, a BEATs model saved by this package.

The matching processor is built by `transformers_av.assembly.processor_from_components`.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import (
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipQFormerModel,
    InstructBlipVisionModel,
    WhisperConfig,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..beats.configuration_beats import BeatsConfig
from ..beats.modeling_beats import BeatsModel
from ..common.components_common import (
    finish_assembly,
    hub_kwargs_of,
    load_causal_lm,
    load_weights_with_prefixes,
    module_from_weights,
    named_sub_config,
    new_token_ids,
    record_sources,
    refuse_component_settings,
    replace_connector,
    strip_prefix,
    text_config_of,
)
from .configuration_favor import FavorConfig

AUDIO_VISUAL_TOKEN = "<AV>"
WHISPER_ENCODER_PREFIXES = ("model.encoder.", "encoder.")
INSTRUCTBLIP_PREFIXES = {"vision_model": "vision_model.", "qformer": "qformer.", "query_tokens": "query_tokens"}
COMPONENT_KEYS = ("text_config", "speech_config", "audio_config", "vision_config", "qformer_config", "num_query_tokens")


def assemble_from_components(
    model_class: type,
    *,
    llm: str | os.PathLike,
    speech_encoder: str | os.PathLike,
    vision_encoder: str | os.PathLike,
    audio_encoder: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    freeze_encoders: bool = True,
    audio_visual_token: str = AUDIO_VISUAL_TOKEN,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    **settings,
):
    """Build a `model_class` (a FAVOR model class) from pretrained parts.

    Args:
        llm: causal LM (local folder or Hub id), e.g. "lmsys/vicuna-13b-v1.5".
        speech_encoder: Whisper model, e.g. "openai/whisper-large-v2" (only the encoder is loaded).
        vision_encoder: InstructBLIP model, e.g. "Salesforce/instructblip-vicuna-13b" (only the ViT, Q-Former and
            query tokens are loaded).
        audio_encoder: a BEATs model saved with `BeatsModel.save_pretrained` (e.g. by `transformers-av convert`);
            `None` builds FAVOR (no audio-event encoder, one resolution by default).
        dtype: dtype of every weight (float32 to train with mixed precision; bfloat16 halves the memory).
        freeze_encoders: freeze the encoders (they run under `no_grad`), as in the papers' recipes; the connector
            and the LLM stay trainable (apply LoRA to the LLM with `transformers_av.training.apply_lora`).
        audio_visual_token: the placeholder; it gets the id the LLM's tokenizer will give it once the processor
            adds it, and the LLM one embedding row for it if needed.
        revision, token, cache_dir: passed to every download.
        **settings: [`FavorConfig`] settings of the connector and the window plan (`resolutions`,
            `resolution_merge`, `causal_attention`, `connector_hidden_size`, `diversity_loss_weight`, ...).

    Returns:
        the model in train mode, its connector freshly initialised and the pretrained parts in place.
    """
    hub_kwargs = hub_kwargs_of(revision, token, cache_dir)
    refuse_component_settings(settings, COMPONENT_KEYS, "connector / window settings")

    # -- configurations ------------------------------------------------------------------------------------------
    text_config = text_config_of(llm, hub_kwargs)
    speech_config = WhisperConfig.from_pretrained(str(speech_encoder), **hub_kwargs)
    instructblip_config = InstructBlipConfig.from_pretrained(str(vision_encoder), **hub_kwargs)
    audio_config = BeatsConfig.from_pretrained(str(audio_encoder), **hub_kwargs) if audio_encoder is not None else None
    (placeholder,) = new_token_ids(llm, text_config.vocab_size, [audio_visual_token], hub_kwargs)
    vocab_size = max(text_config.vocab_size, placeholder + 1)
    text_dict = named_sub_config(text_config, llm)
    text_dict["vocab_size"] = vocab_size
    config = FavorConfig(
        text_config=text_dict,
        speech_config=named_sub_config(speech_config, speech_encoder),
        audio_config=named_sub_config(audio_config, audio_encoder) if audio_config is not None else None,
        vision_config=named_sub_config(instructblip_config.vision_config, vision_encoder),
        qformer_config=named_sub_config(instructblip_config.qformer_config, vision_encoder),
        num_query_tokens=instructblip_config.num_query_tokens,
        audio_visual_token_id=placeholder,
        **settings,
    )
    record_sources(config, {"text_config": llm, "speech_config": speech_encoder, "audio_config": audio_encoder,
                            "vision_config": vision_encoder, "qformer_config": vision_encoder})

    # -- the skeleton: no memory, no random init of what the components replace -----------------------------------
    with torch.device("meta"):
        model = model_class(config)
    inner = model.model

    # LLM: the whole causal LM (body + head); one more embedding row for the placeholder if needed
    load_causal_lm(model, llm, vocab_size, dtype, hub_kwargs)
    inner.speech_encoder = _whisper_encoder(speech_encoder, config, dtype, hub_kwargs)
    _load_instructblip(inner.visual_encoder, vision_encoder, config, dtype, hub_kwargs)
    if audio_encoder is not None:
        inner.audio_encoder = BeatsModel.from_pretrained(str(audio_encoder), dtype=dtype, **hub_kwargs)
    replace_connector(model, type(inner.connector)(config))
    return finish_assembly(model, dtype, freeze_encoders)


def _whisper_encoder(source, config: FavorConfig, dtype: torch.dtype, hub_kwargs: dict) -> nn.Module:
    """The encoder of a Whisper checkpoint (the decoder is never read from a safetensors checkpoint)."""
    whisper = load_weights_with_prefixes(source, WHISPER_ENCODER_PREFIXES, **hub_kwargs)
    if whisper is None:  # no safetensors: load the whole model, keep its encoder
        return WhisperModel.from_pretrained(str(source), dtype=dtype, **hub_kwargs).get_encoder()
    prefix = next((p for p in WHISPER_ENCODER_PREFIXES if any(k.startswith(p) for k in whisper)), None)
    if prefix is None:
        raise ValueError(f"{source} holds no Whisper encoder weights (no {' or '.join(WHISPER_ENCODER_PREFIXES)} keys).")
    return module_from_weights(WhisperEncoder, config.speech_config, strip_prefix(whisper, prefix), dtype,
                               "Whisper encoder", source)


def _load_instructblip(visual, source, config: FavorConfig, dtype: torch.dtype, hub_kwargs: dict) -> None:
    """InstructBLIP's ViT, Q-Former and query tokens into the visual encoder part (never its LLM)."""
    blip = load_weights_with_prefixes(source, tuple(INSTRUCTBLIP_PREFIXES.values()), **hub_kwargs)
    if blip is None:
        full = InstructBlipForConditionalGeneration.from_pretrained(str(source), dtype=dtype, **hub_kwargs)
        blip = {k: v for k, v in full.state_dict().items() if k.startswith(tuple(INSTRUCTBLIP_PREFIXES.values()))}
        del full
    if "query_tokens" not in blip:
        raise ValueError(f"{source} holds no InstructBLIP query_tokens: is it an InstructBLIP checkpoint?")
    visual.vision_model = module_from_weights(InstructBlipVisionModel, config.vision_config,
                                              strip_prefix(blip, "vision_model."), dtype, "InstructBLIP ViT", source)
    visual.vision_model.post_layernorm.eps = config.vision_output_layer_norm_eps
    visual.qformer = module_from_weights(InstructBlipQFormerModel, config.qformer_config,
                                         strip_prefix(blip, "qformer."), dtype, "InstructBLIP Q-Former", source)
    visual.query_tokens = nn.Parameter(blip["query_tokens"].to(dtype))


__all__ = ["AUDIO_VISUAL_TOKEN", "assemble_from_components"]
