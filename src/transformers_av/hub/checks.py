"""What is checked before anything is uploaded: a refused upload raises [`UploadRefusedError`] naming what is wrong,
and no network call has been made.

* [`validate_model_for_upload`]: non-finite weights, a configuration that fails its own consistency checks, weights
  whose names or shapes disagree with the configuration, and a processor that disagrees with the model.
* [`validate_processor_for_upload`]: the processor's own tokens, and (given the model's configuration) its family and
  every setting it shares with the model; what a family's processor compares is its own business
  (`processor.disagreements_with(config)`).
* [`validate_folder_for_upload`]: the same for a `save_pretrained` folder, read without building the model.
* [`validate_adapter_for_upload`]: a LoRA adapter of a PEFT-wrapped model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import PreTrainedConfig

from ..models import FAMILIES, ModelFamily, family_of

# a refusal lists at most this many offending tensors / settings, then says how many more there are
MAX_LISTED = 5


class UploadRefusedError(ValueError):
    """An upload was refused before anything was sent (the message says which input is wrong and why)."""


def listing(items: Sequence[str]) -> str:
    """The first [`MAX_LISTED`] `items` joined by "; ", and how many were left out."""
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def non_finite_tensors(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """'name: n NaN, m inf of k values' for every floating tensor that holds NaN or infinite values."""
    found = []
    for name, tensor in named_tensors:
        if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.device.type == "meta":
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        found.append(f"{name}: {nan} NaN, {int((~finite).sum()) - nan} inf of {tensor.numel()} values")
    return found


def check_config(config: PreTrainedConfig, *, what: str = "the configuration") -> None:
    """Re-run the configuration's own consistency checks on its current values (attributes may have been changed
    after it was built) and its dataclass validators."""
    try:
        rebuilt = type(config).from_dict(config.to_dict())
        if hasattr(rebuilt, "validate"):
            rebuilt.validate()
    except (ValueError, TypeError) as error:
        raise UploadRefusedError(f"Refusing to upload: {what} is inconsistent: {error}") from error


def _expected_shapes(config: PreTrainedConfig, model_class: type | None = None) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of `model_class(config)` (default: the family's generation model), built on the
    meta device (no memory, no weights)."""
    model_class = model_class or family_of(config).generation_class
    with torch.device("meta"):
        reference = model_class(config)
    return {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}


def _shape_mismatches(expected: Mapping[str, tuple[int, ...]], actual: Mapping[str, tuple[int, ...]]) -> list[str]:
    problems = [f"{name}: weights {actual[name]} but the configuration gives {shape}"
                for name, shape in expected.items() if name in actual and tuple(actual[name]) != shape]
    missing = [name for name in expected if name not in actual]
    unexpected = [name for name in actual if name not in expected]
    if missing:
        problems.append(f"missing from the weights: {listing(missing)}")
    if unexpected:
        problems.append(f"not in the configuration's model: {listing(unexpected)}")
    return problems


def validate_model_for_upload(model: torch.nn.Module, processor: Any = None) -> None:
    """Refuse (raise [`UploadRefusedError`]) a model that should not be shared: non-finite weights, an inconsistent
    configuration, weights whose names or shapes disagree with the configuration, or a `processor` that disagrees
    with the model. Reads no network."""
    config = model.config
    check_config(config, what="the model configuration (config.json)")
    bad = non_finite_tensors(model.state_dict().items())
    if bad:
        raise UploadRefusedError(
            f"Refusing to upload: {len(bad)} weight tensor(s) hold NaN or infinite values ({listing(bad)}). A model "
            "with diverged weights generates nothing useful; upload an earlier checkpoint or fix the training."
        )
    actual = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = _shape_mismatches(_expected_shapes(config, type(model)), actual)
    if problems:
        raise UploadRefusedError(
            "Refusing to upload: the weights do not match the configuration, so the uploaded model would not load ("
            + listing(problems) + "). Update the configuration (e.g. text_config.vocab_size after resizing the "
            "embeddings) or the weights."
        )
    if processor is not None:
        validate_processor_for_upload(processor, config)


def validate_processor_for_upload(processor: Any, config: PreTrainedConfig | None = None) -> None:
    """Refuse a processor whose own tokens (placeholder, modality tokens) are missing from its tokenizer, or (given
    the model `config`) that is of another family than the model, whose settings and token ids differ from the
    model's (`processor.disagreements_with(config)`), or whose tokenizer outgrows the LLM's embeddings. Reads no
    network."""
    family = family_of(config) if config is not None else _processor_family(processor)
    if not isinstance(processor, family.processor_class):
        raise UploadRefusedError(
            f"Refusing to upload: the processor is a {type(processor).__name__} but the {family.name} model "
            f"(model_type {family.model_type!r}) needs a {family.processor_class.__name__}."
        )
    vocab = processor.tokenizer.get_vocab()
    for token, role in processor.required_tokens.items():
        if token not in vocab:
            raise UploadRefusedError(f"Refusing to upload: the processor's {role} {token!r} is not in its tokenizer.")
    if config is None:
        return
    problems = processor.disagreements_with(config)
    if len(processor.tokenizer) > config.text_config.vocab_size:
        problems.append(f"the tokenizer has {len(processor.tokenizer)} tokens but the LLM only "
                        f"{config.text_config.vocab_size} embedding rows")
    if problems:
        raise UploadRefusedError("Refusing to upload: the processor does not match the model (" + listing(problems) + ").")


def _processor_family(processor: Any) -> ModelFamily:
    """The family whose processor class `processor` is an instance of."""
    with_processors = [family for family in FAMILIES.values() if family.processor_class is not None]
    for family in with_processors:
        if isinstance(processor, family.processor_class):
            return family
    known = ", ".join(family.processor_class.__name__ for family in with_processors)
    raise UploadRefusedError(f"Refusing to upload: {type(processor).__name__} is not the processor of a known model "
                             f"family ({known}).")


def validate_folder_for_upload(folder: str | os.PathLike) -> PreTrainedConfig:
    """Check a `save_pretrained` folder like [`validate_model_for_upload`] without building the model: config.json
    (its consistency checks), every safetensors file (finite values, names and shapes against the configuration)
    and the processor if saved. The model family is the `model_type` of config.json. Returns the configuration."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UploadRefusedError(f"Refusing to upload {folder}: it has no config.json (not a save_pretrained folder).")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        family = family_of(model_type)
        config = family.config_class.from_pretrained(folder)
    except (ValueError, TypeError, OSError, AttributeError) as error:
        raise UploadRefusedError(f"Refusing to upload {folder}: config.json is inconsistent: {error}") from error
    check_config(config, what=f"{folder / 'config.json'}")
    weight_files = sorted(folder.glob("*.safetensors"))
    if not weight_files:
        raise UploadRefusedError(f"Refusing to upload {folder}: no *.safetensors weights in it.")
    shapes, bad = {}, []
    for path in weight_files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                shapes[name] = tuple(tensor.shape)
                bad += [f"{path.name}:{item}" for item in non_finite_tensors([(name, tensor)])]
    if bad:
        raise UploadRefusedError(f"Refusing to upload {folder}: {len(bad)} weight tensor(s) hold NaN or infinite "
                                 f"values ({listing(bad)}).")
    expected = _expected_shapes(config)
    # tied weights are saved once, under the embedding's name
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    problems = _shape_mismatches({k: v for k, v in expected.items() if k not in tied}, shapes)
    if problems:
        raise UploadRefusedError(f"Refusing to upload {folder}: the weights do not match config.json ({listing(problems)}).")
    if (folder / "processor_config.json").is_file():
        validate_processor_for_upload(family.processor_class.from_pretrained(folder), config)
    return config


def validate_adapter_for_upload(model: Any) -> None:
    """Refuse a PEFT-wrapped model whose adapter (or trained connector copy) holds non-finite values, or whose base
    model's configuration is inconsistent."""
    from peft import get_peft_model_state_dict  # peft is slow to import: only when an adapter is pushed

    bad = non_finite_tensors(get_peft_model_state_dict(model).items())
    if bad:
        raise UploadRefusedError(f"Refusing to upload: {len(bad)} adapter tensor(s) hold NaN or infinite values "
                                 f"({listing(bad)}).")
    check_config(model.get_base_model().config, what="the base model configuration")


__all__ = [
    "UploadRefusedError",
    "check_config",
    "non_finite_tensors",
    "validate_adapter_for_upload",
    "validate_folder_for_upload",
    "validate_model_for_upload",
    "validate_processor_for_upload",
]
