"""Conversion of official BEATs checkpoints (microsoft/unilm `BEATs.pt`, or the `beats.` submodule of video-SALMONN
with the prefix stripped) to [`BeatsModel`] weights and config."""

from __future__ import annotations

import re

import torch
from transformers.utils import logging

from ..models.beats.configuration_beats import BeatsConfig


# Defaults of the official `BEATsConfig` (they differ from ours: a checkpoint `cfg` only overrides some of them)
OFFICIAL_DEFAULTS = {
    "input_patch_size": -1,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 1.0,
    "layer_norm_first": False,
    "deep_norm": False,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
    "finetuned_model": False,
    "predictor_dropout": 0.1,
    "predictor_class": 527,
}

# official cfg entries with no counterpart in BeatsConfig: gradient-only or about the dropped predictor head
_DROPPED_CFG_KEYS = ("layer_wise_gradient_decay_ratio", "finetuned_model", "predictor_dropout", "predictor_class")

logger = logging.get_logger(__name__)

_PREDICTOR_KEYS = ("predictor.weight", "predictor.bias")
_RELATIVE_BIAS = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$")


def beats_config_from_official(cfg: dict, **overrides) -> BeatsConfig:
    """[`BeatsConfig`] from an official `cfg` dict (`checkpoint['cfg']`), filling absent entries with the official
    defaults. `layer_wise_gradient_decay_ratio` (gradient scaling only) and the predictor-head entries are dropped;
    any other unknown key raises."""
    unknown = sorted(set(cfg) - set(OFFICIAL_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown keys in the official BEATs cfg: {unknown}")
    values = {**OFFICIAL_DEFAULTS, **cfg}
    for key in _DROPPED_CFG_KEYS:
        values.pop(key)
    if values["input_patch_size"] <= 0:
        raise ValueError(f"The official cfg must set input_patch_size (got {values['input_patch_size']})")
    values.update(overrides)
    return BeatsConfig(**values)


def expected_beats_keys(config: BeatsConfig) -> set[str]:
    """Parameter names of a [`BeatsModel`] built from `config` (computed without building it)."""
    keys = {"patch_embedding.weight", "layer_norm.weight", "layer_norm.bias"}
    if config.conv_bias:
        keys.add("patch_embedding.bias")
    if config.embed_dim != config.encoder_embed_dim:
        keys |= {"post_extract_proj.weight", "post_extract_proj.bias"}
    keys |= {"encoder.pos_conv.conv.weight", "encoder.pos_conv.conv.bias", "encoder.layer_norm.weight"}
    keys.add("encoder.layer_norm.bias")
    for i in range(config.encoder_layers):
        prefix = f"encoder.layers.{i}."
        for name in ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"):
            keys |= {prefix + name + ".weight", prefix + name + ".bias"}
        for name in ("self_attn_layer_norm", "final_layer_norm"):
            keys |= {prefix + name + ".weight", prefix + name + ".bias"}
        if config.gru_rel_pos:
            keys |= {prefix + "self_attn.grep_linear.weight", prefix + "self_attn.grep_linear.bias"}
            keys.add(prefix + "self_attn.grep_a")
        if config.relative_position_embedding and i == 0:
            keys.add(prefix + "self_attn.relative_attention_bias.weight")
    return keys


def convert_beats_state_dict(
    official_state_dict: dict, config: BeatsConfig, report: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Map an official BEATs `model` state dict to [`BeatsModel`] keys.

    * `encoder.pos_conv.0.weight_g` / `weight_v` -> `encoder.pos_conv.conv.weight = torch._weight_norm(v, g, dim=2)`
      (the op of the official weight-norm hook, so the weight is bit-identical); `encoder.pos_conv.0.bias` ->
      `encoder.pos_conv.conv.bias`.
    * `encoder.layers.{i>0}.self_attn.relative_attention_bias.weight` are aliases of layer 0's: checked equal, dropped.
    * `predictor.*` (fine-tuned classification head) is dropped.
    * everything else keeps its name.

    Dropped entries are appended to `report` (a list) when given. Raises `ValueError` listing every unexpected or
    missing key, and on shape mismatches or aliases that differ from layer 0's.
    """
    state = dict(official_state_dict)
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []

    for key in _PREDICTOR_KEYS:
        if key in state:
            state.pop(key)
            dropped.append(f"{key} (fine-tuned predictor head, not part of BeatsModel)")

    g_key, v_key = "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v"
    if g_key in state and v_key in state:
        weight_g, weight_v = state.pop(g_key), state.pop(v_key)
        converted["encoder.pos_conv.conv.weight"] = torch._weight_norm(weight_v, weight_g, 2)
    elif "encoder.pos_conv.0.weight" in state:  # a module whose weight norm was already removed
        converted["encoder.pos_conv.conv.weight"] = state.pop("encoder.pos_conv.0.weight")
    if "encoder.pos_conv.0.bias" in state:
        converted["encoder.pos_conv.conv.bias"] = state.pop("encoder.pos_conv.0.bias")

    shared_key = "encoder.layers.0.self_attn.relative_attention_bias.weight"
    for key in sorted(state):
        match = _RELATIVE_BIAS.match(key)
        if match and int(match.group(1)) > 0 and config.relative_position_embedding:
            value = state.pop(key)
            if shared_key in state and not torch.equal(value, state[shared_key]):
                raise ValueError(f"{key} differs from {shared_key}: BEATs shares one relative position embedding")
            dropped.append(f"{key} (alias of {shared_key})")

    expected = expected_beats_keys(config)
    for key in list(state):
        if key in expected:
            converted[key] = state.pop(key)

    unexpected = sorted(state)
    missing = sorted(expected - set(converted))
    if unexpected or missing:
        raise ValueError(
            "Official BEATs state dict does not match the config:\n"
            f"  unexpected keys ({len(unexpected)}): {unexpected}\n  missing keys ({len(missing)}): {missing}"
        )
    _check_shapes(converted, config)
    if dropped:
        logger.info("BEATs conversion dropped: %s", "; ".join(dropped))
    if report is not None:
        report.extend(dropped)
    return converted


def _check_shapes(state: dict[str, torch.Tensor], config: BeatsConfig) -> None:
    dim, ffn, heads = config.encoder_embed_dim, config.encoder_ffn_embed_dim, config.encoder_attention_heads
    patch = config.input_patch_size
    expected = {
        "patch_embedding.weight": (config.embed_dim, 1, patch, patch),
        "layer_norm.weight": (config.embed_dim,),
        "post_extract_proj.weight": (dim, config.embed_dim),
        "encoder.pos_conv.conv.weight": (dim, dim // config.conv_pos_groups, config.conv_pos),
        "encoder.layers.0.self_attn.relative_attention_bias.weight": (config.num_buckets, heads),
    }
    for i in range(config.encoder_layers):
        prefix = f"encoder.layers.{i}."
        expected[prefix + "fc1.weight"] = (ffn, dim)
        expected[prefix + "fc2.weight"] = (dim, ffn)
        expected[prefix + "self_attn.q_proj.weight"] = (dim, dim)
        expected[prefix + "self_attn.grep_linear.weight"] = (8, dim // heads)
        expected[prefix + "self_attn.grep_a"] = (1, heads, 1, 1)
    bad = [
        f"{key}: {tuple(state[key].shape)} != {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    if bad:
        raise ValueError("Official BEATs weights have unexpected shapes for the config:\n  " + "\n  ".join(bad))


__all__ = ["OFFICIAL_DEFAULTS", "beats_config_from_official", "convert_beats_state_dict", "expected_beats_keys"]
