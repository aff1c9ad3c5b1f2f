"""Tiny random-weight configurations and offline processors of the real architectures, for tests, benchmarks,
demos and training recipes that must run without downloads.

They keep every structural constant of the published models (32 visual tokens per frame, 25 Whisper frames per
0.5 s, 30 s Whisper chunks, the window/query layout) and shrink only widths and depths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from transformers import (
    AutoTokenizer,
    BertTokenizer,
    ClapAudioConfig,
    ClapFeatureExtractor,
    CLIPVisionConfig,
    WhisperFeatureExtractor,
)

from ..models import (
    AvLlmConfig,
    AvLlmProcessor,
    BeatsFeatureExtractor,
    FavorConfig,
    FavorImageProcessor,
    FavorProcessor,
    family_of,
)

ASSETS = Path(__file__).parent / "assets"  # a 512-token SentencePiece LLM tokenizer and a 211-word BERT vocabulary
#: the shipped trained checkpoint (model + processor) of `transformers-av demo`: a tiny video-SALMONN trained from
#: scratch on the synthetic benchmark by `examples/synthetic/video_salmonn.yaml`
DEMO_CHECKPOINT = ASSETS / "demo_video_salmonn"

TINY_VOCAB_SIZE = 513  # the 512-token test tokenizer plus the <AV> placeholder
#: the Whisper input length of `synthetic_benchmark_config`: the length of a synthetic benchmark clip
SYNTHETIC_AUDIO_SECONDS = 4.0


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


def synthetic_benchmark_config(variant: str = "video_salmonn", **overrides) -> FavorConfig:
    """`tiny_favor_config(variant)` sized for the 4 s, 32 px clips of `transformers_av.synthetic.benchmark`, to be
    trained from scratch (encoders included) on 2 CPU cores in minutes. Keyword overrides go to FavorConfig (e.g. the
    ablation switches).

    Shape: 28 px frames (a 2 x 2 patch grid) and a 4 s Whisper input (200 positions) instead of 30 s, keeping one
    chunk (the official truncation).

    Initialisation: the default ranges (0.02 everywhere) make random encoders and connector pass almost nothing of the
    clip on, and training from there stalls (`tests/training/test_sync_task.py` measured each): a Whisper at
    init_std 0.02 is dominated by its positional signal (0.2 here); the visual Q-Former at 0.02 varies by <1% from
    frame to frame (0.3); the connector at 0.02 gives nearly the same tokens for every clip (0.2).
    """
    speech_config = tiny_speech_config()
    speech_config["max_source_positions"] = int(SYNTHETIC_AUDIO_SECONDS * 50)  # Whisper: 50 positions per second
    speech_config["init_std"] = 0.2
    qformer_config = tiny_qformer_config()
    qformer_config["initializer_range"] = 0.3
    kwargs = {"image_size": 28, "speech_config": speech_config, "qformer_config": qformer_config,
              "initializer_range": 0.2, "audio_chunk_seconds": SYNTHETIC_AUDIO_SECONDS, "max_audio_chunks": 1}
    kwargs.update(overrides)
    return tiny_favor_config(variant, **kwargs)


# -- the Audio-Visual LLM ------------------------------------------------------------------------------------------
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


def synthetic_av_llm_config(**overrides):
    """`tiny_av_llm_config` for the 4 s, 32 px clips of `transformers_av.synthetic.benchmark`, trained from scratch:
    its 4 frames are one per second of a clip (the `visual` and `sync` families change colour once a second) and its
    2 audio segments are 2 s each (the CLAP extractor's window). Keyword overrides go to `AvLlmConfig`."""
    return tiny_av_llm_config(**overrides)


# -- processors ---------------------------------------------------------------------------------------------------
def tiny_processor(config=None, *, image_size: int | None = None, **settings):
    """`FavorProcessor` for a tiny config (default: `tiny_favor_config("video_salmonn")`). The placeholder `<AV>` gets
    id 512, the tiny configs' `audio_visual_token_id`. Extra keyword arguments go to `FavorProcessor`."""
    config = config if config is not None else tiny_favor_config("video_salmonn")
    tokenizer = AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer")
    qformer_tokenizer = BertTokenizer(str(ASSETS / "bert_tokenizer" / "vocab.txt"), truncation_side="left")
    qformer_tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    size = image_size if image_size is not None else config.vision_config.image_size
    return FavorProcessor.from_model_config(
        config,
        image_processor=FavorImageProcessor(size=size),
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        feature_extractor=WhisperFeatureExtractor(feature_size=config.speech_config.num_mel_bins),
        audio_feature_extractor=BeatsFeatureExtractor(),
        **settings,
    )


def tiny_av_llm_processor(config=None, **settings):
    """`AvLlmProcessor` for a tiny Audio-Visual LLM config (default: `tiny_av_llm_config()`): the 512-token tokenizer
    with `<av_media>`, `<VIS>`, `<AUD>`, `<AUD_VIS>` as ids 512..515, CLIP pixels at the config's image size and a
    16-bin CLAP log-mel at the config's sampling rate over 2 s windows. Extra keyword arguments go to
    `AvLlmProcessor`."""
    # resolved here, not at import: transformers warns about torchvision when the name is first resolved
    from transformers import CLIPImageProcessor

    config = config if config is not None else tiny_av_llm_config()
    size = config.vision_config.image_size
    rate = config.audio_sampling_rate
    feature_extractor = ClapFeatureExtractor(
        feature_size=config.audio_config.num_mel_bins, sampling_rate=rate, hop_length=rate // 100, max_length_s=2,
        fft_window_size=rate // 40, frequency_max=rate // 2, truncation="rand_trunc", padding="repeatpad",
    )
    return AvLlmProcessor.from_model_config(
        config,
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        feature_extractor=feature_extractor,
        tokenizer=AutoTokenizer.from_pretrained(ASSETS / "llama_tokenizer"),
        **settings,
    )



# -- named presets ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TinyPreset:
    """A tiny random-weight model and its offline processor, by name (`transformers-av demo/train --model NAME`)."""

    description: str
    config: Callable[..., Any]
    processor: Callable[[Any], Any]

    def build(self, **config_overrides) -> tuple[Any, Any]:
        """(generation model with random weights, processor); keyword arguments override the configuration."""
        config = self.config(**config_overrides)
        return family_of(config).generation_class(config), self.processor(config)


TINY_MODELS: dict[str, TinyPreset] = {
    "tiny-video-salmonn": TinyPreset("tiny video-SALMONN", partial(tiny_favor_config, "video_salmonn"), tiny_processor),
    "tiny-favor": TinyPreset("tiny FAVOR", partial(tiny_favor_config, "favor"), tiny_processor),
    "tiny-av-llm": TinyPreset("tiny Audio-Visual LLM", tiny_av_llm_config, tiny_av_llm_processor),
    "tiny-video-salmonn-synthetic": TinyPreset(
        "tiny video-SALMONN sized for the synthetic benchmark (28 px, 4 s Whisper input)",
        partial(synthetic_benchmark_config, "video_salmonn"), tiny_processor),
    "tiny-av-llm-synthetic": TinyPreset(
        "tiny Audio-Visual LLM for the synthetic benchmark (4 frames, two 2 s audio segments)",
        synthetic_av_llm_config, tiny_av_llm_processor),
    "tiny-favor-synthetic": TinyPreset(
        "tiny FAVOR sized for the synthetic benchmark (28 px, 4 s Whisper input)",
        partial(synthetic_benchmark_config, "favor"), tiny_processor),
}

__all__ = [
    "TINY_MODELS",
    "TinyPreset",
    "ASSETS",
    "DEMO_CHECKPOINT",
    "TINY_AV_LLM_VOCAB_SIZE",
    "TINY_VOCAB_SIZE",
    "SYNTHETIC_AUDIO_SECONDS",
    "synthetic_av_llm_config",
    "synthetic_benchmark_config",
    "tiny_audio_config",
    "tiny_av_llm_config",
    "tiny_av_llm_processor",
    "tiny_clap_audio_config",
    "tiny_clip_vision_config",
    "tiny_favor_config",
    "tiny_processor",
    "tiny_qformer_config",
    "tiny_speech_config",
    "tiny_text_config",
    "tiny_vision_config",
]
