"""Visual encoder parts: per video frame, a fixed number of feature tokens for the synchroniser and the connector.

A part is chosen by the `model_type` of `FavorConfig.vision_config` through a registry, so a new visual encoder is a
small module plus one `register_visual_encoder` call -- nothing in `favor.py` changes. The contract of a part:

* `__init__(config: FavorConfig)`: build from the composite config (the part reads `vision_config` and whatever else
  it owns, e.g. `qformer_config`), without touching tensor values (models are built on the meta device);
* `feature_size(config) -> int` (static): the width D of its tokens, known from the config alone;
* `forward(frames (n, 3, H, W), qformer_input_ids (n, L) | None, qformer_attention_mask (n, L) | None, **kwargs)
  -> BaseModelOutputWithPooling`: `pooler_output` holds the tokens of the n real frames, (n, config.num_query_tokens,
  D) (padding frames never reach a part); `last_hidden_state` the vision tower's output they were read from, and
  `hidden_states` / `attentions` the tower's when `kwargs` ask for them (`output_hidden_states`, `output_attentions`).
  The instruction inputs are the per-frame copy of the sample's instruction, for parts that use one. (A part may also
  return the token tensor alone; it then reports no tower outputs.)
* `init_weights(std)`: initialise the part's own parameters that transformers' `_init_weights` does not know.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import InstructBlipQFormerModel, InstructBlipVisionModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..common.clip_frames import ClipFrameEncoder

VISUAL_ENCODERS: dict[str, type[nn.Module]] = {}


def register_visual_encoder(model_type: str, encoder_class: type[nn.Module]) -> type[nn.Module]:
    """Use `encoder_class` for every `FavorConfig` whose `vision_config.model_type` is `model_type`."""
    for attribute in ("feature_size", "forward"):
        if not hasattr(encoder_class, attribute):
            raise TypeError(f"{encoder_class.__name__} is not a visual encoder part: it has no `{attribute}`.")
    VISUAL_ENCODERS[model_type] = encoder_class
    return encoder_class


def visual_encoder_class(model_type: str) -> type[nn.Module]:
    """The part registered for a `vision_config.model_type`."""
    if model_type not in VISUAL_ENCODERS:
        known = ", ".join(sorted(VISUAL_ENCODERS))
        raise ValueError(
            f"No visual encoder part is registered for vision_config.model_type={model_type!r} (registered: {known}); "
            "register one with transformers_av.models.favor.visual_encoders.register_visual_encoder."
        )
    return VISUAL_ENCODERS[model_type]


def build_visual_encoder(config) -> nn.Module:
    """The registered part for `config.vision_config`, built; its token width must be the configuration's
    `visual_feature_size` (which the synchroniser and the connector are sized with)."""
    part = visual_encoder_class(config.vision_config.model_type)
    if part.feature_size(config) != config.visual_feature_size:
        raise ValueError(
            f"The visual encoder part {part.__name__} makes tokens of width {part.feature_size(config)}, but "
            f"FavorConfig.visual_feature_size is {config.visual_feature_size} (the vision tower's hidden_size, or the "
            "visual Q-Former's for InstructBLIP): a part must output tokens of that width."
        )
    return part(config)


class InstructBlipFrameEncoder(nn.Module):
    """InstructBLIP's EVA ViT and its instruction-aware Q-Former: `num_query_tokens` tokens per frame (FAVOR,
    video-SALMONN). Attribute names follow `InstructBlipModel` (`vision_model`, `qformer`, `query_tokens`)."""

    def __init__(self, config):
        super().__init__()
        self.num_query_tokens = config.num_query_tokens
        self.vision_model = InstructBlipVisionModel(config.vision_config)
        # InstructBLIP normalises the ViT output with its own eps (ln_vision), unlike the ViT blocks
        self.vision_model.post_layernorm.eps = config.vision_output_layer_norm_eps
        self.qformer = InstructBlipQFormerModel(config.qformer_config)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.qformer_config.hidden_size))

    @staticmethod
    def feature_size(config) -> int:
        return config.qformer_config.hidden_size

    def init_weights(self, std: float) -> None:
        init.normal_(self.query_tokens, mean=0.0, std=std)

    def forward(self, frames, qformer_input_ids=None, qformer_attention_mask=None, **kwargs) -> BaseModelOutputWithPooling:
        vision = self.vision_model(pixel_values=frames.to(self.vision_model.dtype), **kwargs)
        image_embeds = vision.last_hidden_state  # (n, 1 + patches, Dvit)
        queries = self.query_tokens.expand(frames.shape[0], -1, -1)
        attention_mask = None
        if qformer_input_ids is not None:
            text_mask = torch.ones_like(qformer_input_ids) if qformer_attention_mask is None else qformer_attention_mask
            query_mask = torch.ones(queries.shape[:2], dtype=text_mask.dtype, device=text_mask.device)
            attention_mask = torch.cat([query_mask, text_mask], dim=1)
        output = self.qformer(
            input_ids=qformer_input_ids,
            attention_mask=attention_mask,
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device),
        ).last_hidden_state
        return BaseModelOutputWithPooling(
            last_hidden_state=image_embeds,
            pooler_output=output[:, : self.num_query_tokens],  # (n, N, D): the query positions, not the instruction's
            hidden_states=vision.hidden_states,
            attentions=vision.attentions,
        )


class ClipFrameTokens(nn.Module):
    """A CLIP ViT per frame with its patch grid average-pooled to `num_query_tokens` tokens (a square number): CLIP
    frames for the FAVOR causal Q-Former connector. The instruction is not used."""

    def __init__(self, config):
        super().__init__()
        self.encoder = ClipFrameEncoder(config.vision_config, pooled_tokens_per_frame=config.num_query_tokens)

    @staticmethod
    def feature_size(config) -> int:
        return config.vision_config.hidden_size

    def init_weights(self, std: float) -> None:  # every parameter is CLIP's own
        return None

    def forward(self, frames, qformer_input_ids=None, qformer_attention_mask=None, **kwargs) -> BaseModelOutputWithPooling:
        output = self.encoder(frames[:, None].to(self.encoder.vision_model.dtype), **kwargs)  # frames as 1-frame videos
        return BaseModelOutputWithPooling(
            last_hidden_state=output.tower_outputs.last_hidden_state,
            pooler_output=output.frame_tokens[:, 0],  # (n, N, D)
            hidden_states=output.tower_outputs.hidden_states,
            attentions=output.tower_outputs.attentions,
        )


register_visual_encoder("instructblip_vision_model", InstructBlipFrameEncoder)
register_visual_encoder("clip_vision_model", ClipFrameTokens)

__all__ = [
    "VISUAL_ENCODERS",
    "build_visual_encoder",
    "ClipFrameTokens",
    "InstructBlipFrameEncoder",
    "register_visual_encoder",
    "visual_encoder_class",
]
