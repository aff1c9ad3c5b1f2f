"""Loading separately pretrained parts into a new model, whatever the family: the steps every family's
`from_pretrained_components` shares (`models/favor/components_favor.py`, `models/av_llm/components_av_llm.py`).

A family builds its configuration from the parts' configurations, builds the model on the meta device (no memory, no
random initialisation of what the parts replace), puts each part's weights in place with the helpers below, creates
its connector and calls [`finish_assembly`]. Only the safetensors shards that hold the wanted weights are read (or
downloaded). Everything here imports only torch, safetensors and transformers, so it also runs as remote code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import cached_file


def hub_kwargs_of(revision: str | None, token: str | bool | None, cache_dir: str | os.PathLike | None) -> dict:
    """The download arguments that were given (passed to every `from_pretrained` and file download)."""
    given = {"revision": revision, "token": token, "cache_dir": cache_dir}
    return {name: value for name, value in given.items() if value is not None}


def refuse_component_settings(settings: dict, component_keys: Sequence[str], what_to_pass: str) -> None:
    """Configuration settings that the components decide cannot also be passed by hand."""
    forbidden = set(component_keys) & set(settings)
    if forbidden:
        raise ValueError(f"{sorted(forbidden)} come from the components; pass only {what_to_pass}.")


def _resolve(source: str | os.PathLike, filename: str, **hub_kwargs) -> Path | None:
    """Local path of `filename` in a folder or Hub repository (downloaded if needed); `None` if it does not exist."""
    local = Path(source) / filename
    if Path(source).is_dir():
        return local if local.is_file() else None
    path = cached_file(str(source), filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    return Path(path) if path is not None else None


def load_weights_with_prefixes(
    source: str | os.PathLike, prefixes: Sequence[str], **hub_kwargs
) -> dict[str, torch.Tensor] | None:
    """The tensors of a safetensors checkpoint (one file or sharded) whose names start with one of `prefixes`.
    Only the shards that hold such tensors are opened (and, for a Hub id, downloaded). `None` if the checkpoint has
    no safetensors weights."""
    index = _resolve(source, "model.safetensors.index.json", **hub_kwargs)
    if index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted({shard for name, shard in weight_map.items() if name.startswith(tuple(prefixes))})
        files = [_resolve(source, shard, **hub_kwargs) for shard in shards]
    else:
        single = _resolve(source, "model.safetensors", **hub_kwargs)
        if single is None:
            return None
        files = [single]
    tensors = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                if name.startswith(tuple(prefixes)):
                    tensors[name] = handle.get_tensor(name)
    return tensors


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with `prefix`, renamed without it."""
    return {name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}


def tower_weights(source, prefix: str, hub_kwargs: dict) -> dict[str, torch.Tensor] | None:
    """The tower's tensors (keys without `prefix`) from a two-tower checkpoint, or every tensor of a one-tower one."""
    tensors = load_weights_with_prefixes(source, (prefix,), **hub_kwargs)
    if tensors:
        return strip_prefix(tensors, prefix)
    return load_weights_with_prefixes(source, ("",), **hub_kwargs)


def module_from_weights(
    module_class: type, config: Any, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, what: str, source: Any
) -> nn.Module:
    """`module_class(config)` holding exactly `state_dict` (cast to `dtype`): built on the meta device and the tensors
    assigned, so no random initialisation runs and no second copy is allocated."""
    with torch.device("meta"):
        module = module_class(config)
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{what} weights from {source} do not fit its configuration: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True, assign=True)
    # non-persistent buffers are not in checkpoints: only position-id ranges are expected
    for name, buffer in list(module.named_buffers()):
        if buffer.device.type != "meta":
            continue
        if not name.endswith("position_ids"):
            raise RuntimeError(f"{what}: buffer {name} has no value after loading (not in the checkpoint).")
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        owner.register_buffer(leaf, torch.arange(buffer.shape[-1]).expand(buffer.shape).clone(), persistent=False)
    return module


def new_token_ids(llm: str | os.PathLike, vocab_size: int, tokens: Sequence[str], hub_kwargs: dict) -> list[int]:
    """The ids the processor's tokenizer will give `tokens`: their id where the LLM tokenizer has them; the missing
    ones are appended by the processor in this order, from the tokenizer's size on (from the LLM's vocabulary size if
    the LLM has no tokenizer)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(llm), **hub_kwargs)
        vocab, next_id = tokenizer.get_vocab(), len(tokenizer)
    except (OSError, ValueError):
        vocab, next_id = {}, vocab_size
    ids = []
    for token in tokens:
        if token in vocab:
            ids.append(vocab[token])
        else:
            ids.append(next_id)
            next_id += 1
    return ids


def named_sub_config(sub_config, source) -> dict:
    """A sub-configuration as a dict that records where it came from (`_name_or_path`, the card's `base_model`)."""
    sub = sub_config.to_dict()
    sub["_name_or_path"] = str(source)
    return sub


def record_sources(config, sources: dict[str, Any]) -> None:
    """Set `_name_or_path` of each sub-configuration (name -> source) that the configuration holds."""
    for sub_name, source in sources.items():
        if getattr(config, sub_name, None) is not None:
            getattr(config, sub_name)._name_or_path = str(source)


def text_config_of(llm, hub_kwargs: dict):
    """The configuration of the causal LM (the text part of a multimodal one)."""
    text_config = AutoConfig.from_pretrained(str(llm), **hub_kwargs)
    if hasattr(text_config, "text_config") and text_config.model_type not in ("llama",):
        text_config = text_config.get_text_config()
    return text_config


def load_causal_lm(model, llm, vocab_size: int, dtype: torch.dtype, hub_kwargs: dict) -> None:
    """Put the whole pretrained causal LM (body + head) in `model` (`model.model.language_model`, `model.lm_head`),
    with embedding rows up to `vocab_size` (new rows at the mean of the old ones)."""
    causal_lm = AutoModelForCausalLM.from_pretrained(str(llm), dtype=dtype, **hub_kwargs)
    if causal_lm.get_input_embeddings().weight.shape[0] < vocab_size:
        causal_lm.resize_token_embeddings(vocab_size, mean_resizing=True)
    model.model.language_model = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
    model.lm_head = causal_lm.get_output_embeddings()


def replace_connector(model, connector: nn.Module) -> None:
    """A new connector for `model.model`, initialised by the model's own rules."""
    connector.apply(model._init_weights)
    model.model.connector = connector


def finish_assembly(model, dtype: torch.dtype, freeze_encoders: bool):
    """Check that every weight came from a component or a fresh init, cast, freeze the encoders, train mode."""
    leftovers = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if leftovers:
        raise RuntimeError(f"assembly left parts without weights: {leftovers[:5]} (a part of the model is not covered).")
    model.to(dtype)
    model.config.dtype = dtype
    if freeze_encoders:
        model.freeze_encoders()
    model.train()
    return model


__all__ = [
    "finish_assembly",
    "hub_kwargs_of",
    "load_causal_lm",
    "load_weights_with_prefixes",
    "module_from_weights",
    "named_sub_config",
    "new_token_ids",
    "record_sources",
    "refuse_component_settings",
    "replace_connector",
    "strip_prefix",
    "text_config_of",
    "tower_weights",
]
