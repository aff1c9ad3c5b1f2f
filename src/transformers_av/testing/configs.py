"""Tiny random-weight configurations of the real architectures, for tests, benchmarks and demos.

They keep every structural constant of the published models (32 visual tokens per frame, 25 Whisper frames per
0.5 s, 30 s Whisper chunks, the window/query layout) and shrink only widths and depths.
"""

from __future__ import annotations

from ..configuration import FavorConfig

TINY_VOCAB_SIZE = 513  # the 512-token test tokenizer plus the <AV> placeholder


def tiny_text_config(vocab_size: int = TINY_VOCAB_SIZE) -> dict:
    return {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
    }


def tiny_speech_config() -> dict:
    return {
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": 16,
        "num_mel_bins": 80,
        "max_source_positions": 1500,
        "vocab_size": 64,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 1,
    }


def tiny_audio_config() -> dict:
    return {
        "input_patch_size": 16,
        "embed_dim": 16,
        "encoder_layers": 2,
        "encoder_embed_dim": 32,
        "encoder_ffn_embed_dim": 64,
        "encoder_attention_heads": 4,
        "conv_pos": 128,
        "conv_pos_groups": 16,
        "num_buckets": 320,
        "max_distance": 800,
    }


def tiny_vision_config(image_size: int = 224) -> dict:
    return {
        "hidden_size": 32,
        "intermediate_size": 139,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": image_size,
        "patch_size": 14,
        "layer_norm_eps": 1e-6,
        # InstructBLIP's default (1e-10) would make a random tiny ViT output ~1e-6 whatever the picture
        "initializer_range": 0.02,
    }


def tiny_qformer_config() -> dict:
    return {
        "vocab_size": 212,
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 48,
        "cross_attention_frequency": 2,
        "encoder_hidden_size": 32,
        "max_position_embeddings": 512,
    }


def tiny_favor_config(variant: str = "video_salmonn", *, image_size: int = 224, **overrides) -> FavorConfig:
    """A tiny FavorConfig. `variant="video_salmonn"`: Whisper + BEATs, resolutions [[1, 3], [10, 30]];
    `variant="favor"`: Whisper only, one resolution [[10, 32]]. Keyword overrides go to FavorConfig."""
    if variant not in ("video_salmonn", "favor"):
        raise ValueError(f"variant must be 'video_salmonn' or 'favor', got {variant!r}.")
    salmonn = variant == "video_salmonn"
    kwargs = {
        "text_config": tiny_text_config(),
        "speech_config": tiny_speech_config(),
        "audio_config": tiny_audio_config() if salmonn else None,
        "vision_config": tiny_vision_config(image_size),
        "qformer_config": tiny_qformer_config(),
        "resolutions": [[1, 3], [10, 30]] if salmonn else [[10, 32]],
        "connector_hidden_size": 16,
        "connector_num_hidden_layers": 2,
        "connector_num_attention_heads": 2,
        "connector_intermediate_size": 48,
        "audio_visual_token_id": TINY_VOCAB_SIZE - 1,
    }
    kwargs.update(overrides)
    return FavorConfig(**kwargs)


__all__ = ["tiny_favor_config", "tiny_text_config", "tiny_speech_config", "tiny_audio_config", "tiny_vision_config", "tiny_qformer_config"]
