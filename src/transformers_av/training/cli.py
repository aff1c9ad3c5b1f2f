"""`transformers-av train`: fine-tune a FAVOR / video-SALMONN model from a YAML file and/or command-line options.

The same command runs on one CPU and, under `accelerate launch`, on several processes (DDP, FSDP, DeepSpeed ZeRO):
`transformers.Trainer` reads the distributed environment that `accelerate launch` sets up::

    transformers-av train --config train.yaml                                   # one process
    accelerate launch --config_file examples/accelerate/ddp.yaml -m transformers_av.cli train --config train.yaml

Every field of [`TrainSettings`] can be written in the YAML file (`learning_rate: 1.0e-4`) and overridden on the
command line (`--learning-rate 2e-4`); the command line wins. The options are those `transformers.HfArgumentParser`
builds from [`TrainSettings`]; an unknown setting in the file is an error that names the closest one. What it does
([`run_training`]):

1. builds (or loads) the model and its processor, freezes the encoders, optionally wraps the LLM in LoRA
   ([`apply_lora`]) and turns on LLM-only activation checkpointing ([`enable_llm_gradient_checkpointing`]);
2. reads the JSONL dataset(s) ([`load_av_dataset`]) and decodes the media batch by batch ([`FavorDataCollator`], with
   `ensure_all_modalities` on by default so that every rank runs every encoder on every batch);
3. trains with [`FavorTrainer`] (progress bar, `lm_loss` / `diversity_loss` logs, `checkpoint-N` folders every
   `save_steps`; `resume_from_checkpoint: latest` continues from the newest one);
4. writes `output_dir/final`: a `save_pretrained` model that `AutoModelForMultimodalLM.from_pretrained` loads, and its
   processor. With LoRA, `final/` holds the model with the LoRA MERGED into the LLM weights (a plain
   `FavorForConditionalGeneration`) and `final/adapter/` the PEFT adapter alone (LoRA + trained connector copy), for
   `PeftModel.from_pretrained(base_model, "final/adapter")`.
"""

from __future__ import annotations

import argparse
import json

from .run import run_training
from .settings import load_train_settings, train_argument_parser, train_overrides

__all__ = ["main", "run_from_args"]


def main(argv: list[str] | None = None) -> int:
    """`transformers-av train [--config train.yaml] [--field value ...]`."""
    parser = train_argument_parser(prog="transformers-av train", description=__doc__.split("\n\n")[0])
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """Run [`run_training`] on options parsed by a [`train_argument_parser`]: the file `--config` names, overridden by
    the options given."""
    settings = load_train_settings(args.config, train_overrides(args))
    summary = run_training(settings)
    if summary["is_main_process"]:
        print(json.dumps({k: v for k, v in summary.items() if k != "is_main_process"}, indent=2))
    return 0
