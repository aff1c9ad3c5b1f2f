"""Self-contained model code next to a saved checkpoint, for `trust_remote_code=True` users without the package.

transformers loads remote code from a flat folder of modules that import each other with single-dot relative
imports. Our sources live in two subpackages (`configuration/`, `modeling/`), so they are copied flat and their
cross-package imports rewritten; `auto_map` in config.json points the Auto classes at them.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE_ROOT = Path(__file__).parent
REMOTE_CODE_FILES = (
    "configuration/configuration_beats.py",
    "configuration/configuration_favor.py",
    "modeling/beats.py",
    "modeling/connector.py",
    "modeling/favor.py",
    "modeling/qformer.py",
    "modeling/sync.py",
    "modeling/windows.py",
)
AUTO_MAP = {
    "AutoConfig": "configuration_favor.FavorConfig",
    "AutoModel": "favor.FavorModel",
    "AutoModelForMultimodalLM": "favor.FavorForConditionalGeneration",
}
_CROSS_PACKAGE_IMPORT = re.compile(r"^from \.\.(?:configuration|modeling)\.(\w+) import", flags=re.MULTILINE)


def write_remote_code(save_directory: str | Path) -> list[Path]:
    """Copy the modeling and configuration sources flat into `save_directory`; returns the written files."""
    save_directory = Path(save_directory)
    written = []
    for relative in REMOTE_CODE_FILES:
        source = (PACKAGE_ROOT / relative).read_text(encoding="utf-8")
        flat = _CROSS_PACKAGE_IMPORT.sub(r"from .\1 import", source)
        if re.search(r"^from \.\.", flat, flags=re.MULTILINE):
            raise RuntimeError(f"{relative} imports from outside the remote-code file set; extend REMOTE_CODE_FILES.")
        target = save_directory / Path(relative).name
        target.write_text(flat, encoding="utf-8")
        written.append(target)
    return written


__all__ = ["AUTO_MAP", "REMOTE_CODE_FILES", "write_remote_code"]
