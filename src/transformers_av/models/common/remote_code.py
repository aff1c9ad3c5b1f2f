"""Self-contained code next to a saved checkpoint, for `trust_remote_code=True` users without the package.

transformers loads remote code from ONE flat folder of modules that import each other with single-dot relative
imports (`from .module import name`), and copies to its module cache only the files it finds through such lines. Our
sources live in packages (`models/favor/`, `models/common/`, `media/` ...), so a save follows the package-relative
imports of the saved classes' modules (function-local ones and `TYPE_CHECKING` ones included: transformers copies
those too), copies every module reached flat into the folder (a package as `<package>.py`) and rewrites those imports
to single-dot ones. Nothing is listed by hand: what a class imports is what travels with it.

`auto_map` entries come from the family record ([`ModelFamily`]): `config.json` maps `AutoConfig`, `AutoModel` and
`AutoModelForMultimodalLM`; `processor_config.json` maps `AutoProcessor`, and each sub-processor of the package's own
(FAVOR's image processor, the BEATs feature extractor) maps `AutoImageProcessor` / `AutoFeatureExtractor`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

from .family import family_of

PACKAGE = __name__.split(".")[0]  # "transformers_av"


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec is not None and spec.origin else None


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The package modules an import statement loads (absolute names); empty for imports from outside the package."""
    if node.level == 0:
        base = node.module or ""
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            return []
    else:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    found = [base] if _module_file(base) is not None else []
    # `from package import submodule` loads the submodule too
    found += [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
    return found


def _is_module(name: str) -> bool:
    try:
        return _module_file(name) is not None
    except (ImportError, ValueError):
        return False


def _flat_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def source_modules(*entry_modules: str) -> list[str]:
    """Every package module the `entry_modules` reach through package-relative imports, entries first."""
    order, queue = [], list(entry_modules)
    while queue:
        module = queue.pop(0)
        if module in order:
            continue
        order.append(module)
        path = _module_file(module)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                queue += [m for m in _resolve(node, module, path.name == "__init__.py") if m not in order]
    return order


def write_remote_code(save_directory: str | Path, *entry_modules: str) -> list[Path]:
    """Copy the modules `entry_modules` reach flat into `save_directory`, their package-relative imports made
    single-dot; returns the written files."""
    modules = source_modules(*entry_modules)
    flat = {}
    for module in modules:
        name = _flat_name(module)
        if name in flat:
            raise RuntimeError(f"{module} and {flat[name]} would both be saved as {name}.py: rename one of them.")
        flat[name] = module
    written = []
    for module in modules:
        path = _module_file(module)
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines(keepends=True)
        tree = ast.parse(source)
        edits = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                targets = _resolve(node, module, path.name == "__init__.py")
                if not targets or node.module is None:
                    raise RuntimeError(
                        f"{module} line {node.lineno}: `from {'.' * node.level} import ...` cannot be made flat; "
                        "import the names from their module."
                    )
                edits.append((node.lineno - 1, node.level, node.module, _flat_name(targets[0])))
        for index, level, dotted, target in edits:
            lines[index] = lines[index].replace(f"from {'.' * level}{dotted} import", f"from .{target} import", 1)
        out = Path(save_directory) / f"{_flat_name(module)}.py"
        out.write_text("".join(lines), encoding="utf-8")
        written.append(out)
    return written


def _auto_entry(cls: type) -> str:
    return f"{_flat_name(cls.__module__)}.{cls.__name__}"


def model_auto_map(config) -> dict[str, str]:
    """The `auto_map` of a saved model of the family of `config`."""
    family = family_of(config)
    auto_map = {"AutoConfig": _auto_entry(family.config_class), "AutoModel": _auto_entry(family.model_class)}
    if family.generation_class is not None:
        auto_map["AutoModelForMultimodalLM"] = _auto_entry(family.generation_class)
    return auto_map


def save_model_with_code(model, save_directory, save, *args, **kwargs):
    """`save(save_directory, ...)` (the model's plain `save_pretrained`) with the family's `auto_map` in the config and
    the sources of its classes next to the weights."""
    family = family_of(model.config)
    model.config.auto_map = model_auto_map(model.config)
    result = save(save_directory, *args, **kwargs)
    classes = [family.config_class, family.model_class, family.generation_class]
    write_remote_code(save_directory, *dict.fromkeys(c.__module__ for c in classes if c is not None))
    return result


def _sub_processors(processor) -> dict[str, type]:
    """Attribute name -> class, for the processor's sub-processors that are the package's own classes."""
    from transformers import FeatureExtractionMixin
    from transformers.image_processing_utils import BaseImageProcessor

    found = {}
    for name in processor.get_attributes():
        value = getattr(processor, name, None)
        if type(value).__module__.startswith(PACKAGE + ".") and isinstance(value, (BaseImageProcessor,
                                                                                  FeatureExtractionMixin)):
            found[name] = type(value)
    return found


def add_processor_code(save_directory: str | Path, processor) -> dict:
    """After `processor.save_pretrained(save_directory)`: the `auto_map` entries of the processor and of its own
    sub-processors in `processor_config.json` (rewritten in place), and their sources. Returns the new content."""
    from transformers import FeatureExtractionMixin
    from transformers.utils import PROCESSOR_NAME

    path = Path(save_directory) / PROCESSOR_NAME
    content = json.loads(path.read_text(encoding="utf-8"))
    content["auto_map"] = {**content.get("auto_map", {}), "AutoProcessor": _auto_entry(type(processor))}
    subs = _sub_processors(processor)
    for name, cls in subs.items():
        auto_class = "AutoFeatureExtractor" if issubclass(cls, FeatureExtractionMixin) else "AutoImageProcessor"
        if isinstance(content.get(name), dict):
            content[name]["auto_map"] = {**content[name].get("auto_map", {}), auto_class: _auto_entry(cls)}
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_remote_code(save_directory, type(processor).__module__, *(cls.__module__ for cls in subs.values()))
    return content


__all__ = ["add_processor_code", "model_auto_map", "save_model_with_code", "source_modules", "write_remote_code"]
