"""BEATs (Chen et al., 2022), the audio-event encoder of video-SALMONN: configuration, model, Kaldi-fbank feature
extractor."""

from ..common.family import ModelFamily, register_family
from .configuration_beats import BeatsConfig
from .feature_extraction_beats import BeatsFeatureExtractor
from .modeling_beats import BeatsModel

BEATS = register_family(
    ModelFamily(
        model_type="beats",
        name="BEATs",
        config_class=BeatsConfig,
        model_class=BeatsModel,
        feature_extractor_class=BeatsFeatureExtractor,
    )
)

__all__ = ["BEATS", "BeatsConfig", "BeatsFeatureExtractor", "BeatsModel"]
