"""Official video-SALMONN / FAVOR checkpoints -> `FavorForConditionalGeneration` state dicts.

The official model (`OpenLLAMAPEFTModel`) keeps its weights under these prefixes; every key is either mapped,
dropped for a stated reason (aliases of the same tensor, the unused second Q-Former, buffers), or reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..models import FavorConfig
from .beats import beats_config_from_official, convert_beats_state_dict
from .visual import convert_visual_state_dict, visual_configs_from_official

# the official model registers the same module under several names; state_dict() lists every name
OFFICIAL_ALIAS_PREFIXES = (
    "speech_Qformer.",
    "joint_Qformer.",
    "speech_query_tokens",
    "joint_query_tokens",
    "ln_speech.",
    "ln_joint.",
    "joint_frame_position_embedding.",
    "llama_proj_speech.",
    "llama_proj_joint.",
)
# trained but never used in the forward pass of the released configuration (ext_same_qformer=True)
OFFICIAL_UNUSED_PREFIXES = ("low_Qformer.",)

_QFORMER_LAYER_MAP = {
    "attention.self.query": "self_attention.query",
    "attention.self.key": "self_attention.key",
    "attention.self.value": "self_attention.value",
    "attention.output.dense": "self_attention.dense",
    "attention.output.LayerNorm": "self_attention.layer_norm",
    "crossattention.self.query": "cross_attention.query",
    "crossattention.self.key": "cross_attention.key",
    "crossattention.self.value": "cross_attention.value",
    "crossattention.output.dense": "cross_attention.dense",
    "crossattention.output.LayerNorm": "cross_attention.layer_norm",
    "encoder_causal_attention.self.query": "window_attention.query",
    "encoder_causal_attention.self.key": "window_attention.key",
    "encoder_causal_attention.self.value": "window_attention.value",
    "encoder_causal_attention.output.dense": "window_attention.dense",
    "encoder_causal_attention.output.LayerNorm": "window_attention.layer_norm",
    "intermediate_query.dense": "intermediate",
    "output_query.dense": "output",
    "output_query.LayerNorm": "output_layer_norm",
}
_LLM_PREFIX = "llama_model.base_model.model."
_LORA_PATTERN = re.compile(r"^(.*)\.lora_([AB])\.(\w+)\.weight$")


@dataclass
class ConversionReport:
    """What happened to every official key."""

    converted: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # key -> reason
    unexpected: list[str] = field(default_factory=list)  # keys nobody knows how to map
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint did not provide

    def raise_if_incomplete(self):
        if self.unexpected or self.missing:
            raise ValueError(
                "Official checkpoint does not match the configuration:\n"
                f"  unexpected keys ({len(self.unexpected)}): {self.unexpected[:20]}\n"
                f"  missing keys ({len(self.missing)}): {self.missing[:20]}"
            )


def convert_official_state_dict(
    official: Mapping[str, torch.Tensor],
    config: FavorConfig,
    *,
    lora_alpha: float = 32.0,
    merge_lora: bool = True,
    placeholder_rows: int = 1,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], ConversionReport]:
    """Map an official full state dict (encoders + PEFT-wrapped LLM + connector) to our keys.

    Returns `(state_dict, lora_state_dict, report)`. With `merge_lora=True` each LoRA pair is folded into its base
    weight (W + alpha / r * B @ A) and `lora_state_dict` is empty; otherwise the LoRA weights are returned under PEFT
    adapter keys for `model.language_model`. The LLM vocabulary grows by `placeholder_rows` rows for the
    audio-visual placeholder token (embedding: mean row, never looked up; LM head: zero row; the model masks that logit).
    """
    report = ConversionReport()
    remaining = dict(official)
    converted: dict[str, torch.Tensor] = {}

    def take(prefix: str) -> dict[str, torch.Tensor]:
        found = {k[len(prefix):]: remaining.pop(k) for k in [k for k in remaining if k.startswith(prefix)]}
        return found

    # aliases, unused modules, buffers
    for key in list(remaining):
        if key.startswith(OFFICIAL_ALIAS_PREFIXES):
            report.dropped[key] = "alias of another official key"
        elif key.startswith(OFFICIAL_UNUSED_PREFIXES):
            report.dropped[key] = "second Q-Former, unused by the released configuration"
        elif key.endswith(("position_ids", "rotary_emb.inv_freq")):
            report.dropped[key] = "buffer recomputed at load"
        else:
            continue
        del remaining[key]

    # visual encoder (ViT, ln_vision, instruction-aware Q-Former, its query tokens)
    visual_keys = {k: remaining.pop(k) for k in [k for k in remaining if k.startswith(("visual_encoder.", "ln_vision.", "Qformer.", "query_tokens"))]}
    visual, visual_dropped = convert_visual_state_dict(visual_keys)
    converted.update({f"model.visual_encoder.{k}": v for k, v in visual.items()})
    report.dropped.update(visual_dropped)

    # Whisper encoder: same layout as transformers' WhisperEncoder
    converted.update({f"model.speech_encoder.{k}": v for k, v in take("speech_encoder.").items()})

    # BEATs
    beats = take("beats.")
    if config.audio_config is not None:
        beats_dropped: list[str] = []
        beats_converted = convert_beats_state_dict(beats, config.audio_config, report=beats_dropped)
        converted.update({f"model.audio_encoder.{k}": v for k, v in beats_converted.items()})
        report.dropped.update({f"beats.{entry}": "dropped by the BEATs converter" for entry in beats_dropped})
    elif beats:
        report.unexpected.extend(f"beats.{k}" for k in beats)

    # connector
    connector = {
        "speech_pre_qformer_proj.": "speech_projection.",
        "beats_pre_qformer_proj.": "audio_projection.",
        "ln_video.": "layer_norm.",
        "video_frame_position_embedding.": "position_embedding.",
        "video_Qformer.bert.embeddings.LayerNorm.": "qformer.query_layer_norm.",
    }
    for old, new in connector.items():
        converted.update({f"model.connector.{new}{k}": v for k, v in take(old).items()})
    converted.update(_convert_projection(take("llama_proj."), config))
    coarse = max(range(len(config.resolutions)), key=lambda i: config.resolutions[i][0])
    fine = [i for i in range(len(config.resolutions)) if i != coarse]
    if "video_query_tokens" in remaining:
        converted[f"model.connector.query_tokens.{coarse}"] = remaining.pop("video_query_tokens")
    if "low_query_tokens" in remaining:
        if len(fine) != 1:
            report.unexpected.append("low_query_tokens")
            remaining.pop("low_query_tokens")
        else:
            converted[f"model.connector.query_tokens.{fine[0]}"] = remaining.pop("low_query_tokens")
    for key, value in take("video_Qformer.bert.encoder.layer.").items():
        match = re.match(r"^(\d+)\.(.+)\.(weight|bias)$", key)
        target = _QFORMER_LAYER_MAP.get(match.group(2)) if match else None
        if target is None:
            report.unexpected.append(f"video_Qformer.bert.encoder.layer.{key}")
            continue
        converted[f"model.connector.qformer.layers.{match.group(1)}.{target}.{match.group(3)}"] = value

    # LLM (PEFT-wrapped) with its LoRA
    llm = take(_LLM_PREFIX)
    llm_converted, lora = _convert_llm(llm, lora_alpha=lora_alpha, merge_lora=merge_lora, report=report)
    converted.update(llm_converted)
    if placeholder_rows:
        _add_placeholder_rows(converted, placeholder_rows)

    report.unexpected.extend(sorted(remaining))
    report.converted = len(converted)
    return converted, lora, report


def _convert_projection(weights: dict, config: FavorConfig) -> dict:
    if not weights:
        return {}
    if config.resolution_merge == "concat":
        return {f"model.connector.projection.{k}": v for k, v in weights.items()}
    raise ValueError("Official checkpoints concatenate resolutions: convert with resolution_merge='concat'.")


def _convert_llm(llm: dict, *, lora_alpha: float, merge_lora: bool, report: ConversionReport):
    base, lora_a, lora_b = {}, {}, {}
    for key, value in llm.items():
        match = _LORA_PATTERN.match(key)
        if match:
            (lora_a if match.group(2) == "A" else lora_b)[match.group(1)] = value
        else:
            base[key] = value
    converted = {}
    for key, value in base.items():
        if key == "lm_head.weight":
            converted["lm_head.weight"] = value
        elif key.startswith("model."):
            converted[f"model.language_model.{key[len('model.'):]}"] = value
        else:
            report.unexpected.append(_LLM_PREFIX + key)
    adapter = {}
    for module in sorted(lora_a):
        a, b = lora_a[module], lora_b.pop(module, None)
        if b is None:
            report.unexpected.append(f"{_LLM_PREFIX}{module}.lora_A (no lora_B)")
            continue
        target = f"model.language_model.{module[len('model.'):]}"
        if merge_lora:
            scaling = lora_alpha / a.shape[0]
            weight = converted[f"{target}.weight"]
            converted[f"{target}.weight"] = (weight.double() + scaling * (b.double() @ a.double())).to(weight.dtype)
        else:
            adapter[f"base_model.model.{target}.lora_A.weight"] = a
            adapter[f"base_model.model.{target}.lora_B.weight"] = b
    report.unexpected.extend(f"{_LLM_PREFIX}{m}.lora_B (no lora_A)" for m in lora_b)
    return converted, adapter


def _add_placeholder_rows(state_dict: dict, rows: int):
    embed_key, head_key = "model.language_model.embed_tokens.weight", "lm_head.weight"
    if embed_key in state_dict:
        embed = state_dict[embed_key]
        state_dict[embed_key] = torch.cat([embed, embed.mean(0, keepdim=True).expand(rows, -1)])
    if head_key in state_dict:
        head = state_dict[head_key]
        state_dict[head_key] = torch.cat([head, head.new_zeros(rows, head.shape[1])])


def favor_config_from_official(official: Mapping, *, placeholder_rows: int = 1) -> FavorConfig:
    """A `FavorConfig` reproducing an official model from its hyper-parameters.

    `official` holds `official_args` (the official yaml switches) and `modules` (the sub-module configs: `eva`,
    `qformer`, `video_qformer`, `whisper`, `beats`, `llama`), as in the fixtures' `config.json`. The behaviours of the
    official code are switched on: frame i attends frames j >= i, Whisper sees exactly one 30 s chunk counted in full,
    resolutions are concatenated, frames are sampled at both ends of every 1 s clip.
    """
    args, modules = official["official_args"], official["modules"]
    vision_config, qformer_config = visual_configs_from_official(modules["eva"], modules["qformer"])
    use_beats = bool(args.get("use_beats", False))
    groupsize, num_queries = int(args["groupsize"]), int(args["num_video_query"])
    resolutions = [[groupsize, num_queries]]
    if args.get("low_groupsize") is not None:
        low = int(args["low_groupsize"])
        resolutions.insert(0, [low, num_queries * low // groupsize])
    video_qformer = modules["video_qformer"]
    text_config = dict(modules["llama"])
    vocab_size = int(text_config["vocab_size"])
    text_config["vocab_size"] = vocab_size + placeholder_rows
    text_config = {k: v for k, v in text_config.items() if k in _LLAMA_FIELDS}
    text_config["model_type"] = "llama"
    causal = str(args.get("causal_attention", "false")).lower() == "true"
    return FavorConfig(
        text_config=text_config,
        speech_config={k: v for k, v in modules["whisper"].items() if k in _WHISPER_FIELDS},
        audio_config=beats_config_from_official(modules["beats"]) if use_beats else None,
        vision_config=vision_config,
        qformer_config=qformer_config,
        num_query_tokens=int(modules["qformer"].get("query_length", 32)),
        resolutions=resolutions,
        resolution_merge="concat",
        causal_attention="future" if causal else "none",
        connector_hidden_size=video_qformer["hidden_size"],
        connector_num_hidden_layers=video_qformer["num_hidden_layers"],
        connector_num_attention_heads=video_qformer["num_attention_heads"],
        connector_intermediate_size=video_qformer["intermediate_size"],
        connector_hidden_act=video_qformer["hidden_act"],
        connector_layer_norm_eps=video_qformer["layer_norm_eps"],
        connector_dropout=video_qformer["hidden_dropout_prob"],
        max_window_positions=4096,
        audio_frame_mode="whole_chunks",
        max_audio_chunks=1,
        video_sampling="clip_ends",
        audio_visual_token_id=vocab_size if placeholder_rows else None,
    )


_LLAMA_FIELDS = {
    "vocab_size", "max_position_embeddings", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "hidden_act", "initializer_range", "rms_norm_eps", "rope_theta",
    "attention_bias", "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings",
}
_WHISPER_FIELDS = {
    "vocab_size", "num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads", "decoder_layers",
    "decoder_attention_heads", "decoder_ffn_dim", "encoder_ffn_dim", "activation_function", "max_source_positions",
    "max_target_positions", "scale_embedding", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
}


__all__ = ["ConversionReport", "convert_official_state_dict", "favor_config_from_official"]
