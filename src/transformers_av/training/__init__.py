"""Training: the JSONL dataset format and its lazy collators (FAVOR / video-SALMONN, and the Audio-Visual LLM's
modality-augmented one), LoRA on the LLM (`apply_lora`), `FavorTrainer`, LLM-only gradient checkpointing, synthetic
audio-visual tasks, and the `transformers-av train` command (`TrainSettings`, `run_training`, the AV-LLM's stages)."""

from ..synthetic.tasks import MATCH_QUESTION, MATCH_TONES, SYNC_PALETTE, SYNC_QUESTION, make_match_task, make_sync_task
from .data import CONVERSATION_FIELD, MEDIA_FIELDS, AvLlmDataCollator, FavorDataCollator, load_av_dataset, normalize_row
from .peft import (
    LLM_ATTENTION_LORA_TARGET_REGEX,
    LLM_ATTENTION_MLP_LORA_TARGET_REGEX,
    LORA_TARGET_REGEXES,
    apply_lora,
    lora_config,
    trainable_parameter_summary,
)
from .run import WeightDigestCallback, run_training, weights_digest
from .settings import STAGE_COMMON, STAGE_RECIPES, TrainSettings, load_train_settings
from .trainer import (
    LOSS_TERMS,
    FavorTrainer,
    disable_llm_gradient_checkpointing,
    enable_llm_gradient_checkpointing,
    favor_training_arguments,
)

__all__ = [
    "AvLlmDataCollator",
    "CONVERSATION_FIELD",
    "FavorDataCollator",
    "FavorTrainer",
    "LLM_ATTENTION_LORA_TARGET_REGEX",
    "LLM_ATTENTION_MLP_LORA_TARGET_REGEX",
    "LORA_TARGET_REGEXES",
    "LOSS_TERMS",
    "MATCH_QUESTION",
    "MATCH_TONES",
    "MEDIA_FIELDS",
    "STAGE_COMMON",
    "STAGE_RECIPES",
    "SYNC_PALETTE",
    "SYNC_QUESTION",
    "TrainSettings",
    "WeightDigestCallback",
    "apply_lora",
    "disable_llm_gradient_checkpointing",
    "enable_llm_gradient_checkpointing",
    "favor_training_arguments",
    "load_av_dataset",
    "load_train_settings",
    "lora_config",
    "make_match_task",
    "make_sync_task",
    "normalize_row",
    "run_training",
    "trainable_parameter_summary",
    "weights_digest",
]
