from .configuration_beats import BeatsConfig
from .configuration_favor import FavorConfig

__all__ = ["BeatsConfig", "FavorConfig"]
