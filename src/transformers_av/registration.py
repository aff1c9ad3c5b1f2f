"""Registration of the package's classes with the transformers Auto* factories (runs on `import transformers_av`)."""

from transformers import AutoConfig, AutoModel, AutoModelForMultimodalLM

from .configuration import FavorConfig


def register_auto_classes() -> None:
    AutoConfig.register("favor", FavorConfig, exist_ok=True)
    from .modeling.favor import FavorForConditionalGeneration, FavorModel

    AutoModel.register(FavorConfig, FavorModel, exist_ok=True)
    AutoModelForMultimodalLM.register(FavorConfig, FavorForConditionalGeneration, exist_ok=True)
