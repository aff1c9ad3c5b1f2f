"""Self-contained code next to a saved checkpoint, for `trust_remote_code=True` users without the package.

transformers loads remote code from a flat folder of modules that import each other with single-dot relative
imports (and copies only the modules it finds through `from .module import ...` lines). Our sources live in
subpackages (`configuration/`, `modeling/`, `modeling/parts/`, `processing/`), so they are copied flat and their
cross-package imports rewritten; `auto_map` entries point the Auto classes at them. Each model family
([`REMOTE_CODE`], keyed by `model_type`) lists its files and maps:

* the model: `config.json` maps `AutoConfig`, `AutoModel` and `AutoModelForMultimodalLM`;
* the processor: `processor_config.json` maps `AutoProcessor`, and its custom sub-processors (FAVOR's image
  processor and BEATs feature extractor) map `AutoImageProcessor` / `AutoFeatureExtractor`.

Models call [`save_model_with_code`] and processors [`add_processor_code`] from their `save_pretrained`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_ROOT = Path(__file__).parent


@dataclass(frozen=True)
class RemoteCodeFamily:
    """The sources and `auto_map` entries of one model family."""

    model_files: tuple[str, ...]
    processor_files: tuple[str, ...]
    model_auto_map: dict[str, str]
    processor_auto_map: dict[str, str]
    # sub-processor entry of processor_config.json -> its auto_map (only for classes transformers does not have)
    sub_processor_auto_maps: dict[str, dict[str, str]] = field(default_factory=dict)


REMOTE_CODE: dict[str, RemoteCodeFamily] = {
    "favor": RemoteCodeFamily(
        model_files=(
            "configuration/configuration_beats.py",
            "configuration/configuration_favor.py",
            "modeling/beats.py",
            "modeling/common.py",
            "modeling/connector.py",
            "modeling/favor.py",
            "modeling/qformer.py",
            "modeling/sync.py",
            "modeling/visual_encoders.py",
            "modeling/windows.py",
            "modeling/parts/clip_frames.py",
        ),
        processor_files=(
            "modeling/windows.py",
            "processing/batching.py",
            "processing/feature_extraction_beats.py",
            "processing/image_processing_favor.py",
            "processing/media.py",
            "processing/processing_favor.py",
            "processing/self_contained.py",
        ),
        model_auto_map={
            "AutoConfig": "configuration_favor.FavorConfig",
            "AutoModel": "favor.FavorModel",
            "AutoModelForMultimodalLM": "favor.FavorForConditionalGeneration",
        },
        processor_auto_map={"AutoProcessor": "processing_favor.FavorProcessor"},
        sub_processor_auto_maps={
            "image_processor": {"AutoImageProcessor": "image_processing_favor.FavorImageProcessor"},
            "audio_feature_extractor": {"AutoFeatureExtractor": "feature_extraction_beats.BeatsFeatureExtractor"},
        },
    ),
    "av_llm": RemoteCodeFamily(
        model_files=(
            "configuration/configuration_av_llm.py",
            "modeling/av_llm.py",
            "modeling/common.py",
            "modeling/parts/clap_segments.py",
            "modeling/parts/clip_frames.py",
            "modeling/parts/linear_connector.py",
        ),
        processor_files=(
            "configuration/configuration_av_llm.py",
            "modeling/parts/clap_segments.py",
            "modeling/parts/clip_frames.py",
            "modeling/parts/linear_connector.py",
            "processing/batching.py",
            "processing/media.py",
            "processing/processing_av_llm.py",
            "processing/self_contained.py",
        ),
        model_auto_map={
            "AutoConfig": "configuration_av_llm.AvLlmConfig",
            "AutoModel": "av_llm.AvLlmModel",
            "AutoModelForMultimodalLM": "av_llm.AvLlmForConditionalGeneration",
        },
        processor_auto_map={"AutoProcessor": "processing_av_llm.AvLlmProcessor"},
    ),
}

# FAVOR's entries under their first names
MODEL_REMOTE_CODE_FILES = REMOTE_CODE["favor"].model_files
PROCESSOR_REMOTE_CODE_FILES = REMOTE_CODE["favor"].processor_files
REMOTE_CODE_FILES = MODEL_REMOTE_CODE_FILES
AUTO_MAP = MODEL_AUTO_MAP = REMOTE_CODE["favor"].model_auto_map
PROCESSOR_AUTO_MAP = REMOTE_CODE["favor"].processor_auto_map
SUB_PROCESSOR_AUTO_MAPS = REMOTE_CODE["favor"].sub_processor_auto_maps

_CROSS_PACKAGE_IMPORT = re.compile(
    r"^(\s*)from \.\.(?:configuration|modeling|processing)\.(?:parts\.)?(\w+) import", flags=re.MULTILINE
)
_SUBPACKAGE_IMPORT = re.compile(r"^(\s*)from \.parts\.(\w+) import", flags=re.MULTILINE)  # modeling/parts/*
_PARENT_IMPORT = re.compile(r"^(\s*)from \.\.(\w+) import", flags=re.MULTILINE)  # modeling/parts/* -> modeling/*


def family(model_type: str) -> RemoteCodeFamily:
    if model_type not in REMOTE_CODE:
        raise ValueError(f"No remote code is defined for model_type {model_type!r} (known: {', '.join(REMOTE_CODE)}).")
    return REMOTE_CODE[model_type]


def write_remote_code(save_directory: str | Path, files: tuple[str, ...] = MODEL_REMOTE_CODE_FILES) -> list[Path]:
    """Copy `files` (paths relative to the package, default: FAVOR's model sources) flat into `save_directory`, with
    their cross-package imports made single-dot relative; returns the written files."""
    save_directory = Path(save_directory)
    written = []
    for relative in files:
        flat = (PACKAGE_ROOT / relative).read_text(encoding="utf-8")
        flat = _CROSS_PACKAGE_IMPORT.sub(r"\1from .\2 import", flat)
        flat = _SUBPACKAGE_IMPORT.sub(r"\1from .\2 import", flat)
        if relative.startswith("modeling/parts/"):
            flat = _PARENT_IMPORT.sub(r"\1from .\2 import", flat)
        if re.search(r"^\s*from \.\.", flat, flags=re.MULTILINE):
            raise RuntimeError(f"{relative} imports from outside the remote-code file set; extend the file list.")
        target = save_directory / Path(relative).name
        target.write_text(flat, encoding="utf-8")
        written.append(target)
    return written


def save_model_with_code(model, save_directory, save, *args, **kwargs):
    """`save(save_directory, ...)` (the model's plain `save_pretrained`) with the family's `auto_map` in the config and
    its sources next to the weights."""
    code = family(model.config.model_type)
    model.config.auto_map = dict(code.model_auto_map)
    result = save(save_directory, *args, **kwargs)
    write_remote_code(save_directory, code.model_files)
    return result


def write_processor_remote_code(save_directory: str | Path, model_type: str = "favor") -> list[Path]:
    """A processor's sources (processor, its custom sub-processors, media decoding, what it counts tokens with)."""
    return write_remote_code(save_directory, family(model_type).processor_files)


def add_processor_auto_map(processor_config_file: str | Path, model_type: str = "favor") -> dict:
    """Add the `auto_map` entries of the processor and its custom sub-processors to a saved `processor_config.json`
    (rewritten in place); returns the new content."""
    code = family(model_type)
    path = Path(processor_config_file)
    content = json.loads(path.read_text(encoding="utf-8"))
    content["auto_map"] = {**content.get("auto_map", {}), **code.processor_auto_map}
    for name, auto_map in code.sub_processor_auto_maps.items():
        if isinstance(content.get(name), dict):
            content[name]["auto_map"] = {**content[name].get("auto_map", {}), **auto_map}
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return content


def add_processor_code(save_directory: str | Path, model_type: str) -> None:
    """After a processor's `save_pretrained(save_directory)`: its `auto_map` entries and sources."""
    from transformers.utils import PROCESSOR_NAME

    add_processor_auto_map(Path(save_directory) / PROCESSOR_NAME, model_type)
    write_processor_remote_code(save_directory, model_type)


__all__ = [
    "AUTO_MAP",
    "MODEL_AUTO_MAP",
    "MODEL_REMOTE_CODE_FILES",
    "PROCESSOR_AUTO_MAP",
    "PROCESSOR_REMOTE_CODE_FILES",
    "REMOTE_CODE",
    "REMOTE_CODE_FILES",
    "SUB_PROCESSOR_AUTO_MAPS",
    "RemoteCodeFamily",
    "add_processor_auto_map",
    "add_processor_code",
    "family",
    "save_model_with_code",
    "write_processor_remote_code",
    "write_remote_code",
]
