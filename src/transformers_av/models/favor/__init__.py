"""FAVOR and video-SALMONN: Whisper (+ BEATs) and InstructBLIP frames synchronised every 0.5 s, windowed at several
time scales and fused by a causal Q-Former."""

from ..common.family import LLM_LORA_TARGETS, CardVariant, ModelFamily, register_family
from .configuration_favor import FavorConfig
from .image_processing_favor import FavorImageProcessor
from .modeling_favor import FavorAudioVisualOutput, FavorForConditionalGeneration, FavorModel, FavorPreTrainedModel
from .processing_favor import FavorProcessor
from .windows import WindowPlan, audio_frame_count, audio_visual_plan, window_plan

FAVOR = register_family(
    ModelFamily(
        model_type="favor",
        name="FAVOR / video-SALMONN",
        config_class=FavorConfig,
        model_class=FavorModel,
        generation_class=FavorForConditionalGeneration,
        processor_class=FavorProcessor,
        image_processor_class=FavorImageProcessor,
        parameter_groups={
            "visual_encoder": "visual encoder",
            "speech_encoder": "speech encoder",
            "audio_encoder": "audio-event encoder",
            "connector": "connector",
            "language_model": "LLM",
            "lm_head": "LM head",
        },
        components={
            "llm": ("text_config", "language model"),
            "speech_encoder": ("speech_config", "speech encoder (Whisper, encoder only)"),
            "audio_encoder": ("audio_config", "audio-event encoder (BEATs)"),
            "vision_encoder": ("vision_config", "visual encoder (InstructBLIP ViT + Q-Former)"),
        },
        lora_target_modules=LLM_LORA_TARGETS,
        lora_modules_to_save=("connector",),
        card_tags=("audio-visual", "video", "speech", "transformers-av"),
        card_variants=(
            # a BEATs audio-event encoder is what makes a FAVOR configuration video-SALMONN
            CardVariant("video-SALMONN", "video_salmonn.md", tags=("video-salmonn",),
                        applies_to=lambda config: config.audio_config is not None),
            CardVariant("FAVOR", "favor.md", tags=("favor",)),
        ),
    )
)

__all__ = [
    "FAVOR",
    "FavorAudioVisualOutput",
    "FavorConfig",
    "FavorForConditionalGeneration",
    "FavorImageProcessor",
    "FavorModel",
    "FavorPreTrainedModel",
    "FavorProcessor",
    "WindowPlan",
    "audio_frame_count",
    "audio_visual_plan",
    "window_plan",
]
