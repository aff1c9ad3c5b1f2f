from .favor import FavorAudioVisualOutput, FavorForConditionalGeneration, FavorModel, FavorPreTrainedModel
from .windows import WindowPlan, audio_frame_count, audio_visual_plan, window_plan

__all__ = [
    "FavorAudioVisualOutput",
    "FavorForConditionalGeneration",
    "FavorModel",
    "FavorPreTrainedModel",
    "WindowPlan",
    "audio_frame_count",
    "audio_visual_plan",
    "window_plan",
]
