"""transformers-av: audio-visual LLMs (FAVOR, video-SALMONN, the Audio-Visual LLM) as native Hugging Face
transformers models.

Importing the package registers every model family (`transformers_av.models.FAMILIES`) with the transformers Auto*
factories.
"""

from .models import (
    FAMILIES,
    AvLlmConfig,
    AvLlmForConditionalGeneration,
    AvLlmModel,
    AvLlmPreTrainedModel,
    AvLlmProcessor,
    BeatsConfig,
    BeatsFeatureExtractor,
    BeatsModel,
    FavorConfig,
    FavorForConditionalGeneration,
    FavorModel,
    FavorPreTrainedModel,
    FavorProcessor,
    WindowPlan,
    audio_frame_count,
    audio_visual_plan,
    window_plan,
)

from . import hub  # noqa: E402,F401  (installs the checked Hub upload behind push_to_hub)

__version__ = "0.1.0.dev0"

for _family in FAMILIES.values():
    _family.register_auto_classes()
    _family.register_peft_defaults()

__all__ = [
    "AvLlmConfig",
    "AvLlmForConditionalGeneration",
    "AvLlmModel",
    "AvLlmPreTrainedModel",
    "AvLlmProcessor",
    "BeatsConfig",
    "BeatsFeatureExtractor",
    "BeatsModel",
    "FavorConfig",
    "FavorForConditionalGeneration",
    "FavorModel",
    "FavorPreTrainedModel",
    "FavorProcessor",
    "WindowPlan",
    "audio_frame_count",
    "audio_visual_plan",
    "window_plan",
]
