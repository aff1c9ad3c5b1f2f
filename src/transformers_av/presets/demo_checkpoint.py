"""Install a trained checkpoint as the package's demo checkpoint (`presets/assets/demo_video_salmonn`).

The demo checkpoint is rebuilt from its recipe (README, "Synthetic benchmark and ablations")::

    python -m transformers_av.synthetic.benchmark synthetic-benchmark --seed 0 --train 3000
    transformers-av train --config examples/synthetic/video_salmonn.yaml
    python -m transformers_av.presets.demo_checkpoint synthetic-benchmark-video-salmonn/final

The last step copies the weights, the configuration and the processor of the trained folder into the package. It
leaves out what `save_pretrained` adds for use without the package (the copies of the modelling and processing source
files, and the `auto_map` entries that point at them: inside the package the classes are its own) and the training
state (`training_args.bin`), so that the shipped folder is a few MB and never holds a stale copy of the code.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .tiny import DEMO_CHECKPOINT

#: the files of a trained folder that make up the demo checkpoint (`qformer_tokenizer/` is copied whole)
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
#: JSON files whose `auto_map` points at source copies that the shipped folder does not hold
_AUTO_MAPPED = ("config.json", "processor_config.json", "tokenizer_config.json")


def install_demo_checkpoint(source: str | os.PathLike, target: str | os.PathLike = DEMO_CHECKPOINT) -> Path:
    """Copy the trained folder `source` (a `transformers-av train` output's `final/`) into `target` (default: the
    package's demo checkpoint), replacing what was there. Returns `target`."""
    source, target = Path(source), Path(target)
    missing = [name for name in ("config.json", "model.safetensors", "processor_config.json")
               if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} is not a trained model + processor folder: it has no {', '.join(missing)}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)
    if (source / "qformer_tokenizer").is_dir():
        shutil.copytree(source / "qformer_tokenizer", staging / "qformer_tokenizer")
    for name in _AUTO_MAPPED:
        path = staging / name
        if path.is_file():
            content = json.loads(path.read_text(encoding="utf-8"))
            if content.pop("auto_map", None) is not None:
                path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # swap only once the new folder is complete: an interrupted install leaves the old checkpoint in place
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m transformers_av.presets.demo_checkpoint TRAINED_FOLDER [--target DIR]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the trained folder (e.g. synthetic-benchmark-video-salmonn/final)")
    parser.add_argument("--target", default=str(DEMO_CHECKPOINT), help="where to install it (default: the package's)")
    args = parser.parse_args(argv)
    try:
        target = install_demo_checkpoint(args.source, args.target)
    except FileNotFoundError as error:
        print(f"demo_checkpoint: error: {error}", file=sys.stderr)
        return 2
    size = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    print(f"installed {args.source} as the demo checkpoint: {target} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
