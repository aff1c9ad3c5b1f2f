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
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

AUDIO_VISUAL_TOKEN = "<AV>"
WHISPER_ENCODER_PREFIXES = ("model.encoder.", "encoder.")
INSTRUCTBLIP_PREFIXES = {"vision_model": "vision_model.", "qformer": "qformer.", "query_tokens": "query_tokens"}


def _resolve(source: str | os.PathLike, filename: str, **hub_kwargs) -> Path | None:
    """Local path of `filename` in a folder or Hub repository (downloaded if needed); `None` if it does not exist."""
    from transformers.utils import cached_file

    local = Path(source) / filename
    if Path(source).is_dir():
        return local if local.is_file() else None
    path = cached_file(str(source), filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    return Path(path) if path is not None else None


def load_weights_with_prefixes(source: str | os.PathLike, prefixes: Sequence[str], **hub_kwargs) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors checkpoint (one file or sharded) whose names start with one of `prefixes`.
    Only the shards that hold such tensors are opened (and, for a Hub id, downloaded). `None` if the checkpoint has
    no safetensors weights."""
    from safetensors import safe_open

    index = _resolve(source, "model.safetensors.index.json", **hub_kwargs)
    if index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted({shard for name, shard in weight_map.items() if name.startswith(tuple(prefixes))})
        files = [_resolve(source, shard, **hub_kwargs) for shard in shards]
    else:
        single = _resolve(source, "model.safetensors", **hub_kwargs)
        if single is None:
            return None
        files = [single]
    tensors = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                if name.startswith(tuple(prefixes)):
                    tensors[name] = handle.get_tensor(name)
    return tensors


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix):]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}


def _module_from_weights(module_class: type, config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype,
                         what: str, source: Any) -> nn.Module:
    """`module_class(config)` holding exactly `state_dict` (cast to `dtype`): built on the meta device and the tensors
    assigned, so no random initialisation runs and no second copy is allocated."""
    with torch.device("meta"):
        module = module_class(config)
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{what} weights from {source} do not fit its configuration: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True, assign=True)
    # non-persistent buffers are not in checkpoints: only position-id ranges are expected
    for name, buffer in list(module.named_buffers()):
        if buffer.device.type != "meta":
            continue
        if not name.endswith("position_ids"):
            raise RuntimeError(f"{what}: buffer {name} has no value after loading (not in the checkpoint).")
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        owner.register_buffer(leaf, torch.arange(buffer.shape[-1]).expand(buffer.shape).clone(), persistent=False)
    return module


def _new_token_ids(llm: str | os.PathLike, vocab_size: int, tokens: Sequence[str], hub_kwargs: dict) -> list[int]:
    """The ids the processor's tokenizer will give `tokens`: their id where the LLM tokenizer has them; the missing
    ones are appended by the processor in this order, from the tokenizer's size on (from the LLM's vocabulary size if
    the LLM has no tokenizer)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(llm), **hub_kwargs)
        vocab, next_id = tokenizer.get_vocab(), len(tokenizer)
    except (OSError, ValueError):
        vocab, next_id = {}, vocab_size
    ids = []
    for token in tokens:
        if token in vocab:
            ids.append(vocab[token])
        else:
            ids.append(next_id)
            next_id += 1
    return ids


def _named(sub_config, source) -> dict:
    """A sub-configuration as a dict that records where it came from (`_name_or_path`, the card's `base_model`)."""
    sub = sub_config.to_dict()
    sub["_name_or_path"] = str(source)
    return sub


def _load_llm(model, llm, vocab_size: int, dtype: torch.dtype, hub_kwargs: dict) -> None:
    """Put the whole pretrained causal LM (body + head) in `model`, with embedding rows up to `vocab_size` (new rows
    at the mean of the old ones)."""
    from transformers import AutoModelForCausalLM

    causal_lm = AutoModelForCausalLM.from_pretrained(str(llm), dtype=dtype, **hub_kwargs)
    if causal_lm.get_input_embeddings().weight.shape[0] < vocab_size:
        causal_lm.resize_token_embeddings(vocab_size, mean_resizing=True)
    model.model.language_model = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
    model.lm_head = causal_lm.get_output_embeddings()


def _text_config(llm, hub_kwargs: dict):
    from transformers import AutoConfig

    text_config = AutoConfig.from_pretrained(str(llm), **hub_kwargs)
    if hasattr(text_config, "text_config") and text_config.model_type not in ("llama",):
        text_config = text_config.get_text_config()
    return text_config


def _finish(model, dtype: torch.dtype, freeze_encoders: bool):
    """Check that every weight came from a component or a fresh init, cast, freeze the encoders, train mode."""
    leftovers = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if leftovers:
        raise RuntimeError(f"assembly left parts without weights: {leftovers[:5]} (a part of the model is not covered).")
    model.to(dtype)
    model.config.dtype = dtype
    if freeze_encoders:
        model.freeze_encoders()
    model.train()
    return model


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
    from transformers import InstructBlipConfig, WhisperConfig

    from .models import BeatsConfig, FavorConfig
    from .models.beats.modeling_beats import BeatsModel

    hub_kwargs = {k: v for k, v in {"revision": revision, "token": token, "cache_dir": cache_dir}.items() if v is not None}
    forbidden = {"text_config", "speech_config", "audio_config", "vision_config", "qformer_config", "num_query_tokens"} & set(settings)
    if forbidden:
        raise ValueError(f"{sorted(forbidden)} come from the components; pass only connector / window settings.")

    # -- configurations ------------------------------------------------------------------------------------------
    text_config = _text_config(llm, hub_kwargs)
    speech_config = WhisperConfig.from_pretrained(str(speech_encoder), **hub_kwargs)
    instructblip_config = InstructBlipConfig.from_pretrained(str(vision_encoder), **hub_kwargs)
    audio_config = BeatsConfig.from_pretrained(str(audio_encoder), **hub_kwargs) if audio_encoder is not None else None
    (placeholder,) = _new_token_ids(llm, text_config.vocab_size, [audio_visual_token], hub_kwargs)
    vocab_size = max(text_config.vocab_size, placeholder + 1)
    text_dict = _named(text_config, llm)
    text_dict["vocab_size"] = vocab_size
    config = FavorConfig(
        text_config=text_dict,
        speech_config=_named(speech_config, speech_encoder),
        audio_config=_named(audio_config, audio_encoder) if audio_config is not None else None,
        vision_config=_named(instructblip_config.vision_config, vision_encoder),
        qformer_config=_named(instructblip_config.qformer_config, vision_encoder),
        num_query_tokens=instructblip_config.num_query_tokens,
        audio_visual_token_id=placeholder,
        **settings,
    )
    for sub_name, source in (("text_config", llm), ("speech_config", speech_encoder), ("audio_config", audio_encoder),
                             ("vision_config", vision_encoder), ("qformer_config", vision_encoder)):
        if getattr(config, sub_name) is not None:
            getattr(config, sub_name)._name_or_path = str(source)

    # -- the skeleton: no memory, no random init of what the components replace -----------------------------------
    with torch.device("meta"):
        model = model_class(config)
    inner = model.model

    # LLM: the whole causal LM (body + head); one more embedding row for the placeholder if needed
    _load_llm(model, llm, vocab_size, dtype, hub_kwargs)

    # Whisper: the encoder only
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    whisper = load_weights_with_prefixes(speech_encoder, WHISPER_ENCODER_PREFIXES, **hub_kwargs)
    if whisper is None:  # no safetensors: load the whole model, keep its encoder
        from transformers import WhisperModel

        inner.speech_encoder = WhisperModel.from_pretrained(str(speech_encoder), dtype=dtype, **hub_kwargs).get_encoder()
    else:
        prefix = next((p for p in WHISPER_ENCODER_PREFIXES if any(k.startswith(p) for k in whisper)), None)
        if prefix is None:
            raise ValueError(f"{speech_encoder} holds no Whisper encoder weights (no {' or '.join(WHISPER_ENCODER_PREFIXES)} keys).")
        inner.speech_encoder = _module_from_weights(WhisperEncoder, config.speech_config, _strip(whisper, prefix),
                                                    dtype, "Whisper encoder", speech_encoder)

    # InstructBLIP: ViT + Q-Former + query tokens (never its LLM)
    from transformers import InstructBlipQFormerModel, InstructBlipVisionModel

    blip = load_weights_with_prefixes(vision_encoder, tuple(INSTRUCTBLIP_PREFIXES.values()), **hub_kwargs)
    if blip is None:
        from transformers import InstructBlipForConditionalGeneration

        full = InstructBlipForConditionalGeneration.from_pretrained(str(vision_encoder), dtype=dtype, **hub_kwargs)
        blip = {k: v for k, v in full.state_dict().items() if k.startswith(tuple(INSTRUCTBLIP_PREFIXES.values()))}
        del full
    if "query_tokens" not in blip:
        raise ValueError(f"{vision_encoder} holds no InstructBLIP query_tokens: is it an InstructBLIP checkpoint?")
    visual = inner.visual_encoder
    visual.vision_model = _module_from_weights(InstructBlipVisionModel, config.vision_config,
                                               _strip(blip, "vision_model."), dtype, "InstructBLIP ViT", vision_encoder)
    visual.vision_model.post_layernorm.eps = config.vision_output_layer_norm_eps
    visual.qformer = _module_from_weights(InstructBlipQFormerModel, config.qformer_config,
                                          _strip(blip, "qformer."), dtype, "InstructBLIP Q-Former", vision_encoder)
    visual.query_tokens = nn.Parameter(blip["query_tokens"].to(dtype))
    del blip

    # BEATs
    if audio_encoder is not None:
        inner.audio_encoder = BeatsModel.from_pretrained(str(audio_encoder), dtype=dtype, **hub_kwargs)

    # the connector: new, initialised by the model's own rules
    connector = type(inner.connector)(config)
    connector.apply(model._init_weights)
    inner.connector = connector

    return _finish(model, dtype, freeze_encoders)


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
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    from .models.beats.feature_extraction_beats import BeatsFeatureExtractor
    from .models.favor.image_processing_favor import FavorImageProcessor
    from .models.favor.processing_favor import FavorProcessor

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


CLIP_VISION_PREFIX = "vision_model."  # CLIPModel checkpoints; a CLIPVisionModel one has the tower's keys unprefixed
CLAP_AUDIO_PREFIX = "audio_model."  # ClapModel checkpoints; a ClapAudioModel one has them unprefixed


def _tower_weights(source, prefix: str, hub_kwargs: dict) -> dict[str, torch.Tensor] | None:
    """The tower's tensors (keys without `prefix`) from a two-tower checkpoint, or every tensor of a one-tower one."""
    tensors = load_weights_with_prefixes(source, (prefix,), **hub_kwargs)
    if tensors:
        return _strip(tensors, prefix)
    return load_weights_with_prefixes(source, ("",), **hub_kwargs)


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
        dtype, freeze_encoders, revision, token, cache_dir: as for [`assemble_from_components`].
        **settings: other [`AvLlmConfig`] settings (`num_frames`, `num_audio_segments`, `vision_feature_layer`, ...).

    The placeholder and the `<VIS>`, `<AUD>`, `<AUD_VIS>` tokens get the ids the LLM's tokenizer gives them once
    the processor adds them (and the LLM embedding rows for them). Returns the model in train mode, its projectors
    freshly initialised and the pretrained parts in place.
    """
    from transformers import ClapAudioConfig, ClapAudioModel, CLIPVisionConfig, CLIPVisionModel

    from .models.av_llm.configuration_av_llm import MEDIA_TOKEN, MODALITY_TOKENS, AvLlmConfig

    hub_kwargs = {k: v for k, v in {"revision": revision, "token": token, "cache_dir": cache_dir}.items() if v is not None}
    ids = ("media_token_id", "visual_modality_token_id", "audio_modality_token_id", "audio_visual_modality_token_id")
    forbidden = {"text_config", "vision_config", "audio_config", *ids} & set(settings)
    if forbidden:
        raise ValueError(f"{sorted(forbidden)} come from the components; pass only the other AvLlmConfig settings.")

    text_config = _text_config(llm, hub_kwargs)
    vision_config = CLIPVisionConfig.from_pretrained(str(vision_encoder), **hub_kwargs)
    audio_config = ClapAudioConfig.from_pretrained(str(audio_encoder), **hub_kwargs)
    token_ids = _new_token_ids(llm, text_config.vocab_size, [MEDIA_TOKEN, *MODALITY_TOKENS.values()], hub_kwargs)
    text_dict = _named(text_config, llm)
    text_dict["vocab_size"] = max(text_config.vocab_size, max(token_ids) + 1)
    config = AvLlmConfig(
        text_config=text_dict,
        vision_config=_named(vision_config, vision_encoder),
        audio_config=_named(audio_config, audio_encoder),
        **dict(zip(ids, token_ids)),
        **settings,
    )
    for sub_name, source in (("text_config", llm), ("vision_config", vision_encoder), ("audio_config", audio_encoder)):
        getattr(config, sub_name)._name_or_path = str(source)

    with torch.device("meta"):
        model = model_class(config)
    inner = model.model
    _load_llm(model, llm, config.text_config.vocab_size, dtype, hub_kwargs)
    for part, tower_class, sub_config, prefix, source, what in (
        (inner.vision_encoder, CLIPVisionModel, config.vision_config, CLIP_VISION_PREFIX, vision_encoder, "CLIP vision tower"),
        (inner.audio_encoder, ClapAudioModel, config.audio_config, CLAP_AUDIO_PREFIX, audio_encoder, "CLAP audio tower"),
    ):
        weights = _tower_weights(source, prefix, hub_kwargs)
        if weights is None:  # no safetensors: load the model with transformers and keep the tower
            from transformers import AutoModel

            everything = AutoModel.from_pretrained(str(source), dtype=dtype, **hub_kwargs).state_dict()
            weights = _strip(everything, prefix) or everything
        tower = _module_from_weights(tower_class, sub_config, weights, dtype, what, source)
        if tower_class is CLIPVisionModel:
            part.vision_model = tower
        else:
            part.audio_model = tower
    connector = type(inner.connector)(
        config.vision_config.hidden_size, config.audio_token_size, config.text_config.hidden_size,
        bias=config.projector_bias,
    )
    connector.apply(model._init_weights)
    inner.connector = connector
    return _finish(model, dtype, freeze_encoders)


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
    from transformers import AutoTokenizer, ClapFeatureExtractor, CLIPImageProcessor

    from .models.av_llm.processing_av_llm import AvLlmProcessor

    config = getattr(config_or_model, "config", config_or_model)
    return AvLlmProcessor.from_model_config(
        config,
        image_processor=CLIPImageProcessor.from_pretrained(str(vision_encoder)),
        feature_extractor=ClapFeatureExtractor.from_pretrained(str(audio_encoder)),
        tokenizer=AutoTokenizer.from_pretrained(str(llm)),
        **processor_settings,
    )


__all__ = [
    "assemble_av_llm_from_components",
    "assemble_from_components",
    "av_llm_processor_from_components",
    "load_weights_with_prefixes",
    "processor_from_components",
]
