"""The published model shapes as ready-made configs: FAVOR-7B/13B and video-SALMONN-7B/13B (`FavorConfig`), and the
Audio-Visual LLM of Shu et al. (`AvLlmConfig`: CLIP ViT-L/14 + CLAP HTSAT + Vicuna-7B); and the papers' training
recipes ([`TRAINING_RECIPES`]), which `transformers-av train` applies with `recipe: NAME`.

The configs describe the released checkpoints, so they switch on the official behaviours (see
`transformers_av.conversion.favor_config_from_official`): frame i attends frames j >= i, one 30 s Whisper chunk
counted in full, resolutions concatenated, frames sampled at both ends of each 1 s clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


# -- training recipes ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingRecipe:
    """A published training recipe as values of `transformers-av train` settings.

    Args:
        name: what `recipe:` names.
        summary: one line on what it trains.
        source: where each value comes from (paper, section, sentence; or the official code's rule).
        settings: `TrainSettings` field -> value; a setting the user gives wins over the recipe's.
    """

    name: str
    summary: str
    source: str
    settings: Mapping[str, Any] = field(default_factory=dict)


#: Shu et al. (2023) §4.1, Implementation Details: "We use the AdamW optimizer with beta = (0.9, 0.98). A cosine
#: annealing learning rate schedule is applied with a warmup ratio of 0.03." (both stages)
AV_LLM_OPTIMISER = {"adam_beta1": 0.9, "adam_beta2": 0.98, "lr_scheduler_type": "cosine", "warmup_steps": 0.03}

#: The Audio-Visual LLM's instruction data per modality (Shu et al. 2023, Table 10, thousands of pairs): a
#: `modality_mix` that resamples other data to the paper's proportions.
AV_LLM_TABLE_10_MIX = {"audio": 45, "visual": 130, "audio_visual": 85}

#: video-SALMONN's mixed-training rules with the official values (github bytedance/SALMONN, branch videosalmonn,
#: datasets/sft_dataset.py): `transformers_av.training.mixing.MixingRules` fields.
VIDEO_SALMONN_MIXING_VALUES = {"video_audio_ratio": 0.2, "image_audio_ratio": 1.0, "image_both_tasks_ratio": 0.5,
                               "av_matching_ratio": 0.1, "av_mismatch_ratio": 0.5}

#: FAVOR's storytelling fine-tuning: "only 100 steps with a very small learning rate" (Sun et al., FAVOR §4.3). The
#: paper gives no value: 1e-5 is this package's reading of "very small" (a tenth of the 1e-4 of a plain fine-tune).
STORYTELLING_LEARNING_RATE = 1e-5
STORYTELLING_STEPS = 100

TRAINING_RECIPES: dict[str, TrainingRecipe] = {
    recipe.name: recipe
    for recipe in (
        TrainingRecipe(
            name="av-llm-stage-1",
            summary="Audio-Visual LLM pre-training: the linear projectors only",
            source=("Shu et al. 2023, §4.1 Implementation Details: \"During the pre-training stage, we freeze the "
                    "encoders and LLM and only train the linear projectors. The learning rate is set to 2e-3. We use a "
                    "total batch size of 256 and set the training epoch of 3\"; AdamW beta (0.9, 0.98), cosine "
                    "schedule, warm-up ratio 0.03"),
            settings={**AV_LLM_OPTIMISER, "learning_rate": 2e-3, "train_llm": False, "lora": False,
                      "total_train_batch_size": 256, "num_train_epochs": 3.0},
        ),
        TrainingRecipe(
            name="av-llm-stage-2",
            summary="Audio-Visual LLM instruction fine-tuning: the projectors and the LLM",
            source=("Shu et al. 2023, §4.1 Implementation Details: \"During the instruction fine-tuning stage, we only "
                    "freeze the encoders and jointly train the linear projectors and LLM. The learning rate is set to "
                    "2e-5. We use a total batch size of 128 and set the training epoch of 1\"; AdamW beta (0.9, 0.98), "
                    "cosine schedule, warm-up ratio 0.03"),
            settings={**AV_LLM_OPTIMISER, "learning_rate": 2e-5, "train_llm": True, "total_train_batch_size": 128,
                      "num_train_epochs": 1.0},
        ),
        TrainingRecipe(
            name="video-salmonn-mixed",
            summary="video-SALMONN's multi-task fine-tuning with mixed unpaired audio-visual training",
            source=("Sun et al. 2024 (video-SALMONN) §3.3 \"a portion of the training set is augmented with unpaired "
                    "audio-visual data and the prompt combines the original tasks for audio and video\", §4 LoRA "
                    "rank 32 on the LLM with the MRC Q-Former trained; the mixing rules and their values are those of "
                    "the official datasets/sft_dataset.py (bytedance/SALMONN, branch videosalmonn): video-only rows "
                    "get a random audio 20% of the time, image rows always (one task or both, 50/50), paired rows "
                    "become audio-video matching questions 10% of the time, half of them mismatched"),
            settings={**VIDEO_SALMONN_MIXING_VALUES, "lora": True, "lora_r": 32},
        ),
        TrainingRecipe(
            name="favor-storytelling",
            summary="FAVOR's storytelling fine-tuning (after the multi-task training)",
            source=("Sun et al. (FAVOR) §4.3: \"The model is fine-tuned on this data for only 100 steps with a very "
                    "small learning rate\"; Appendix C / Table 7 for the data (transformers-av make-storytelling). "
                    f"The learning rate ({STORYTELLING_LEARNING_RATE:g}) is not in the paper: this package's choice"),
            settings={"max_steps": STORYTELLING_STEPS, "learning_rate": STORYTELLING_LEARNING_RATE, "lora": True},
        ),
    )
}


__all__ = ["ALL_PRESETS", "AV_LLM_OPTIMISER", "AV_LLM_PRESETS", "AV_LLM_TABLE_10_MIX", "PRESETS",
           "STORYTELLING_LEARNING_RATE", "STORYTELLING_STEPS", "TRAINING_RECIPES", "TrainingRecipe",
           "VIDEO_SALMONN_MIXING_VALUES", "av_llm_preset", "favor_preset", "preset_config", "preset_parameter_counts"]
