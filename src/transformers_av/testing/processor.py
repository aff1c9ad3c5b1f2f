"""A tiny, fully offline `FavorProcessor` (a 512-token SentencePiece LLM tokenizer and a 211-word BERT vocabulary
shipped with the package), matching `tiny_favor_config`."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"


def tiny_processor(config=None, *, image_size: int | None = None, **settings):
    """`FavorProcessor` for a tiny config (default: `tiny_favor_config("video_salmonn")`). The placeholder `<AV>` gets
    id 512, the tiny configs' `audio_visual_token_id`. Extra keyword arguments go to `FavorProcessor`."""
    from transformers import AutoTokenizer, BertTokenizer, WhisperFeatureExtractor

    from ..processing.feature_extraction_beats import BeatsFeatureExtractor
    from ..processing.image_processing_favor import FavorImageProcessor
    from ..processing.processing_favor import FavorProcessor
    from .configs import tiny_favor_config

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
    from transformers import AutoTokenizer, ClapFeatureExtractor, CLIPImageProcessor

    from ..processing.processing_av_llm import AvLlmProcessor
    from .configs_av_llm import tiny_av_llm_config

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


__all__ = ["tiny_av_llm_processor", "tiny_processor"]
