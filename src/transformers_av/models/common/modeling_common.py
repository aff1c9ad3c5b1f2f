"""What every audio-visual LLM of the package does the same way, whatever its encoders and connector.

* frozen pretrained encoders: no gradient, no dropout / batch-norm updates ([`FrozenEncodersMixin`]);
* LLM-width media tokens written over the expanded placeholder of the prompt, found in `input_ids` or in given
  `inputs_embeds` ([`token_mask`], [`scatter_media_embeds`]), and the
  placeholder never predicted ([`mask_placeholder_logits`]);
* positions that ignore left padding ([`positions_after_left_padding`]);
* media inputs consumed at prefill only ([`drop_media_after_prefill`]);
* the dummy-input rule that keeps distributed ranks running the same modules ([`runs_absent_encoders`]);
* saving with the model's own code and pushing with a model card ([`SelfContainedSaveMixin`]).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .hub_uploads import hub_uploader


class SelfContainedSaveMixin:
    """`save_pretrained` that also writes the model's source files and an `auto_map` (the folder then loads with
    `trust_remote_code=True` where transformers_av is not installed), and `push_to_hub` through the package's checked
    upload with a rendered model card (`transformers_av.hub.push_to_hub`, see [`hub_uploader`]). Where this file
    itself runs as remote code, both are the plain transformers methods."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        try:
            from transformers_av.models.common.remote_code import save_model_with_code
        except ImportError:  # running as remote code: the folder already has the sources
            return super().save_pretrained(save_directory, *args, **kwargs)
        return save_model_with_code(self, save_directory, super().save_pretrained, *args, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the model with a rendered model card, after checking it (finite weights, a consistent config):
        see `transformers_av.hub.push_to_hub` for the arguments (`processor=`, `training=`, `eval_results=`, ...)."""
        upload = hub_uploader("model")
        if upload is None:
            return super().push_to_hub(repo_id, **kwargs)
        return upload(self, repo_id, **kwargs)


class FrozenEncodersMixin:
    """For a model whose `encoder_modules()` returns its pretrained encoders: freezing them, and keeping frozen ones in
    eval mode while the model trains (a frozen encoder is a fixed feature extractor, as in the papers' recipes)."""

    def encoder_modules(self) -> dict[str, nn.Module]:  # pragma: no cover - every model defines it
        raise NotImplementedError

    def freeze_encoders(self, freeze: bool = True):
        """Freeze (or unfreeze) the pretrained encoders. Frozen encoders run under `torch.no_grad()` and stay in eval
        mode (no dropout, batch norms keep their running statistics) when the model trains."""
        for module in self.encoder_modules().values():
            module.requires_grad_(not freeze)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.encoder_modules().values():
            if not any(parameter.requires_grad for parameter in module.parameters()):
                module.eval()
        return self

    @staticmethod
    def _grad_context(module: nn.Module):
        trainable = any(p.requires_grad for p in module.parameters())
        return contextlib.nullcontext() if trainable else torch.no_grad()


def runs_absent_encoders(mode: str, training: bool) -> bool:
    """Whether a training step must also run the modules its batch does not need (on a zero dummy input, times 0).

    `mode` is the config's `run_absent_encoders`: `"never"`, `"always"`, or `"distributed"` (only when
    `torch.distributed` runs more than one process, where DDP / FSDP / ZeRO-3 need every rank to run -- and give
    gradients to -- the same modules)."""
    if not training or mode == "never":
        return False
    if mode == "always":
        return True
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return distributed and torch.distributed.get_world_size() > 1


def embedding_rows(embedding: nn.Module) -> int:
    """The rows of an input embedding, also when PEFT wraps it to train some of its rows (the wrapper keeps the
    embedding as `original_module` and has no `num_embeddings` of its own)."""
    return getattr(embedding, "original_module", embedding).num_embeddings


def token_mask(
    token_id: int | None,
    input_ids: torch.LongTensor | None,
    inputs_embeds: torch.FloatTensor | None,
    embedding: nn.Module,
    name: str = "the placeholder",
) -> torch.BoolTensor:
    """(B, L) where the prompt holds `token_id`: read from `input_ids` when given, else found in `inputs_embeds` as the
    rows equal to that token's embedding (how transformers' VLMs locate their media tokens in given embeddings)."""
    if input_ids is not None:
        return input_ids == token_id if token_id is not None else torch.zeros_like(input_ids, dtype=torch.bool)
    if token_id is None:
        return torch.zeros(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
    rows = embedding_rows(embedding)
    if token_id >= rows:
        raise ValueError(
            f"{name} (id {token_id}) has no row in the input embeddings ({rows} rows), so it cannot "
            "be found in `inputs_embeds`: pass `input_ids`, or resize the token embeddings to include it."
        )
    row = embedding(torch.tensor(token_id, device=embedding.weight.device)).to(inputs_embeds.device, inputs_embeds.dtype)
    return (inputs_embeds == row).all(-1)


def scatter_media_embeds(
    placeholder: torch.BoolTensor,
    inputs_embeds: torch.FloatTensor,
    embeds: torch.FloatTensor,
    token_counts: torch.LongTensor,
    processor_name: str,
) -> torch.FloatTensor:
    """Write each sample's first `token_counts[b]` rows of `embeds` (B, C_max, D) over its placeholder positions
    (`placeholder` (B, L), see [`token_mask`]).

    The processor expands the placeholder with the same counting function the connector uses, so the numbers must
    agree; a mismatch (hand-built inputs, another processor's output) is an error that names both counts."""
    found = placeholder.sum(1)
    expected = token_counts.to(found.device)
    if not torch.equal(found, expected):
        raise ValueError(
            f"The prompt holds {found.tolist()} media placeholder tokens per sample but the media produce "
            f"{expected.tolist()} tokens. Build the inputs with {processor_name}, which expands the placeholder with "
            "the same token count as the model."
        )
    keep = torch.arange(embeds.shape[1], device=embeds.device)[None, :] < expected.to(embeds.device)[:, None]
    values = embeds[keep].to(inputs_embeds.dtype)  # (sum of counts, D), sample by sample
    return inputs_embeds.masked_scatter(placeholder[..., None].to(inputs_embeds.device), values)


def embed_tokens_without_placeholder(
    embedding: nn.Module, input_ids: torch.LongTensor, placeholder_id: int | None
) -> torch.FloatTensor:
    """Token embeddings of `input_ids`. A placeholder id beyond the embedding rows (a checkpoint whose vocabulary was
    not resized for it) is never looked up: its rows are overwritten by the media tokens anyway. Inside the
    vocabulary it is embedded like any token, so `input_ids` and `embedding(input_ids)` give the same model inputs."""
    if placeholder_id is None or placeholder_id < embedding_rows(embedding):
        return embedding(input_ids)
    return embedding(input_ids.masked_fill(input_ids == placeholder_id, 0))


def mask_placeholder_logits(logits: torch.FloatTensor, placeholder_id: int | None) -> torch.FloatTensor:
    """The placeholder is never a prediction: it gets no probability mass in the loss or in generate()."""
    if placeholder_id is None or placeholder_id >= logits.shape[-1]:
        return logits
    column = torch.arange(logits.shape[-1], device=logits.device) == placeholder_id
    return logits.masked_fill(column, torch.finfo(logits.dtype).min)


def positions_after_left_padding(attention_mask: torch.Tensor, length: int) -> torch.LongTensor:
    """Positions that start at 0 on each row's first attended token (left padding), and keep counting through any
    later zeros (as the reference implementation does for a masked trailing token). Covers the last `length`
    positions of the mask, so it also serves the decoding steps of generate()."""
    total = attention_mask.shape[1]
    leading_padding = (attention_mask.long().cumsum(-1) == 0).sum(-1, keepdim=True)
    positions = torch.arange(total, device=attention_mask.device)[None, :] - leading_padding
    return positions.clamp(min=0)[:, total - length :]


def drop_media_after_prefill(model_inputs: dict, media_input_names, is_first_iteration: bool, use_cache: bool) -> dict:
    """The media were merged into the cache at prefill; with a cache, decoding steps only carry new text tokens."""
    if not is_first_iteration and use_cache:
        for name in media_input_names:
            model_inputs.pop(name, None)
    return model_inputs


__all__ = [
    "FrozenEncodersMixin",
    "SelfContainedSaveMixin",
    "drop_media_after_prefill",
    "embed_tokens_without_placeholder",
    "mask_placeholder_logits",
    "positions_after_left_padding",
    "runs_absent_encoders",
    "scatter_media_embeds",
    "token_mask",
]
