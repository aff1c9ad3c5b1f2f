"""Tiny random-weight configurations of the Audio-Visual LLM (Shu et al., 2023) encoders, for tests and demos.

They keep the structure of the published towers (CLIP ViT with a [CLS] token and a square patch grid; a two-stage
HTSAT Swin tower over a square log-mel image) and shrink only widths, depths and image sizes.
"""

from __future__ import annotations

from transformers import ClapAudioConfig, CLIPVisionConfig


def tiny_clip_vision_config(image_size: int = 28, patch_size: int = 14) -> CLIPVisionConfig:
    """A 2-layer, 32-wide CLIP ViT; 28 px / patch 14 gives a 2x2 patch grid (P = 4) plus [CLS]."""
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=16,
        layer_norm_eps=1e-5,
    )


def tiny_clap_audio_config() -> ClapAudioConfig:
    """A 2-stage HTSAT: 16 mel bins, a 64x64 spectrogram image, patch 8 (8x8 grid, then 4x4 after merging).

    One segment's last hidden state is (32 channels, 1, 16), so a flattened segment token has 512 values.
    """
    return ClapAudioConfig(
        num_mel_bins=16,
        spec_size=64,
        window_size=4,
        patch_size=8,
        patch_stride=8,
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        num_hidden_layers=2,
        hidden_size=32,
        projection_dim=16,
        num_classes=5,
        enable_fusion=False,
    )


#: the 512-token test tokenizer plus <av_media>, <VIS>, <AUD> and <AUD_VIS> (ids 512..515)
TINY_AV_LLM_VOCAB_SIZE = 516


def tiny_av_llm_config(**overrides):
    """A tiny `AvLlmConfig`: the tiny CLIP and HTSAT towers above, a 2-layer 64-wide Llama, 4 frames and 2 audio
    segments; token ids match `tiny_av_llm_processor`. Keyword overrides go to `AvLlmConfig`."""
    from ..configuration.configuration_av_llm import AvLlmConfig
    from .configs import tiny_text_config

    kwargs = {
        "text_config": tiny_text_config(vocab_size=TINY_AV_LLM_VOCAB_SIZE),
        "vision_config": tiny_clip_vision_config().to_dict(),
        "audio_config": tiny_clap_audio_config().to_dict(),
        "num_frames": 4,
        "num_audio_segments": 2,
        "audio_sampling_rate": 16000,
        "media_token_id": 512,
        "visual_modality_token_id": 513,
        "audio_modality_token_id": 514,
        "audio_visual_modality_token_id": 515,
    }
    kwargs.update(overrides)
    return AvLlmConfig(**kwargs)
