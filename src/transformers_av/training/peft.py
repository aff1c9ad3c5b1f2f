"""LoRA on the LLM of a FAVOR / video-SALMONN model (and of the Audio-Visual LLM), as in the papers' training recipes.

FAVOR and video-SALMONN fine-tune the LLM with LoRA of rank 32 and train the whole connector (audio projections,
joint LayerNorm, window position table, query tokens, causal Q-Former and the projection into the LLM); the encoders
(InstructBLIP ViT + Q-Former, Whisper, BEATs) and the base LLM stay frozen. Which LLM weights get LoRA is written
two ways:

* the papers (FAVOR §4.2, video-SALMONN §4): "the attention query, key and value projections and feed-forward
  network weights", i.e. q/k/v + gate/up/down: `target="attention+mlp"` minus `o_proj`, which no option gives
  exactly;
* the official code and released checkpoints (bytedance/SALMONN, branch videosalmonn): q/k/v/o with alpha 32 and
  dropout 0.1 (DESIGN.md §4) -- `target="attention"`, the default, and what converted checkpoints hold. For Vicuna-13B
  this is 0.4% of the LLM's parameters, the share both papers quote.

The Audio-Visual LLM (Shu et al., 2023) trains its LLM fully in stage 2 (no LoRA); `apply_lora` is offered for it as
a cheaper option, not as the paper's recipe.

The LoRA targets are given as a regex anchored on the LLM's decoder layers: the Whisper encoder has modules with the
same leaf names (`speech_encoder.layers.N.self_attn.q_proj`), so a plain `target_modules=["q_proj", ...]` would
also put LoRA on Whisper.
"""

from __future__ import annotations

from peft import LoraConfig, get_peft_model
from torch import nn

from ..models import FAMILIES, count_parameters, family_of
from .token_rows import TRAINED_ROWS_ATTRIBUTE, added_token_ids

# The LoRA targets and the fully trained modules are each family's own (`ModelFamily.lora_target_modules`,
# `lora_modules_to_save`); both families name their LLM alike, so the first family's regexes name them for both here.
LORA_TARGET_REGEXES = dict(FAMILIES["favor"].lora_target_modules)
LLM_ATTENTION_LORA_TARGET_REGEX = LORA_TARGET_REGEXES["attention"]
LLM_ATTENTION_MLP_LORA_TARGET_REGEX = LORA_TARGET_REGEXES["attention+mlp"]
#: The LLM's token embedding, whose added tokens' rows train as PEFT trainable tokens.
EMBEDDING_MODULE = "embed_tokens"


def trainable_model_classes() -> tuple[type, ...]:
    """The model classes the training tools take: the generation model of every family that declares LoRA targets."""
    return tuple(family.generation_class for family in FAMILIES.values() if family.lora_target_modules)


def _favor_model(model: nn.Module) -> nn.Module:
    """The `FavorForConditionalGeneration` (or `FavorModel`) inside a possibly PEFT-wrapped model."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def lora_config(
    *,
    r: int = 32,
    alpha: float = 32,
    dropout: float = 0.1,
    target: str = "attention",
    train_connector: bool = True,
    family: str = "favor",
    trainable_token_ids: list[int] | None = None,
):
    """The `peft.LoraConfig` that `apply_lora` uses for a family (`model_type`): LoRA on the LLM only, the connector
    fully trainable, and the embedding rows of `trainable_token_ids` (the tokens the family adds, see
    `training.token_rows`) trained as PEFT trainable tokens."""
    record = family_of(family)
    if target not in record.lora_target_modules:
        raise ValueError(f"target must be one of {sorted(record.lora_target_modules)}, got {target!r}.")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=record.lora_target_modules[target],
        modules_to_save=list(record.lora_modules_to_save) if train_connector else None,
        trainable_token_indices={EMBEDDING_MODULE: list(trainable_token_ids)} if trainable_token_ids else None,
        bias="none",
    )


def apply_lora(
    model: nn.Module,
    *,
    r: int = 32,
    alpha: float = 32,
    dropout: float = 0.1,
    target: str = "attention",
    train_connector: bool = True,
):
    """Wrap a `FavorForConditionalGeneration` or `AvLlmForConditionalGeneration` in a `peft.PeftModel` with LoRA on
    the LLM only.

    target: "attention" (q/k/v/o projections of every decoder layer: the official video-SALMONN configuration and
    checkpoints) or "attention+mlp" (also gate/up/down: closer to the papers' "query, key and value projections and
    feed-forward network weights", with o as well). train_connector: the whole connector becomes trainable
    (`modules_to_save=["connector"]`: PEFT trains a copy and saves it with the adapter). The embedding rows of the
    tokens the family adds (the Audio-Visual LLM's modality tokens and placeholder, `training.token_rows`) train as
    PEFT trainable tokens. Everything else (encoders, base LLM, the other embedding rows, LM head) is frozen;
    frozen encoders run under `torch.no_grad()`.

    Save / load with `PeftModel.save_pretrained(dir)` / `PeftModel.from_pretrained(base_model, dir)`;
    `merge_and_unload()` returns a plain `FavorForConditionalGeneration`.
    """
    if not isinstance(model, trainable_model_classes()):
        names = " or ".join(cls.__name__ for cls in trainable_model_classes())
        raise TypeError(f"apply_lora expects a {names} (its LoRA targets are named from it), got {type(model).__name__}.")
    config = lora_config(r=r, alpha=alpha, dropout=dropout, target=target, train_connector=train_connector,
                         family=model.config.model_type, trainable_token_ids=added_token_ids(model))
    model.freeze_encoders()  # PEFT freezes them too; this also documents the intent
    return get_peft_model(model, config)


class _TrainableParameters:
    """What [`count_parameters`] reads of a model (its `config` and `named_parameters()`), trainable parameters only
    (of an embedding of which only some rows train, those rows: `training.token_rows`)."""

    def __init__(self, model: nn.Module):
        self.config = model.config
        self.model = model

    def named_parameters(self):
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                rows = getattr(parameter, TRAINED_ROWS_ATTRIBUTE, None)
                yield name, parameter if rows is None else parameter[list(rows)]


def trainable_parameter_summary(model: nn.Module) -> dict[str, dict[str, int]]:
    """`{part: {"trainable": n, "total": n}}` of a (possibly PEFT-wrapped) model, per part of its family as
    [`transformers_av.models.count_parameters`] names them (FAVOR: "visual encoder", "speech encoder", "audio-event
    encoder", "connector", "LLM" (LoRA weights included), "LM head"; the Audio-Visual LLM: "visual encoder", "audio
    encoder", "projectors", "LLM", "LM head"), plus "total".

    With `modules_to_save` the connector is held twice (the frozen original and its trainable copy): both count in
    "total"."""
    base = _favor_model(model)
    totals, trainable = count_parameters(base), count_parameters(_TrainableParameters(base))
    return {part: {"trainable": trainable[part], "total": total} for part, total in totals.items()}


__all__ = [
    "LLM_ATTENTION_LORA_TARGET_REGEX",
    "LLM_ATTENTION_MLP_LORA_TARGET_REGEX",
    "LORA_TARGET_REGEXES",
    "apply_lora",
    "lora_config",
    "trainable_model_classes",
    "trainable_parameter_summary",
]
