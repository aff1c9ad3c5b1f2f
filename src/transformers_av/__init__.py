"""transformers-av: audio-visual LLMs (FAVOR, video-SALMONN) as native Hugging Face transformers models.

Importing the package registers its configurations and models with the transformers Auto* factories.
"""

from .configuration import AvLlmConfig, BeatsConfig, FavorConfig
from .modeling import (
    AvLlmForConditionalGeneration,
    AvLlmModel,
    AvLlmPreTrainedModel,
    FavorForConditionalGeneration,
    FavorModel,
    FavorPreTrainedModel,
    WindowPlan,
    audio_frame_count,
    audio_visual_plan,
    window_plan,
)
from .registration import register_auto_classes

__version__ = "0.1.0.dev0"

register_auto_classes()

__all__ = [
    "AvLlmConfig",
    "AvLlmForConditionalGeneration",
    "AvLlmModel",
    "AvLlmPreTrainedModel",
    "BeatsConfig",
    "FavorConfig",
    "FavorForConditionalGeneration",
    "FavorModel",
    "FavorPreTrainedModel",
    "WindowPlan",
    "audio_frame_count",
    "audio_visual_plan",
    "window_plan",
]
