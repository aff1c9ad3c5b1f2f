"""Assembling a model from separately pretrained parts: FAVOR / video-SALMONN, and the Audio-Visual LLM.

[`assemble_from_components`] (exposed as `FavorForConditionalGeneration.from_pretrained_components`) takes local
paths or Hub ids of

* a causal LM (anything `AutoModelForCausalLM` loads; Vicuna in the papers),
* a Whisper model (only its encoder is kept),
* an InstructBLIP model (only its ViT, its instruction-aware Q-Former and the query tokens are kept; its LLM is never
  loaded: from a safetensors checkpoint only the shards holding those weights are read, or downloaded),
* a BEATs model saved by this package (video-SALMONN; omit it for FAVOR),

builds the configuration from theirs, puts each part's pretrained weights in place, initialises the connector and
adds one embedding row for the audio-visual placeholder token. [`processor_from_components`] builds the matching
[`FavorProcessor`] from the same sources.

[`assemble_av_llm_from_components`] (`AvLlmForConditionalGeneration.from_pretrained_components`) does the same for
the Audio-Visual LLM from a causal LM, a CLIP model (only its vision tower is loaded) and a CLAP model (only its audio
tower), and [`av_llm_processor_from_components`] builds its [`AvLlmProcessor`].

The sources are recorded in the sub-configurations' `_name_or_path`, which the model card uses as `base_model`.

The model builders live with their family (`models/favor/components_favor.py`, `models/av_llm/components_av_llm.py`,
over `models/common/components_common.py`), so that a model class reaches them without importing this layer; this
module adds the processors, which need the tokenizers and feature extractors of the same sources.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoTokenizer, ClapFeatureExtractor, CLIPImageProcessor, WhisperFeatureExtractor

from .models.av_llm.components_av_llm import assemble_av_llm_from_components
from .models.av_llm.processing_av_llm import AvLlmProcessor
from .models.beats.feature_extraction_beats import BeatsFeatureExtractor
from .models.common.components_common import load_weights_with_prefixes
from .models.favor.components_favor import AUDIO_VISUAL_TOKEN, assemble_from_components
from .models.favor.image_processing_favor import FavorImageProcessor
from .models.favor.processing_favor import FavorProcessor


def processor_from_components(
    config_or_model: Any,
    *,
    llm: str | os.PathLike,
    speech_encoder: str | os.PathLike,
    vision_encoder: str | os.PathLike,
    **processor_settings,
):
    """The [`FavorProcessor`] of an assembled model: the LLM's tokenizer (the placeholder is added), the
    InstructBLIP Q-Former tokenizer (`qformer_tokenizer/` of the InstructBLIP repository), Whisper's feature
    extractor, the FAVOR image processor at the ViT's resolution and the BEATs feature extractor. Window settings
    come from the model's configuration; extra keyword arguments go to [`FavorProcessor`]."""
    config = getattr(config_or_model, "config", config_or_model)
    tokenizer = AutoTokenizer.from_pretrained(str(llm))
    qformer_tokenizer = AutoTokenizer.from_pretrained(str(vision_encoder), subfolder="qformer_tokenizer",
                                                      truncation_side="left")
    if qformer_tokenizer.bos_token is None:  # InstructBLIP's Q-Former tokenizer starts instructions with [DEC]
        qformer_tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    try:
        feature_extractor = WhisperFeatureExtractor.from_pretrained(str(speech_encoder))
    except OSError:
        feature_extractor = WhisperFeatureExtractor(feature_size=config.speech_config.num_mel_bins)
    return FavorProcessor.from_model_config(
        config,
        image_processor=FavorImageProcessor(size=config.vision_config.image_size),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        feature_extractor=feature_extractor,
        audio_feature_extractor=BeatsFeatureExtractor(),
        **processor_settings,
    )


def av_llm_processor_from_components(
    config_or_model: Any,
    *,
    llm: str | os.PathLike,
    vision_encoder: str | os.PathLike,
    audio_encoder: str | os.PathLike,
    **processor_settings,
):
    """The [`AvLlmProcessor`] of an assembled Audio-Visual LLM: the LLM's tokenizer (the placeholder and modality
    tokens are added), the CLIP image processor and the CLAP feature extractor of the component repositories. Frame,
    segment and patch counts come from the model's configuration; extra keyword arguments go to [`AvLlmProcessor`]."""
    config = getattr(config_or_model, "config", config_or_model)
    return AvLlmProcessor.from_model_config(
        config,
        image_processor=CLIPImageProcessor.from_pretrained(str(vision_encoder)),
        feature_extractor=ClapFeatureExtractor.from_pretrained(str(audio_encoder)),
        tokenizer=AutoTokenizer.from_pretrained(str(llm)),
        **processor_settings,
    )


__all__ = [
    "AUDIO_VISUAL_TOKEN",
    "assemble_av_llm_from_components",
    "assemble_from_components",
    "av_llm_processor_from_components",
    "load_weights_with_prefixes",
    "processor_from_components",
]
