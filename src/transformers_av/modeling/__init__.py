from .av_llm import AvLlmForConditionalGeneration, AvLlmMediaOutput, AvLlmModel, AvLlmPreTrainedModel
from .favor import FavorAudioVisualOutput, FavorForConditionalGeneration, FavorModel, FavorPreTrainedModel
from .windows import WindowPlan, audio_frame_count, audio_visual_plan, window_plan

__all__ = [
    "AvLlmForConditionalGeneration",
    "AvLlmMediaOutput",
    "AvLlmModel",
    "AvLlmPreTrainedModel",
    "FavorAudioVisualOutput",
    "FavorForConditionalGeneration",
    "FavorModel",
    "FavorPreTrainedModel",
    "WindowPlan",
    "audio_frame_count",
    "audio_visual_plan",
    "window_plan",
]
