"""Registration of the package's classes with the transformers Auto* factories (runs on `import transformers_av`)."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoModelForMultimodalLM,
    AutoProcessor,
)

from .configuration import AvLlmConfig, BeatsConfig, FavorConfig


def register_auto_classes() -> None:
    from .modeling.av_llm import AvLlmForConditionalGeneration, AvLlmModel
    from .modeling.beats import BeatsModel
    from .modeling.favor import FavorForConditionalGeneration, FavorModel
    from .processing.feature_extraction_beats import BeatsFeatureExtractor
    from .processing.image_processing_favor import FavorImageProcessor
    from .processing.processing_av_llm import AvLlmProcessor
    from .processing.processing_favor import FavorProcessor

    AutoConfig.register("favor", FavorConfig, exist_ok=True)
    AutoConfig.register("beats", BeatsConfig, exist_ok=True)
    AutoModel.register(FavorConfig, FavorModel, exist_ok=True)
    AutoModel.register(BeatsConfig, BeatsModel, exist_ok=True)
    AutoModelForMultimodalLM.register(FavorConfig, FavorForConditionalGeneration, exist_ok=True)
    AutoFeatureExtractor.register(BeatsConfig, BeatsFeatureExtractor, exist_ok=True)
    AutoImageProcessor.register(FavorConfig, slow_image_processor_class=FavorImageProcessor, exist_ok=True)
    AutoProcessor.register(FavorConfig, FavorProcessor, exist_ok=True)

    AutoConfig.register("av_llm", AvLlmConfig, exist_ok=True)
    AutoModel.register(AvLlmConfig, AvLlmModel, exist_ok=True)
    AutoModelForMultimodalLM.register(AvLlmConfig, AvLlmForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(AvLlmConfig, AvLlmProcessor, exist_ok=True)
