"""The official visual encoder (LAVIS EVA ViT-g + instruction-aware BLIP-2 Q-Former) -> transformers'
`InstructBlipVisionModel` (`vision_model`) + `InstructBlipQFormerModel` (`vision_qformer`) + `vision_query_tokens`."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from transformers import InstructBlipQFormerConfig, InstructBlipVisionConfig

_VIT_BLOCK = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_VIT_TOP = {
    "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
    "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
    "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual_encoder.patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
    "ln_vision.weight": "vision_model.post_layernorm.weight",
    "ln_vision.bias": "vision_model.post_layernorm.bias",
    "query_tokens": "vision_query_tokens",
}


def convert_visual_state_dict(official: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map the official `visual_encoder.*`, `ln_vision.*`, `Qformer.*` and `query_tokens` keys.

    Returns `(converted, unused)`: `unused` lists the official keys that are deliberately not carried over (the
    Q-Former's MLM head `Qformer.cls.*` and its position-id buffer). Any other key that cannot be mapped raises.
    """
    converted: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    unknown: list[str] = []
    biases: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in official.items():
        if key in _VIT_TOP:
            converted[_VIT_TOP[key]] = value
            continue
        block = re.match(r"^visual_encoder\.blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        qkv_bias = re.match(r"^visual_encoder\.blocks\.(\d+)\.attn\.([qv])_bias$", key)
        if qkv_bias:
            biases.setdefault(qkv_bias.group(1), {})[qkv_bias.group(2)] = value
        elif block and block.group(2) in _VIT_BLOCK:
            index, name, kind = block.groups()
            converted[f"vision_model.encoder.layers.{index}.{_VIT_BLOCK[name]}.{kind}"] = value
        elif key.startswith("Qformer.cls.") or key.endswith("position_ids"):
            unused.append(key)
        elif key.startswith("Qformer.bert.embeddings."):
            name = key[len("Qformer.bert.embeddings."):].replace("LayerNorm", "layernorm")
            converted[f"vision_qformer.embeddings.{name}"] = value
        elif key.startswith("Qformer.bert.encoder.layer."):
            name = key[len("Qformer.bert.encoder.layer."):]
            name = name.replace(".attention.self.", ".attention.attention.").replace(".crossattention.self.", ".crossattention.attention.")
            converted[f"vision_qformer.encoder.layer.{name}"] = value
        else:
            unknown.append(key)
    for index, pair in biases.items():
        if set(pair) != {"q", "v"}:
            unknown.append(f"visual_encoder.blocks.{index}.attn: q_bias and v_bias must come together")
            continue
        # EVA has no key bias: the fused qkv bias is [q | 0 | v]
        converted[f"vision_model.encoder.layers.{index}.self_attn.qkv.bias"] = torch.cat(
            [pair["q"], torch.zeros_like(pair["v"]), pair["v"]]
        )
    if unknown:
        raise ValueError(f"Unexpected keys in the official visual encoder: {unknown[:20]}")
    return converted, unused


def visual_configs_from_official(eva: Mapping, qformer: Mapping) -> tuple[InstructBlipVisionConfig, InstructBlipQFormerConfig]:
    """transformers configs from the official hyper-parameters (`create_eva_vit_g` arguments and the BERT config of
    the Q-Former). The released model: ViT-g 1408 wide, 39 layers, 16 heads, MLP 6144 (mlp_ratio 4.3637), patch 14,
    224 px; Q-Former bert-base (768, 12 layers, 12 heads, 3072), cross-attention every 2 layers, vocab 30523."""
    vision = InstructBlipVisionConfig(
        hidden_size=eva["embed_dim"],
        intermediate_size=int(eva["embed_dim"] * eva["mlp_ratio"]),
        num_hidden_layers=eva["depth"],
        num_attention_heads=eva["num_heads"],
        image_size=eva["img_size"],
        patch_size=eva["patch_size"],
        layer_norm_eps=1e-6,
        qkv_bias=bool(eva.get("qkv_bias", True)),
    )
    qformer_config = InstructBlipQFormerConfig(
        vocab_size=qformer["vocab_size"],
        hidden_size=qformer["hidden_size"],
        num_hidden_layers=qformer["num_hidden_layers"],
        num_attention_heads=qformer["num_attention_heads"],
        intermediate_size=qformer["intermediate_size"],
        hidden_act=qformer.get("hidden_act", "gelu"),
        hidden_dropout_prob=qformer.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=qformer.get("attention_probs_dropout_prob", 0.1),
        max_position_embeddings=qformer.get("max_position_embeddings", 512),
        layer_norm_eps=qformer.get("layer_norm_eps", 1e-12),
        pad_token_id=qformer.get("pad_token_id", 0),
        cross_attention_frequency=qformer.get("cross_attention_freq", 2),
        encoder_hidden_size=qformer.get("encoder_width", eva["embed_dim"]),
    )
    return vision, qformer_config


__all__ = ["convert_visual_state_dict", "visual_configs_from_official"]
