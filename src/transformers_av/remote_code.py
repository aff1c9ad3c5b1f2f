"""Self-contained code next to a saved checkpoint, for `trust_remote_code=True` users without the package.

transformers loads remote code from a flat folder of modules that import each other with single-dot relative
imports (and copies only the modules it finds through `from .module import ...` lines). Our sources live in three
subpackages (`configuration/`, `modeling/`, `processing/`), so they are copied flat and their cross-package imports
rewritten; `auto_map` entries point the Auto classes at them:

* the model: `config.json` maps `AutoConfig`, `AutoModel` and `AutoModelForMultimodalLM` ([`MODEL_AUTO_MAP`]);
* the processor: `processor_config.json` maps `AutoProcessor`, and its `image_processor` and
  `audio_feature_extractor` entries map `AutoImageProcessor` and `AutoFeatureExtractor`
  ([`PROCESSOR_AUTO_MAP`], [`add_processor_auto_map`]).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PACKAGE_ROOT = Path(__file__).parent
MODEL_REMOTE_CODE_FILES = (
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
)
PROCESSOR_REMOTE_CODE_FILES = (
    "modeling/windows.py",
    "processing/batching.py",
    "processing/feature_extraction_beats.py",
    "processing/image_processing_favor.py",
    "processing/media.py",
    "processing/processing_favor.py",
)
REMOTE_CODE_FILES = MODEL_REMOTE_CODE_FILES  # kept for callers of the first version
AUTO_MAP = {
    "AutoConfig": "configuration_favor.FavorConfig",
    "AutoModel": "favor.FavorModel",
    "AutoModelForMultimodalLM": "favor.FavorForConditionalGeneration",
}
MODEL_AUTO_MAP = AUTO_MAP
PROCESSOR_AUTO_MAP = {"AutoProcessor": "processing_favor.FavorProcessor"}
# sub-processor entry of processor_config.json -> its auto_map
SUB_PROCESSOR_AUTO_MAPS = {
    "image_processor": {"AutoImageProcessor": "image_processing_favor.FavorImageProcessor"},
    "audio_feature_extractor": {"AutoFeatureExtractor": "feature_extraction_beats.BeatsFeatureExtractor"},
}
_CROSS_PACKAGE_IMPORT = re.compile(
    r"^(\s*)from \.\.(?:configuration|modeling|processing)\.(\w+) import", flags=re.MULTILINE
)
_SUBPACKAGE_IMPORT = re.compile(r"^(\s*)from \.parts\.(\w+) import", flags=re.MULTILINE)  # modeling/parts/*


def write_remote_code(save_directory: str | Path, files: tuple[str, ...] = MODEL_REMOTE_CODE_FILES) -> list[Path]:
    """Copy `files` (paths relative to the package, default: the model's sources) flat into `save_directory`, with
    their cross-package imports made single-dot relative; returns the written files."""
    save_directory = Path(save_directory)
    written = []
    for relative in files:
        source = (PACKAGE_ROOT / relative).read_text(encoding="utf-8")
        flat = _SUBPACKAGE_IMPORT.sub(r"\1from .\2 import", _CROSS_PACKAGE_IMPORT.sub(r"\1from .\2 import", source))
        if re.search(r"^\s*from \.\.", flat, flags=re.MULTILINE):
            raise RuntimeError(f"{relative} imports from outside the remote-code file set; extend the file list.")
        target = save_directory / Path(relative).name
        target.write_text(flat, encoding="utf-8")
        written.append(target)
    return written


def write_processor_remote_code(save_directory: str | Path) -> list[Path]:
    """The processor's sources (processor, image processor, BEATs feature extractor, media decoding, window plan)."""
    return write_remote_code(save_directory, PROCESSOR_REMOTE_CODE_FILES)


def add_processor_auto_map(processor_config_file: str | Path) -> dict:
    """Add the `auto_map` entries of the processor and its custom sub-processors to a saved `processor_config.json`
    (rewritten in place); returns the new content."""
    path = Path(processor_config_file)
    content = json.loads(path.read_text(encoding="utf-8"))
    content["auto_map"] = {**content.get("auto_map", {}), **PROCESSOR_AUTO_MAP}
    for name, auto_map in SUB_PROCESSOR_AUTO_MAPS.items():
        if isinstance(content.get(name), dict):
            content[name]["auto_map"] = {**content[name].get("auto_map", {}), **auto_map}
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return content


__all__ = [
    "AUTO_MAP",
    "MODEL_AUTO_MAP",
    "MODEL_REMOTE_CODE_FILES",
    "PROCESSOR_AUTO_MAP",
    "PROCESSOR_REMOTE_CODE_FILES",
    "REMOTE_CODE_FILES",
    "SUB_PROCESSOR_AUTO_MAPS",
    "add_processor_auto_map",
    "write_processor_remote_code",
    "write_remote_code",
]
