"""The embedding rows of the tokens a model adds to its LLM's vocabulary train whenever the recipe trains new
parameters: the Audio-Visual LLM's modality tokens `<VIS>`, `<AUD>`, `<AUD_VIS>` (and its media placeholder).

Shu et al. (2023, §3.2): the modality token "will be replaced with the modal sample, and the appropriate encoder and
projector will be activated". Here the token stands at the position of its sample: the processor puts the sample's
media tokens right after it, where it is written, and its own embedding heads the sample as a learned modality
embedding. Those rows are new (initialised at the mean of the vocabulary when a pretrained LLM is extended), so they
must train with the other new parameters:

* stage 1 (the projectors only, the LLM frozen): only these rows of the input embedding train
  ([`train_added_token_rows`]: the gradient of every other row is zeroed and the table is kept out of weight decay);
* LoRA: PEFT's trainable tokens (`LoraConfig(trainable_token_indices=...)`, see `training.peft.lora_config`): the
  rows are saved with the adapter and merged by `merge_and_unload`;
* a fully fine-tuned LLM (stage 2) trains its whole embedding table, these rows included.
"""

from __future__ import annotations

import torch
from torch import nn

#: The attribute that marks an embedding weight of which only some rows train (`FavorTrainer` keeps it out of weight
#: decay: a decayed frozen row would move).
TRAINED_ROWS_ATTRIBUTE = "_trained_token_rows"

__all__ = ["TRAINED_ROWS_ATTRIBUTE", "added_token_ids", "train_added_token_rows"]


def added_token_ids(model: nn.Module) -> list[int]:
    """The ids of the tokens the model's family adds to the LLM vocabulary and reads as embeddings: the Audio-Visual
    LLM's media placeholder and modality tokens (empty for FAVOR / video-SALMONN, whose placeholder is always
    replaced by the connector's output)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "av_llm":
        return []
    ids = [config.media_token_id, *config.modality_token_ids.values()]
    return sorted(token_id for token_id in ids if token_id is not None)


def train_added_token_rows(model: nn.Module) -> list[int]:
    """Let the rows of [`added_token_ids`] of a frozen input embedding train, and only them. Returns the ids (empty
    when the family adds none, or when the whole table trains already)."""
    token_ids = added_token_ids(model)
    weight = model.get_input_embeddings().weight
    if not token_ids or (weight.requires_grad and not hasattr(weight, TRAINED_ROWS_ATTRIBUTE)):
        return []
    if hasattr(weight, TRAINED_ROWS_ATTRIBUTE):
        return list(getattr(weight, TRAINED_ROWS_ATTRIBUTE))
    mask = torch.zeros(weight.shape[0], 1)
    mask[token_ids] = 1.0
    weight.requires_grad_(True)
    # the hook follows the weight to its device and dtype (the Trainer moves the model after this call)
    weight.register_hook(lambda grad: grad * mask.to(device=grad.device, dtype=grad.dtype))
    setattr(weight, TRAINED_ROWS_ATTRIBUTE, tuple(token_ids))
    return token_ids
