"""The published model shapes as ready-made configs: FAVOR-7B/13B and video-SALMONN-7B/13B (`FavorConfig`), and the
Audio-Visual LLM of Shu et al. (`AvLlmConfig`: CLIP ViT-L/14 + CLAP HTSAT + Vicuna-7B).

They describe the released checkpoints, so they switch on the official behaviours (see
`transformers_av.conversion.favor_config_from_official`): frame i attends frames j >= i, one 30 s Whisper chunk
counted in full, resolutions concatenated, frames sampled at both ends of each 1 s clip.
"""

from __future__ import annotations

import torch

from ..models import count_parameters, family_of
from ..models.av_llm.configuration_av_llm import CLIP_VIT_L_14, MEDIA_TOKEN, MODALITY_TOKENS, AvLlmConfig
from ..models.favor.configuration_favor import FavorConfig

VICUNA = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
    "13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40},
}
VICUNA_VOCAB = 32000
WHISPER_LARGE_V2 = {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120,
                    "decoder_layers": 32, "decoder_attention_heads": 20, "decoder_ffn_dim": 5120, "num_mel_bins": 80,
                    "vocab_size": 51865, "max_source_positions": 1500, "max_target_positions": 448}
BEATS_ITER3_PLUS = {"input_patch_size": 16, "embed_dim": 512, "encoder_layers": 12, "encoder_embed_dim": 768,
                    "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12, "deep_norm": True,
                    "layer_norm_first": False, "conv_pos": 128, "conv_pos_groups": 16, "num_buckets": 320,
                    "max_distance": 800, "gru_rel_pos": True}
EVA_VIT_G = {"hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39, "num_attention_heads": 16,
             "image_size": 224, "patch_size": 14, "layer_norm_eps": 1e-6}
INSTRUCTBLIP_QFORMER = {"vocab_size": 30523, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                        "intermediate_size": 3072, "cross_attention_frequency": 2, "encoder_hidden_size": 1408}

PRESETS = ("favor-7b", "favor-13b", "video-salmonn-7b", "video-salmonn-13b")
AV_LLM_PRESETS = ("av-llm-7b",)
ALL_PRESETS = PRESETS + AV_LLM_PRESETS


def favor_preset(name: str, **overrides) -> FavorConfig:
    """`FavorConfig` of a published model: one of `PRESETS`. Keyword overrides go to `FavorConfig`."""
    family, _, size = name.lower().rpartition("-")
    if name.lower() not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    salmonn = family == "video-salmonn"
    text = {"model_type": "llama", "vocab_size": VICUNA_VOCAB + 1, "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **VICUNA[size]}
    kwargs = dict(
        text_config=text,
        speech_config=WHISPER_LARGE_V2,
        audio_config=BEATS_ITER3_PLUS if salmonn else None,
        vision_config=EVA_VIT_G,
        qformer_config=INSTRUCTBLIP_QFORMER,
        resolutions=[[1, 3], [10, 30]] if salmonn else [[10, 32]],
        resolution_merge="concat",
        causal_attention="future",
        audio_frame_mode="whole_chunks",
        max_audio_chunks=1,
        video_sampling="clip_ends",
        audio_visual_token_id=VICUNA_VOCAB,
    )
    kwargs.update(overrides)
    return FavorConfig(**kwargs)


def av_llm_preset(name: str = "av-llm-7b", **overrides) -> AvLlmConfig:
    """`AvLlmConfig` of the Audio-Visual LLM paper's shape: CLIP ViT-L/14 (224 px), CLAP HTSAT (`ClapAudioConfig`
    defaults, the `laion/clap-htsat-unfused` audio tower), Vicuna-7B with the media placeholder and the `<VIS>`,
    `<AUD>`, `<AUD_VIS>` tokens appended to its 32,000-token vocabulary, 32 frames and 4 audio segments at 48 kHz.
    Keyword overrides go to `AvLlmConfig`."""
    if name.lower() not in AV_LLM_PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(AV_LLM_PRESETS)}.")
    new_tokens = [MEDIA_TOKEN, *MODALITY_TOKENS.values()]
    text = {"model_type": "llama", "vocab_size": VICUNA_VOCAB + len(new_tokens), "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **VICUNA["7b"]}
    ids = dict(zip(("media_token_id", "visual_modality_token_id", "audio_modality_token_id",
                    "audio_visual_modality_token_id"),
                   range(VICUNA_VOCAB, VICUNA_VOCAB + len(new_tokens))))
    kwargs = dict(text_config=text, vision_config=dict(CLIP_VIT_L_14), audio_config={}, num_frames=32,
                  num_audio_segments=4, audio_sampling_rate=48000, **ids)
    kwargs.update(overrides)
    return AvLlmConfig(**kwargs)


def preset_config(name: str, **overrides) -> FavorConfig | AvLlmConfig:
    """The config of any preset in `ALL_PRESETS`."""
    if name.lower() in AV_LLM_PRESETS:
        return av_llm_preset(name, **overrides)
    return favor_preset(name, **overrides)


def preset_parameter_counts(name: str) -> dict[str, int]:
    """Exact parameter counts of a preset per part of its family ([`transformers_av.models.count_parameters`]:
    "visual encoder", "speech encoder", "audio-event encoder", "connector" for FAVOR / video-SALMONN; "visual encoder",
    "audio encoder", "projectors" for the Audio-Visual LLM; "LLM", "LM head" and "total" for both), computed on the
    meta device (no memory, no weights)."""
    config = preset_config(name)
    with torch.device("meta"):
        model = family_of(config).generation_class(config)
    return count_parameters(model)


__all__ = ["ALL_PRESETS", "AV_LLM_PRESETS", "PRESETS", "av_llm_preset", "favor_preset", "preset_config",
           "preset_parameter_counts"]
