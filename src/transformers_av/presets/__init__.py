"""Ready-made configurations: the published shapes (`paper`: video-SALMONN-13B, FAVOR-13B, the Audio-Visual LLM 7B)
and tiny random-weight ones with offline processors (`tiny`), for demos, training recipes, benchmarks and tests."""

from .paper import (
    ALL_PRESETS,
    AV_LLM_PRESETS,
    PRESETS,
    TRAINING_RECIPES,
    TrainingRecipe,
    favor_preset,
    preset_config,
    preset_parameter_counts,
)
from .tiny import (
    DEMO_CHECKPOINT,
    TINY_MODELS,
    synthetic_benchmark_config,
    tiny_av_llm_config,
    tiny_av_llm_processor,
    tiny_favor_config,
    tiny_processor,
)

__all__ = [
    "ALL_PRESETS",
    "AV_LLM_PRESETS",
    "DEMO_CHECKPOINT",
    "PRESETS",
    "TINY_MODELS",
    "TRAINING_RECIPES",
    "TrainingRecipe",
    "favor_preset",
    "preset_config",
    "preset_parameter_counts",
    "synthetic_benchmark_config",
    "tiny_av_llm_config",
    "tiny_av_llm_processor",
    "tiny_favor_config",
    "tiny_processor",
]
