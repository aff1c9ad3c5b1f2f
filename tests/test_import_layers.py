"""The package's imports point down the layers of DESIGN.md §2, function-local imports included.

Layers, top to bottom (a module may import its own group and any group of a LOWER rank, never a higher or an equal
rank of another group):

    transformers_av (the public API, registers the Auto classes)
    testing                      test helpers: nothing else in src/ may import them
    cli
    training
    evaluation, conversion
    hub
    assembly, presets, synthetic
    models (the package that gathers the families)
    models.favor, models.av_llm  (a model family)
    models.beats                 (an encoder family other families use)
    models.common, media         (shared machinery, decoding)

Inside a family, a configuration imports only configurations and pure arithmetic, and a processor never imports a
torch module file (only configurations, pure arithmetic, processing helpers and media), so that a processor or a
configuration never pulls in model code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "transformers_av"

RANKS = {
    PACKAGE: 12,
    "testing": 11,
    "cli": 10,
    "training": 9,
    "evaluation": 8,
    "conversion": 8,
    "hub": 7,
    "assembly": 6,
    "presets": 6,
    "synthetic": 6,
    "models": 5,
    "models.favor": 4,
    "models.av_llm": 4,
    "models.beats": 3,
    "models.common": 2,
    "media": 2,
}
# what a configuration / a processor of a family may import from the package (module basenames)
CONFIGURATION_MAY_IMPORT = ("configuration_", "token_counts", "patch_grid", "windows")
PROCESSOR_MAY_IMPORT = CONFIGURATION_MAY_IMPORT + (
    "processing_common", "processing_audio_visual", "self_contained", "hub_uploads", "image_processing_",
    "feature_extraction_",
)
PROCESSOR_PREFIXES = ("processing_", "image_processing_", "feature_extraction_")


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def group_of(module: str) -> str:
    """The layer group of a package module: `transformers_av.models.favor.qformer` -> `models.favor`."""
    parts = module.split(".")[1:]
    if not parts:
        return PACKAGE
    if parts[0] == "models" and len(parts) > 1:
        return f"models.{parts[1]}"
    return parts[0]


def package_imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the package in the file, wherever it stands."""
    module, is_package = module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import name` may name a submodule: judge the submodule
                targets = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            else:
                targets = [node.module or ""]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, t) for t in targets if t == PACKAGE or t.startswith(PACKAGE + ".")]
    return found


def violations(path: Path) -> list[str]:
    module, _ = module_name(path)
    source_group = group_of(module)
    basename = module.rsplit(".", 1)[-1]
    problems = []
    for line, target in package_imports(path):
        target_group = group_of(target)
        where = f"{path.relative_to(SRC)}:{line} imports {target}"
        if target_group == source_group:
            target_base = target.rsplit(".", 1)[-1]
            if basename.startswith("configuration_") and not target_base.startswith(CONFIGURATION_MAY_IMPORT):
                problems.append(f"{where}: a configuration imports only configurations and pure arithmetic")
            if basename.startswith(PROCESSOR_PREFIXES) and not target_base.startswith(PROCESSOR_MAY_IMPORT):
                problems.append(f"{where}: a processor imports no model code")
            continue
        if target_group not in RANKS or source_group not in RANKS:
            problems.append(f"{where}: {target_group if target_group not in RANKS else source_group} has no layer")
        elif RANKS[target_group] >= RANKS[source_group]:
            direction = "sideways" if RANKS[target_group] == RANKS[source_group] else "up"
            problems.append(f"{where}: points {direction} ({source_group} -> {target_group})")
        elif basename.startswith("configuration_") and not target.rsplit(".", 1)[-1].startswith(CONFIGURATION_MAY_IMPORT):
            problems.append(f"{where}: a configuration imports only configurations and pure arithmetic")
        elif basename.startswith(PROCESSOR_PREFIXES) and group_of(target) != "media" and not target.rsplit(
            ".", 1
        )[-1].startswith(PROCESSOR_MAY_IMPORT):
            problems.append(f"{where}: a processor imports no model code")
    return problems


SOURCES = sorted(SRC.joinpath(PACKAGE).rglob("*.py"))


def test_every_group_has_a_layer():
    groups = {group_of(module_name(path)[0]) for path in SOURCES}
    assert groups <= set(RANKS), sorted(groups - set(RANKS))


def test_imports_point_down_the_layers():
    problems = [problem for path in SOURCES for problem in violations(path)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module, source, expected",
    [
        ("models/favor/configuration_favor.py", "from .visual_encoders import visual_encoder_class\n", "configuration"),
        ("models/favor/processing_favor.py", "from .connector import FavorConnector\n", "processor"),
        ("models/favor/modeling_favor.py", "def f():\n    from ...hub import push_to_hub\n", "points up"),
        ("models/av_llm/modeling_av_llm.py", "from ..favor.windows import window_plan\n", "points sideways"),
        ("training/data.py", "from ..testing import make_av_clip\n", "points up"),
        ("media/video.py", "from ..models.common.family import FAMILIES\n", "points sideways"),
        ("models/common/family.py", "from transformers_av import hub\n", "points up"),
    ],
)
def test_the_check_catches_forbidden_imports(tmp_path, monkeypatch, module, source, expected):
    # the same check on a throw-away tree holding one offending module
    path = tmp_path / PACKAGE / module
    path.parent.mkdir(parents=True)
    path.write_text(source)
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    assert any(expected in problem for problem in violations(path)), violations(path)
