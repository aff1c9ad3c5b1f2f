"""Training: the JSONL dataset format (rows carry their modality) and its lazy collators (FAVOR / video-SALMONN, the
Audio-Visual LLM), the recipes' row mixing (video-SALMONN's mixed training, the Audio-Visual LLM's modality mix), LoRA
on the LLM (`apply_lora`), `FavorTrainer`, LLM-only gradient checkpointing, synthetic audio-visual tasks, FAVOR's
storytelling set (`make_storytelling_set`), and the `transformers-av train` command (`TrainSettings`, `run_training`,
the papers' recipes)."""

from ..synthetic.tasks import MATCH_QUESTION, MATCH_TONES, SYNC_PALETTE, SYNC_QUESTION, make_match_task, make_sync_task
from .data import (
    CONVERSATION_FIELD,
    MEDIA_FIELDS,
    MODALITY_FIELD,
    ROW_MODALITIES,
    AvLlmDataCollator,
    FavorDataCollator,
    declared_modality,
    load_av_dataset,
    normalize_row,
    row_modality,
)
from .mixing import VIDEO_SALMONN_MIXING, EpochSampler, MixedTrainingData, MixingRules, mix_row
from .peft import (
    LLM_ATTENTION_LORA_TARGET_REGEX,
    LLM_ATTENTION_MLP_LORA_TARGET_REGEX,
    LORA_TARGET_REGEXES,
    apply_lora,
    lora_config,
    trainable_parameter_summary,
)
from .run import WeightDigestCallback, run_training, weights_digest
from .settings import STAGE_RECIPES, TrainSettings, load_train_settings
from .storytelling import STORY_PROMPT, STORY_QUESTION, make_storytelling_set
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
    "EpochSampler",
    "FavorDataCollator",
    "FavorTrainer",
    "LLM_ATTENTION_LORA_TARGET_REGEX",
    "LLM_ATTENTION_MLP_LORA_TARGET_REGEX",
    "LORA_TARGET_REGEXES",
    "LOSS_TERMS",
    "MATCH_QUESTION",
    "MATCH_TONES",
    "MEDIA_FIELDS",
    "MODALITY_FIELD",
    "MixedTrainingData",
    "MixingRules",
    "ROW_MODALITIES",
    "STAGE_RECIPES",
    "STORY_PROMPT",
    "STORY_QUESTION",
    "SYNC_PALETTE",
    "SYNC_QUESTION",
    "TrainSettings",
    "VIDEO_SALMONN_MIXING",
    "WeightDigestCallback",
    "apply_lora",
    "declared_modality",
    "disable_llm_gradient_checkpointing",
    "enable_llm_gradient_checkpointing",
    "favor_training_arguments",
    "load_av_dataset",
    "load_train_settings",
    "lora_config",
    "make_match_task",
    "make_storytelling_set",
    "make_sync_task",
    "mix_row",
    "normalize_row",
    "row_modality",
    "run_training",
    "trainable_parameter_summary",
    "weights_digest",
]
