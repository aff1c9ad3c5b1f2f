"""The model families, one folder each (`beats`, `favor`, `av_llm`), over what they share (`common`).

Importing this package builds every family's record ([`FAMILIES`]); `import transformers_av` registers them with the
transformers Auto* factories.
"""

from .av_llm import AV_LLM, AvLlmConfig, AvLlmForConditionalGeneration, AvLlmMediaOutput, AvLlmModel
from .av_llm import AvLlmPreTrainedModel, AvLlmProcessor
from .beats import BEATS, BeatsConfig, BeatsFeatureExtractor, BeatsModel
from .common.family import FAMILIES, ModelFamily, count_parameters, family_of
from .favor import FAVOR, FavorAudioVisualOutput, FavorConfig, FavorForConditionalGeneration, FavorImageProcessor
from .favor import FavorModel, FavorPreTrainedModel, FavorProcessor, WindowPlan, audio_frame_count
from .favor import audio_visual_plan, window_plan

__all__ = [
    "AV_LLM",
    "AvLlmConfig",
    "AvLlmForConditionalGeneration",
    "AvLlmMediaOutput",
    "AvLlmModel",
    "AvLlmPreTrainedModel",
    "AvLlmProcessor",
    "BEATS",
    "BeatsConfig",
    "BeatsFeatureExtractor",
    "BeatsModel",
    "FAMILIES",
    "FAVOR",
    "FavorAudioVisualOutput",
    "FavorConfig",
    "FavorForConditionalGeneration",
    "FavorImageProcessor",
    "FavorModel",
    "FavorPreTrainedModel",
    "FavorProcessor",
    "ModelFamily",
    "WindowPlan",
    "audio_frame_count",
    "audio_visual_plan",
    "count_parameters",
    "family_of",
    "window_plan",
]
