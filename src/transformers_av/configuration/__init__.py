from .configuration_av_llm import AvLlmConfig
from .configuration_beats import BeatsConfig
from .configuration_favor import FavorConfig

__all__ = ["AvLlmConfig", "BeatsConfig", "FavorConfig"]
