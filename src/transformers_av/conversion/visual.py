"""The official visual encoder (LAVIS EVA ViT-g + instruction-aware BLIP-2 Q-Former, as used by video-SALMONN and
FAVOR) -> transformers' `InstructBlipVisionModel` (`vision_model`), `InstructBlipQFormerModel` (`qformer`) and
the query tokens (`query_tokens`).

Official keys (`OpenLLAMAPEFTModel.state_dict()` or the LAVIS InstructBLIP `.pth`) and where they go:

- `visual_encoder.cls_token` / `pos_embed` / `patch_embed.proj.*` -> `vision_model.embeddings.class_embedding` /
  `position_embedding` / `patch_embedding.*`;
- `visual_encoder.blocks.N.{norm1, norm2, attn.qkv.weight, attn.proj, mlp.fc1, mlp.fc2}` ->
  `vision_model.encoder.layers.N.{layer_norm1, layer_norm2, self_attn.qkv.weight, self_attn.projection, mlp.fc1,
  mlp.fc2}`; EVA has separate `attn.q_bias` and `attn.v_bias` and no key bias: they become the fused
  `self_attn.qkv.bias` = [q_bias | 0 | v_bias];
- `ln_vision.*` -> `vision_model.post_layernorm.*` (eps 1e-5, unlike the ViT blocks' 1e-6: InstructBlipVisionModel has
  a single `layer_norm_eps`, so the model owning `vision_model` must set `post_layernorm.eps` itself, see
  `LN_VISION_EPS`);
- `Qformer.bert.embeddings.{word_embeddings, position_embeddings, LayerNorm}` ->
  `qformer.embeddings.{word_embeddings, position_embeddings, layernorm}`;
- `Qformer.bert.encoder.layer.N.{attention, crossattention}.self.{query, key, value}` ->
  `qformer.encoder.layer.N.{attention, crossattention}.attention.{query, key, value}`; everything else of a
  layer (`*.output.{dense, LayerNorm}`, `intermediate[_query].dense`, `output[_query].{dense, LayerNorm}`) keeps its name;
- `query_tokens` -> `query_tokens`.

Dropped with a reason: `Qformer.bert.embeddings.position_ids` (a buffer transformers rebuilds) and `Qformer.cls.*`
(BERT's MLM head; InstructBLIP uses the Q-Former as an encoder only). Any other key under these prefixes is reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from transformers import InstructBlipQFormerConfig, InstructBlipVisionConfig

# official key prefixes this converter consumes ("Qformer." / "query_tokens" match exactly: `video_Qformer.`,
# `video_query_tokens`, ... belong to the connector, not to the visual encoder)
VISUAL_PREFIXES = ("visual_encoder.", "ln_vision.", "Qformer.")
VISUAL_KEYS = ("query_tokens",)

# eps of the official `ln_vision` (torch's LayerNorm default); the EVA blocks use 1e-6 (`create_eva_vit_g`)
LN_VISION_EPS = 1e-5
EVA_LAYER_NORM_EPS = 1e-6

# Released sizes, as the official hyper-parameter dicts (`create_eva_vit_g` arguments and the InstructBLIP
# Q-Former's bert-base-uncased config with the added "[DEC]" token): `visual_configs_from_official(OFFICIAL_EVA_VIT_G,
# OFFICIAL_INSTRUCTBLIP_QFORMER)` gives ViT-g 1408 wide, 39 layers, 16 heads (1408 // 88), MLP 6144 (int(1408 *
# 4.3637)), patch 14, 224 px, LayerNorm eps 1e-6; Q-Former 768 wide, 12 layers, 12 heads, FFN 3072, cross-attention
# every 2 layers to the 1408-wide ViT output, vocab 30523, 512 positions, eps 1e-12; 32 query tokens.
OFFICIAL_EVA_VIT_G: dict[str, Any] = {
    "img_size": 224,
    "patch_size": 14,
    "use_mean_pooling": False,
    "embed_dim": 1408,
    "depth": 39,
    "num_heads": 1408 // 88,
    "mlp_ratio": 4.3637,
    "qkv_bias": True,
    "norm_layer": "partial(nn.LayerNorm, eps=1e-6)",
}
OFFICIAL_INSTRUCTBLIP_QFORMER: dict[str, Any] = {
    "vocab_size": 30523,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "cross_attention_freq": 2,
    "encoder_width": 1408,
    "query_length": 32,
}

_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"visual_encoder\.cls_token", "vision_model.embeddings.class_embedding"),
        (r"visual_encoder\.pos_embed", "vision_model.embeddings.position_embedding"),
        (r"visual_encoder\.patch_embed\.proj\.(weight|bias)", r"vision_model.embeddings.patch_embedding.\1"),
        (r"visual_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)", r"vision_model.encoder.layers.\1.layer_norm\2.\3"),
        (r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight", r"vision_model.encoder.layers.\1.self_attn.qkv.weight"),
        (r"visual_encoder\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"vision_model.encoder.layers.\1.self_attn.projection.\2"),
        (r"visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"vision_model.encoder.layers.\1.mlp.\2.\3"),
        (r"ln_vision\.(weight|bias)", r"vision_model.post_layernorm.\1"),
        (r"query_tokens", "query_tokens"),
        (r"Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\.weight", r"qformer.embeddings.\1.weight"),
        (r"Qformer\.bert\.embeddings\.LayerNorm\.(weight|bias)", r"qformer.embeddings.layernorm.\1"),
        (
            r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)",
            r"qformer.encoder.layer.\1.\2.attention.\3.\4",
        ),
        (
            r"Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)",
            r"qformer.encoder.layer.\1.\2.output.\3.\4",
        ),
        (
            r"Qformer\.bert\.encoder\.layer\.(\d+)\.(intermediate|intermediate_query)\.dense\.(weight|bias)",
            r"qformer.encoder.layer.\1.\2.dense.\3",
        ),
        (
            r"Qformer\.bert\.encoder\.layer\.(\d+)\.(output|output_query)\.(dense|LayerNorm)\.(weight|bias)",
            r"qformer.encoder.layer.\1.\2.\3.\4",
        ),
    )
)
_DROPS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Qformer\.bert\.embeddings\.position_ids"), "position-id buffer, rebuilt by transformers"),
    (re.compile(r"Qformer\.cls\..+"), "BERT MLM head of the Q-Former, unused (the Q-Former is only an encoder)"),
)
_QV_BIAS = re.compile(r"visual_encoder\.blocks\.(\d+)\.attn\.([qv])_bias")


class VisualConversion(NamedTuple):
    """Result of `convert_visual_state_dict`; unpacks as `(state_dict, dropped)`."""

    state_dict: dict[str, torch.Tensor]
    """converted tensors under our keys (`vision_model.*`, `qformer.*`, `query_tokens`)"""
    dropped: dict[str, str]
    """official key -> why it is deliberately not carried over"""


def is_visual_key(key: str) -> bool:
    """Whether an official key belongs to the visual encoder (and so to `convert_visual_state_dict`)."""
    return key.startswith(VISUAL_PREFIXES) or key in VISUAL_KEYS


def convert_visual_state_dict(
    official_state_dict: Mapping[str, torch.Tensor], *, unexpected: list[str] | None = None
) -> VisualConversion:
    """Map the official visual-encoder weights to `vision_model.*`, `qformer.*` and `query_tokens`.

    Args:
        official_state_dict: an official state dict; it may hold any other keys (LLM, audio encoders, connector...):
            only the keys of the visual encoder (`is_visual_key`: `visual_encoder.*`, `ln_vision.*`, `Qformer.*`,
            `query_tokens`) are consumed, the others are left to their own converters and do not appear in the result.
        unexpected: if given, visual keys that cannot be mapped (and ViT blocks with only one of q_bias / v_bias) are
            appended to it and left out of the result; if `None` (default) they raise a `ValueError`.

    Returns:
        `VisualConversion(state_dict, dropped)`: the converted tensors (the same tensor objects, not copies, except the
        fused qkv biases) and, for every dropped official key, the reason.
    """
    converted: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    problems: list[str] = []
    qv_biases: dict[int, dict[str, tuple[str, torch.Tensor]]] = {}

    for key, value in official_state_dict.items():
        if not is_visual_key(key):
            continue
        match = _QV_BIAS.fullmatch(key)
        if match:
            qv_biases.setdefault(int(match.group(1)), {})[match.group(2)] = (key, value)
            continue
        for pattern, replacement in _RENAMES:
            if pattern.fullmatch(key):
                converted[pattern.sub(replacement, key)] = value
                break
        else:
            for pattern, reason in _DROPS:
                if pattern.fullmatch(key):
                    dropped[key] = reason
                    break
            else:
                problems.append(key)

    for index, pair in sorted(qv_biases.items()):
        if set(pair) != {"q", "v"}:
            problems.extend(key for key, _ in pair.values())
            continue
        q_bias, v_bias = pair["q"][1], pair["v"][1]
        # EVA has no key bias: the fused bias of transformers' qkv Linear is [q | 0 | v]
        converted[f"vision_model.encoder.layers.{index}.self_attn.qkv.bias"] = torch.cat(
            [q_bias, torch.zeros_like(v_bias), v_bias]
        )

    if problems:
        if unexpected is None:
            raise ValueError(
                f"{len(problems)} official visual-encoder key(s) cannot be mapped to InstructBlipVisionModel / "
                f"InstructBlipQFormerModel: {problems[:20]}"
            )
        unexpected.extend(problems)
    return VisualConversion(converted, dropped)


def _eva_layer_norm_eps(eva: Mapping) -> float:
    if "layer_norm_eps" in eva:
        return float(eva["layer_norm_eps"])
    norm_layer = eva.get("norm_layer")
    if isinstance(norm_layer, str):
        match = re.search(r"eps\s*=\s*([0-9.eE+-]+)", norm_layer)
        if match:
            return float(match.group(1))
    elif isinstance(norm_layer, (int, float)):
        return float(norm_layer)
    return EVA_LAYER_NORM_EPS  # what create_eva_vit_g passes


def visual_configs_from_official(
    eva: Mapping[str, Any], qformer: Mapping[str, Any]
) -> tuple[InstructBlipVisionConfig, InstructBlipQFormerConfig]:
    """transformers configs from the official hyper-parameters.

    Args:
        eva: the `eva_vit.VisionTransformer` arguments as `create_eva_vit_g` passes them (`img_size`, `patch_size`,
            `embed_dim`, `depth`, `num_heads`, `mlp_ratio`, `qkv_bias`, `norm_layer` (its eps is read from the string
            "partial(nn.LayerNorm, eps=1e-6)"; or give `layer_norm_eps`), optionally `use_mean_pooling`,
            `init_values`, `qk_scale`, `use_rel_pos_bias`, `use_abs_pos_emb`, which must keep the ViT-g values).
        qformer: the Q-Former's BERT config dict (`vocab_size`, `hidden_size`, ..., `cross_attention_freq`,
            `encoder_width`), as LAVIS `init_Qformer` builds it.

    The released model is `visual_configs_from_official(OFFICIAL_EVA_VIT_G, OFFICIAL_INSTRUCTBLIP_QFORMER)`: ViT-g
    hidden 1408, 39 layers, 16 heads, MLP 6144, patch 14, 224 px, eps 1e-6; Q-Former bert-base 768 / 12 layers /
    12 heads / 3072, cross-attention every 2 layers, encoder_hidden_size 1408, vocab 30523 (30522 + "[DEC]").
    The number of query tokens (`qformer["query_length"]`, 32) and the `ln_vision` eps (`LN_VISION_EPS`) are not part
    of these configs.
    """
    unsupported = {
        "use_mean_pooling": (False, "the Q-Former reads every ViT token"),
        "init_values": (None, "layer scale (gamma_1/gamma_2) does not exist in InstructBlipVisionModel"),
        "qk_scale": (None, "InstructBlipAttention scales by head_dim ** -0.5"),
        "use_rel_pos_bias": (False, "relative position bias does not exist in InstructBlipVisionModel"),
        "use_shared_rel_pos_bias": (False, "relative position bias does not exist in InstructBlipVisionModel"),
        "use_abs_pos_emb": (True, "InstructBlipVisionModel always adds absolute position embeddings"),
    }
    for name, (supported, why) in unsupported.items():
        value = eva.get(name, supported)
        if name == "init_values" and not value:  # EVA uses layer scale only when init_values > 0
            continue
        if value != supported:
            raise ValueError(f"EVA ViT with {name}={value!r} is not supported: {why}.")
    if qformer.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("Only absolute position embeddings exist in InstructBlipQFormerModel.")

    embed_dim = int(eva["embed_dim"])
    vision_config = InstructBlipVisionConfig(
        hidden_size=embed_dim,
        intermediate_size=int(embed_dim * float(eva["mlp_ratio"])),  # EVA: mlp_hidden_dim = int(dim * mlp_ratio)
        num_hidden_layers=int(eva["depth"]),
        num_attention_heads=int(eva["num_heads"]),
        image_size=int(eva["img_size"]),
        patch_size=int(eva["patch_size"]),
        hidden_act="gelu",  # nn.GELU (erf)
        layer_norm_eps=_eva_layer_norm_eps(eva),
        attention_dropout=0.0,
        qkv_bias=bool(eva.get("qkv_bias", True)),
    )
    qformer_config = InstructBlipQFormerConfig(
        vocab_size=int(qformer["vocab_size"]),
        hidden_size=int(qformer["hidden_size"]),
        num_hidden_layers=int(qformer["num_hidden_layers"]),
        num_attention_heads=int(qformer["num_attention_heads"]),
        intermediate_size=int(qformer["intermediate_size"]),
        hidden_act=qformer.get("hidden_act", "gelu"),
        hidden_dropout_prob=qformer.get("hidden_dropout_prob", 0.1),
        attention_probs_dropout_prob=qformer.get("attention_probs_dropout_prob", 0.1),
        max_position_embeddings=int(qformer.get("max_position_embeddings", 512)),
        initializer_range=qformer.get("initializer_range", 0.02),
        layer_norm_eps=float(qformer.get("layer_norm_eps", 1e-12)),
        pad_token_id=qformer.get("pad_token_id", 0),
        cross_attention_frequency=int(qformer.get("cross_attention_freq", 2)),
        encoder_hidden_size=int(qformer.get("encoder_width", embed_dim)),
    )
    return vision_config, qformer_config


__all__ = [
    "EVA_LAYER_NORM_EPS",
    "LN_VISION_EPS",
    "OFFICIAL_EVA_VIT_G",
    "OFFICIAL_INSTRUCTBLIP_QFORMER",
    "VISUAL_KEYS",
    "VISUAL_PREFIXES",
    "VisualConversion",
    "convert_visual_state_dict",
    "is_visual_key",
    "visual_configs_from_official",
]
