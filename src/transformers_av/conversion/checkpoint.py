"""From the files the original authors released to one `save_pretrained` folder.

The official release is a trainable-only delta (`pytorch_model_*.pt`: LoRA, projections, joint Q-Former...) on top
of frozen parts downloaded separately: Whisper large-v2, a BEATs `.pt`, the trimmed InstructBLIP `.pth` (EVA ViT-g +
Q-Former) and Vicuna v1.5. `assemble_official_state_dict` rebuilds the official model's full state dict from them;
`convert_checkpoint` converts it and writes the folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from peft import LoraConfig
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GenerationConfig, WhisperModel

from ..models import FavorConfig, FavorForConditionalGeneration
from .favor import ConversionReport, convert_official_state_dict

logger = logging.getLogger(__name__)

_VISUAL_PREFIXES = ("visual_encoder.", "ln_vision.", "Qformer.", "query_tokens")


def load_official_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official `.pt`/`.pth` safely (`weights_only=True`) and unwrap a `{"model": ...}` container."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Official checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickles with arbitrary objects are refused on purpose
        raise ValueError(f"{path} could not be read with weights_only=True (is it a torch checkpoint?): {error}") from error
    if isinstance(loaded, Mapping) and "model" in loaded and isinstance(loaded["model"], Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(loaded).__name__}).")
    return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in loaded.items()}


def _hf_state_dict(source, model_class) -> dict[str, torch.Tensor]:
    if isinstance(source, Mapping):
        return dict(source)
    return model_class.from_pretrained(source, dtype=torch.float32).state_dict()


def assemble_official_state_dict(
    delta: Mapping[str, torch.Tensor],
    *,
    whisper: str | Path | Mapping | None = None,
    beats: str | Path | Mapping | None = None,
    instructblip: str | Path | Mapping | None = None,
    llm: str | Path | Mapping | None = None,
) -> dict[str, torch.Tensor]:
    """Rebuild the official model's full state dict: frozen parts under their official prefixes, then the delta.

    whisper: a transformers Whisper model (path or Hub id) or its state dict; only the encoder is kept.
    beats: the official BEATs `.pt` (`{"cfg", "model"}`) or its state dict.
    instructblip: the LAVIS InstructBLIP `.pth`; only the ViT, ln_vision, Q-Former and query tokens are kept.
    llm: a transformers causal LM (path or Hub id, e.g. Vicuna v1.5) or its state dict.
    """
    full: dict[str, torch.Tensor] = {}
    if whisper is not None:
        for key, value in _hf_state_dict(whisper, WhisperModel).items():
            key = key.removeprefix("model.")
            if key.startswith("encoder."):
                full["speech_encoder." + key[len("encoder."):]] = value
    if beats is not None:
        beats_sd = load_official_file(beats) if not isinstance(beats, Mapping) else beats
        full.update({f"beats.{k}": v for k, v in beats_sd.items()})
    if instructblip is not None:
        blip = load_official_file(instructblip) if not isinstance(instructblip, Mapping) else instructblip
        kept = {k: v for k, v in blip.items() if k.startswith(_VISUAL_PREFIXES)}
        if not kept:
            raise ValueError("The InstructBLIP checkpoint holds no visual_encoder./ln_vision./Qformer./query_tokens keys.")
        full.update(kept)
    if llm is not None:
        full.update({f"llama_model.base_model.model.{k}": v for k, v in _hf_state_dict(llm, AutoModelForCausalLM).items()})
    full.update(delta)
    return full


def convert_checkpoint(
    official: Mapping[str, torch.Tensor],
    config: FavorConfig,
    output_dir: str | Path,
    *,
    lora_alpha: float = 32.0,
    merge_lora: bool = True,
    dtype: torch.dtype | None = None,
    max_shard_size: str = "5GB",
) -> ConversionReport:
    """Convert a full official state dict and write a loadable folder (sharded safetensors + config + generation
    config with the official decoding defaults). Refuses to write anything when keys are missing or unexpected."""
    state_dict, lora, report = convert_official_state_dict(official, config, lora_alpha=lora_alpha, merge_lora=merge_lora)
    report.raise_if_incomplete()
    with torch.device("meta"):  # only to list the keys the model expects; no memory is used
        expected = FavorForConditionalGeneration(config).state_dict()
    report.missing.extend(k for k in expected if k not in state_dict)
    report.unexpected.extend(k for k in state_dict if k not in expected)
    for key, value in state_dict.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            report.unexpected.append(f"{key} (shape {tuple(value.shape)}, expected {tuple(expected[key].shape)})")
    report.raise_if_incomplete()

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        config.dtype = dtype
    config.architectures = ["FavorForConditionalGeneration"]
    config.save_pretrained(output_dir)
    save_torch_state_dict(state_dict, output_dir, max_shard_size=max_shard_size)
    official_generation_config(config).save_pretrained(output_dir)
    if lora:
        _write_lora_adapter(lora, output_dir / "official_lora", lora_alpha)
    (output_dir / "conversion_report.json").write_text(
        json.dumps({"converted": report.converted, "dropped": report.dropped}, indent=1)
    )
    return report


def official_generation_config(config: FavorConfig):
    """The official inference settings: 5 beams, repetition penalty 1.5, up to 512 new tokens."""
    text = config.text_config
    return GenerationConfig(
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
        pad_token_id=text.pad_token_id,
        num_beams=5,
        repetition_penalty=1.5,
        max_new_tokens=512,
        do_sample=False,
    )


def _write_lora_adapter(lora: dict, directory: Path, lora_alpha: float):
    rank = next(v for k, v in lora.items() if k.endswith("lora_A.weight")).shape[0]
    modules = sorted({k.split(".")[-3] for k in lora})
    directory.mkdir(parents=True, exist_ok=True)
    LoraConfig(
        r=rank,
        lora_alpha=lora_alpha,
        target_modules=rf"model\.language_model\.layers\.\d+\.self_attn\.({'|'.join(modules)})",
        lora_dropout=0.1,
    ).save_pretrained(directory)
    save_file({k: v.contiguous() for k, v in lora.items()}, directory / "adapter_model.safetensors")


__all__ = ["assemble_official_state_dict", "convert_checkpoint", "load_official_file", "official_generation_config"]
