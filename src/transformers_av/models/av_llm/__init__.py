"""The Audio-Visual LLM (Shu et al., 2023): CLIP frames and CLAP segments, linear projectors, and the modality tokens
`<VIS>` `<AUD>` `<AUD_VIS>` that choose which encoders a sample uses."""

from ..common.family import LLM_LORA_TARGETS, CardVariant, ModelFamily, register_family
from .configuration_av_llm import AvLlmConfig
from .modeling_av_llm import AvLlmForConditionalGeneration, AvLlmMediaOutput, AvLlmModel, AvLlmPreTrainedModel
from .processing_av_llm import AvLlmProcessor

AV_LLM = register_family(
    ModelFamily(
        model_type="av_llm",
        name="Audio-Visual LLM",
        config_class=AvLlmConfig,
        model_class=AvLlmModel,
        generation_class=AvLlmForConditionalGeneration,
        processor_class=AvLlmProcessor,
        parameter_groups={
            "vision_encoder": "visual encoder",
            "audio_encoder": "audio encoder",
            "connector": "projectors",
            "language_model": "LLM",
            "lm_head": "LM head",
        },
        components={
            "llm": ("text_config", "language model"),
            "vision_encoder": ("vision_config", "visual encoder (CLIP ViT)"),
            "audio_encoder": ("audio_config", "audio encoder (CLAP HTSAT)"),
        },
        lora_target_modules=LLM_LORA_TARGETS,
        lora_modules_to_save=("connector",),
        card_tags=("audio-visual", "video", "audio", "transformers-av"),
        card_variants=(CardVariant("Audio-Visual LLM", "av_llm.md", tags=("av-llm",)),),
    )
)

__all__ = [
    "AV_LLM",
    "AvLlmConfig",
    "AvLlmForConditionalGeneration",
    "AvLlmMediaOutput",
    "AvLlmModel",
    "AvLlmPreTrainedModel",
    "AvLlmProcessor",
]
