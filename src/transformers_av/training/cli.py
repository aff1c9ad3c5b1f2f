"""`transformers-av train`: fine-tune a FAVOR / video-SALMONN model from a YAML file and/or command-line options.

The same command runs on one CPU and, under `accelerate launch`, on several processes (DDP, FSDP, DeepSpeed ZeRO):
`transformers.Trainer` reads the distributed environment that `accelerate launch` sets up::

    transformers-av train --config train.yaml                                   # one process
    accelerate launch --config_file examples/accelerate/ddp.yaml -m transformers_av.cli train --config train.yaml

Every field of [`TrainSettings`] can be written in the YAML file (`learning_rate: 1.0e-4`) and overridden on the
command line (`--learning-rate 2e-4`); the command line wins. What it does:

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
import dataclasses
import difflib
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..models import AvLlmForConditionalGeneration, family_of
from ..presets import ALL_PRESETS, TINY_MODELS, preset_config

#: The Audio-Visual LLM paper's two training stages (Shu et al., 2023), as defaults under `stage: 1|2`; settings given
#: in the YAML file or on the command line still win. Both: AdamW betas (0.9, 0.98), cosine schedule, 3% warm-up.
STAGE_RECIPES: dict[int, dict[str, Any]] = {
    1: {"learning_rate": 2e-3, "train_llm": False, "lora": False},  # the projectors only
    2: {"learning_rate": 2e-5, "train_llm": True},  # projectors + LLM (full, or LoRA with `lora: true`)
}
STAGE_COMMON = {"lr_scheduler_type": "cosine", "warmup_steps": 0.03, "adam_beta1": 0.9, "adam_beta2": 0.98}
#: The settings a stage recipe may fill (left `None` they take the stage's value, or this default without a stage).
RECIPE_DEFAULTS: dict[str, Any] = {"learning_rate": 1e-4, "train_llm": True, "lora": False, "lr_scheduler_type": "linear",
                                   "warmup_steps": 0, "adam_beta1": 0.9, "adam_beta2": 0.999}
SYNTHETIC_SYNC_DATA = "synthetic:sync"
SYNTHETIC_MATCH_DATA = "synthetic:match"
SYNTHETIC_TASKS = {SYNTHETIC_SYNC_DATA: "synthetic audio-visual sync task",
                   SYNTHETIC_MATCH_DATA: "synthetic colour / tone matching task"}
ROW_FIELD = "_row"
FINAL_DIR = "final"
ADAPTER_DIR = "adapter"
DIGEST_DIR = "weight_digests"

__all__ = [
    "STAGE_COMMON",
    "STAGE_RECIPES",
    "SYNTHETIC_MATCH_DATA",
    "SYNTHETIC_SYNC_DATA",
    "TINY_MODELS",
    "RowNamingCollator",
    "TrainSettings",
    "WeightDigestCallback",
    "add_train_arguments",
    "load_train_settings",
    "main",
    "run_training",
    "weights_digest",
]


def _help(text: str, **metadata) -> dict:
    return {"help": text, **metadata}


@dataclass
class TrainSettings:
    """Everything `transformers-av train` needs. Field names are those of the YAML file; on the command line they
    are `--field-name` (or `--field_name`)."""

    # -- model ----------------------------------------------------------------------------------------------------
    model: str | None = field(default=None, metadata=_help(
        "a save_pretrained folder or Hub id of a FAVOR / video-SALMONN / Audio-Visual LLM model; or, for a run from "
        "random weights, 'tiny-video-salmonn' / 'tiny-favor' / 'tiny-av-llm' (tiny test configs) or a preset name "
        "(favor-7b, ..., video-salmonn-13b, av-llm-7b)"))
    model_config_overrides: dict[str, Any] = field(default_factory=dict, metadata=_help(
        "config keyword arguments (JSON on the command line): for a tiny model, keyword arguments of "
        "tiny_favor_config (e.g. image_size) or tiny_av_llm_config; for a preset, of FavorConfig / AvLlmConfig; for a "
        "checkpoint, of from_pretrained"))
    processor: str | None = field(default=None, metadata=_help(
        "processor folder or Hub id (default: the model's folder; the tiny processor for a tiny model)"))
    # -- data -----------------------------------------------------------------------------------------------------
    train_data: str | None = field(default=None, metadata=_help(
        f"training JSONL (see transformers_av.training.data), '{SYNTHETIC_MATCH_DATA}' (clips whose colour and tone "
        f"pitch both give the answer) or '{SYNTHETIC_SYNC_DATA}' to generate the synthetic "
        "colour-at-the-beep task in output_dir/synthetic_data"))
    eval_data: str | None = field(default=None, metadata=_help("evaluation JSONL (evaluated every eval_steps)"))
    media_root: str | None = field(default=None, metadata=_help(
        "folder relative media paths are resolved against (default: the JSONL's folder)"))
    synthetic_clips: int = field(default=8, metadata=_help("number of clips of a synthetic task"))
    synthetic_seconds: int = field(default=2, metadata=_help("length (s) of the clips of a synthetic task"))
    max_length: int | None = field(default=None, metadata=_help("truncate answers so a sample fits this many tokens"))
    mixed_unpaired_ratio: float = field(default=0.0, metadata=_help(
        "share of samples replaced by unpaired (video of one row, audio of another) samples (video-SALMONN)"))
    modality_augmentation: bool = field(default=False, metadata=_help(
        "each audio-visual sample also trains as video-only and audio-only (Audio-Visual LLM)"))
    ensure_all_modalities: bool = field(default=True, metadata=_help(
        "give every batch every modality (zero dummies, masked out): every rank runs every encoder"))
    # -- what trains ------------------------------------------------------------------------------------------------
    stage: int | None = field(default=None, metadata=_help(
        "the Audio-Visual LLM's training stage (1: projectors only, lr 2e-3; 2: projectors + LLM, lr 2e-5; both AdamW "
        "betas (0.9, 0.98), cosine, 3% warm-up): its values become the defaults of those settings"))
    freeze_encoders: bool = field(default=True, metadata=_help(
        "freeze the pretrained encoders (ViT + visual Q-Former, Whisper, BEATs; CLIP, CLAP)"))
    train_llm: bool | None = field(default=None, metadata=_help(
        "train the LLM (fully, or its LoRA with lora: true); false: only the connector / projectors train "
        "[true; stage 1: false]"))
    lora: bool | None = field(default=None, metadata=_help(
        "LoRA on the LLM (else the LLM is fully fine-tuned) [false]"))
    lora_r: int = field(default=32, metadata=_help("LoRA rank"))
    lora_alpha: float = field(default=32.0, metadata=_help("LoRA alpha"))
    lora_dropout: float = field(default=0.1, metadata=_help("LoRA dropout"))
    lora_target: str = field(default="attention", metadata=_help(
        "LoRA targets in the LLM: 'attention' (q/k/v/o) or 'attention+mlp'"))
    train_connector: bool = field(default=True, metadata=_help(
        "with LoRA, train the whole connector too (PEFT modules_to_save)"))
    gradient_checkpointing: bool = field(default=False, metadata=_help(
        "activation checkpointing on the LLM decoder layers only"))
    # -- optimisation (TrainingArguments) ---------------------------------------------------------------------------
    output_dir: str = field(default="favor-finetuned", metadata=_help("checkpoints, logs and final/ go here"))
    learning_rate: float | None = field(default=None, metadata=_help(
        "peak learning rate [1e-4; stage 1: 2e-3, stage 2: 2e-5]"))
    num_train_epochs: float = field(default=1.0, metadata=_help("epochs (ignored when max_steps > 0)"))
    max_steps: int = field(default=-1, metadata=_help("optimizer steps; > 0 overrides num_train_epochs"))
    per_device_train_batch_size: int = field(default=1, metadata=_help("samples per process and micro-batch"))
    per_device_eval_batch_size: int = field(default=1, metadata=_help("evaluation samples per process"))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    warmup_steps: float | None = field(default=None, metadata=_help(
        "linear warm-up steps, or a share of all steps when < 1 [0; with a stage: 0.03]"))
    adam_beta1: float | None = field(default=None, metadata=_help("AdamW beta1 [0.9]"))
    adam_beta2: float | None = field(default=None, metadata=_help("AdamW beta2 [0.999; with a stage: 0.98]"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    lr_scheduler_type: str | None = field(default=None, metadata=_help(
        "transformers scheduler name [linear; with a stage: cosine]"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping norm"))
    bf16: bool = field(default=False, metadata=_help("bfloat16 mixed precision"))
    fp16: bool = field(default=False, metadata=_help("float16 mixed precision"))
    logging_steps: int = field(default=10, metadata=_help("log every N optimizer steps"))
    save_steps: int = field(default=500, metadata=_help("write output_dir/checkpoint-N every N steps"))
    save_total_limit: int | None = field(default=None, metadata=_help("keep at most this many checkpoints"))
    eval_steps: int | None = field(default=None, metadata=_help("evaluate every N steps (default: save_steps)"))
    seed: int = field(default=42, metadata=_help("seed of the initialisation, data order and dropout"))
    dataloader_num_workers: int = field(default=0, metadata=_help("processes decoding the media"))
    report_to: str = field(default="none", metadata=_help("'none', 'tensorboard', 'wandb', ... (comma separated)"))
    disable_tqdm: bool = field(default=False, metadata=_help("no progress bars"))
    ddp_find_unused_parameters: bool | None = field(default=None, metadata=_help(
        "DDP find_unused_parameters (default: transformers' choice)"))
    resume_from_checkpoint: str | None = field(default=None, metadata=_help(
        "a checkpoint-N folder, or 'latest' for the newest one in output_dir"))
    weights_digest: bool = field(default=False, metadata=_help(
        f"write output_dir/{DIGEST_DIR}/rank-R.json (SHA-256 of every rank's weights before and after training), "
        "to check that data-parallel ranks end identical (DDP / ZeRO-1/2: replicated weights)"))
    hub_model_id: str | None = field(default=None, metadata=_help(
        "after training, push final/ (model + processor + a model card with the training data and hyper-parameters) "
        "to this Hub repository (for LoRA runs from a checkpoint, the adapter too, to <hub_model_id>-adapter)"))
    hub_private: bool = field(default=False, metadata=_help("create the Hub repositories as private"))
    training_args: dict[str, Any] = field(default_factory=dict, metadata=_help(
        "any other TrainingArguments keyword (JSON on the command line), e.g. {\"optim\": \"adamw_torch_fused\"}"))

    def __post_init__(self):
        if self.stage is not None and self.stage not in STAGE_RECIPES:
            raise ValueError(f"TrainSettings: stage must be 1 or 2 (or null), got {self.stage!r}.")
        recipe = {**RECIPE_DEFAULTS, **(STAGE_COMMON | STAGE_RECIPES[self.stage] if self.stage else {})}
        for name, value in recipe.items():  # the stage's values where nothing was set
            if getattr(self, name) is None:
                setattr(self, name, value)
        if not self.model:
            raise ValueError("TrainSettings: 'model' is required (a checkpoint folder or Hub id, 'tiny-video-salmonn', "
                             "'tiny-favor' or a preset name).")
        if not self.train_data:
            raise ValueError(f"TrainSettings: 'train_data' is required (a JSONL file, {SYNTHETIC_SYNC_DATA!r} or "
                             f"{SYNTHETIC_MATCH_DATA!r}).")
        if not 0.0 <= float(self.mixed_unpaired_ratio) <= 1.0:
            raise ValueError(f"TrainSettings: mixed_unpaired_ratio must be in [0, 1], got {self.mixed_unpaired_ratio!r}.")
        if self.bf16 and self.fp16:
            raise ValueError("TrainSettings: choose bf16 or fp16, not both.")
        if self.lora and not self.train_llm:
            raise ValueError("TrainSettings: lora: true trains the LLM's LoRA weights; with train_llm: false (stage 1: "
                             "projectors only) set lora: false.")
        if self.lora and not self.freeze_encoders:
            raise ValueError("TrainSettings: LoRA training keeps the encoders frozen (apply_lora freezes them); "
                             "set freeze_encoders: true, or lora: false to fine-tune everything.")
        if self.lora_target not in ("attention", "attention+mlp"):
            raise ValueError(f"TrainSettings: lora_target must be 'attention' or 'attention+mlp', got {self.lora_target!r}.")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps", "lora_r", "synthetic_clips", "synthetic_seconds"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainSettings: {name} must be >= 1, got {getattr(self, name)!r}.")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("TrainSettings: give max_steps > 0 or num_train_epochs > 0.")
        overlap = sorted(set(self.training_args) & {f.name for f in dataclasses.fields(self)})
        if overlap:
            raise ValueError(f"TrainSettings: training_args repeats settings that have their own field: {overlap}.")
        if self.training_args.get("gradient_checkpointing") or self.training_args.get("activation_checkpointing"):
            raise ValueError("TrainSettings: use 'gradient_checkpointing: true' (LLM layers only), not training_args.")


# ----------------------------------------------------------------------------------------------------------------------
# settings: YAML + command line
# ----------------------------------------------------------------------------------------------------------------------


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainSettings)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of an annotation like `int | None`."""
    args = typing.get_args(annotation)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser_for(name: str, annotation: Any):
    base, optional = _base_type(annotation)
    origin = typing.get_origin(base) or base

    def parse(text: str):
        if optional and text.strip().lower() in ("none", "null"):
            return None
        if origin is bool:
            return _parse_bool(text)
        if origin is dict:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise argparse.ArgumentTypeError(f"--{name}: expected a JSON object, got {text!r} ({error.msg})") from None
            if not isinstance(value, dict):
                raise argparse.ArgumentTypeError(f"--{name}: expected a JSON object, got {text!r}")
            return value
        try:
            return origin(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name}: expected {origin.__name__}, got {text!r}") from None

    parse.__name__ = getattr(origin, "__name__", "value")
    return parse


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add `--config` and one option per [`TrainSettings`] field to `parser` (only the options given are set)."""
    parser.add_argument("--config", help="YAML file of TrainSettings fields (command-line options override it)")
    types = _field_types()
    for spec in dataclasses.fields(TrainSettings):
        flags = [f"--{spec.name.replace('_', '-')}"]
        if "_" in spec.name:
            flags.append(f"--{spec.name}")
        base, _ = _base_type(types[spec.name])
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        extra: dict[str, Any] = {"nargs": "?", "const": True, "metavar": "true|false"} if base is bool else {}
        parser.add_argument(
            *flags, dest=spec.name, type=_parser_for(spec.name, types[spec.name]), default=argparse.SUPPRESS,
            # argparse %-formats help strings: a literal % (as in "3% warm-up") must be doubled
            help=(spec.metadata.get("help", "") + ("" if spec.name in RECIPE_DEFAULTS else f" (default: {default!r})"))
            .replace("%", "%%"),
            **extra,
        )
    return parser


def load_train_settings(config: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> TrainSettings:
    """[`TrainSettings`] from a YAML file (a mapping of field names) updated with `overrides`.

    Raises:
        ValueError: an unknown field (the message suggests the closest name), a value of the wrong type, or an
            invalid combination (see [`TrainSettings`]).
    """
    values: dict[str, Any] = {}
    source = "the overrides"
    if config is not None:
        try:
            import yaml
        except ImportError as error:  # pragma: no cover - pyyaml is in the train extra
            raise ImportError("Reading a YAML config needs PyYAML: pip install 'transformers-av[train]'.") from error
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"No training config at {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
        source = str(path)
    values.update(overrides or {})
    types = _field_types()
    for key, value in values.items():
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown training setting {key!r}{hint}")
        values[key] = _check_type(key, value, types[key], source)
    return TrainSettings(**values)


def _check_type(name: str, value: Any, annotation: Any, source: str) -> Any:
    base, optional = _base_type(annotation)
    origin = typing.get_origin(base) or base
    if value is None:
        if optional:
            return None
        raise ValueError(f"{source}: setting {name!r} cannot be null")
    if origin is bool:
        if isinstance(value, str):
            return _parse_bool(value)
        if not isinstance(value, bool):
            raise ValueError(f"{source}: setting {name!r} must be true or false, got {value!r}")
        return value
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin is float and isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, origin) or (origin is int and isinstance(value, bool)):
        raise ValueError(f"{source}: setting {name!r} must be {origin.__name__}, got {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """`transformers-av train [--config train.yaml] [--field value ...]`."""
    parser = argparse.ArgumentParser(prog="transformers-av train", description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """Run [`run_training`] on parsed `add_train_arguments` options."""
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command")}
    settings = load_train_settings(args.config, overrides)
    summary = run_training(settings)
    if summary["is_main_process"]:
        print(json.dumps({k: v for k, v in summary.items() if k != "is_main_process"}, indent=2))
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------------------------


def build_model_and_processor(settings: TrainSettings):
    """The model (`FavorForConditionalGeneration` or `AvLlmForConditionalGeneration`, encoders frozen if asked, LLM
    frozen with `train_llm: false`; no LoRA yet) and its processor."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    from .peft import trainable_model_classes

    name, overrides = settings.model, dict(settings.model_config_overrides)
    if name in TINY_MODELS:
        model, processor = TINY_MODELS[name].build(**overrides)
        if settings.processor:
            processor = AutoProcessor.from_pretrained(settings.processor)
    elif name.lower() in ALL_PRESETS:
        if not settings.processor:
            raise ValueError(f"A from-scratch {name!r} model needs 'processor' (a processor folder or Hub id).")
        config = preset_config(name, **overrides)
        model = family_of(config).generation_class(config)
        processor = AutoProcessor.from_pretrained(settings.processor)
    else:
        model = AutoModelForMultimodalLM.from_pretrained(name, **overrides)
        source = settings.processor or name
        try:
            processor = AutoProcessor.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot load a processor from {source!r} (set 'processor'): {error}") from error
    if not isinstance(model, trainable_model_classes()):
        names = " or ".join(cls.__name__ for cls in trainable_model_classes())
        raise TypeError(f"{name!r} is a {type(model).__name__}, not a {names}.")
    if settings.freeze_encoders:
        model.freeze_encoders()
    if not settings.train_llm:
        model.model.language_model.requires_grad_(False)
        model.get_output_embeddings().requires_grad_(False)
    return model, processor


class RowNamingCollator:
    """Wraps a collator so that a batch that cannot be built (a corrupt or missing media file, a bad row) raises an
    error naming the dataset rows (their `_row` column, written by [`load_training_dataset`])."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        try:
            return self.collator(features)
        except Exception as error:
            rows = ", ".join(str(feature.get(ROW_FIELD, "?")) for feature in features)
            raise ValueError(f"Cannot build a batch from {rows}: {error}") from error


def load_training_dataset(path: str, media_root: str | None):
    """[`load_av_dataset`] plus a `_row` column ("row i of path", 0-based) that errors quote."""
    from .data import load_av_dataset

    dataset = load_av_dataset(path, media_root=media_root)
    return dataset.add_column(ROW_FIELD, [f"row {i} of {path}" for i in range(len(dataset))])


def weights_digest(model) -> str:
    """SHA-256 of every parameter of `model` (names, dtypes, shapes and bytes, in name order)."""
    import torch

    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        tensor = parameter.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(parameter.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class WeightDigestCallback(TrainerCallback):
    """Writes `directory/rank-R.json` on EVERY process at the end of training: the SHA-256 ([`weights_digest`]) of
    that process's copy of the weights at the start and at the end of training. Data-parallel ranks (DDP, ZeRO-1/2)
    must end with the same digest; under FSDP / ZeRO-3 each rank holds only a shard, so the digests differ."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.initial: str | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = weights_digest(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": args.process_index,
            "world_size": args.world_size,
            "global_step": state.global_step,
            "initial": self.initial,
            "final": weights_digest(model),
        }
        (self.directory / f"rank-{args.process_index}.json").write_text(json.dumps(record, indent=2))


def _training_arguments(settings: TrainSettings, has_eval: bool):
    from .trainer import favor_training_arguments

    kwargs: dict[str, Any] = dict(
        output_dir=settings.output_dir,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        per_device_eval_batch_size=settings.per_device_eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_steps,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler_type,
        max_grad_norm=settings.max_grad_norm,
        bf16=settings.bf16,
        fp16=settings.fp16,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        dataloader_num_workers=settings.dataloader_num_workers,
        report_to=[r.strip() for r in settings.report_to.split(",") if r.strip()] or "none",
        disable_tqdm=settings.disable_tqdm,
        ddp_find_unused_parameters=settings.ddp_find_unused_parameters,
    )
    if has_eval:
        kwargs.update(eval_strategy="steps", eval_steps=settings.eval_steps or settings.save_steps)
    kwargs.update(settings.training_args)
    return favor_training_arguments(**kwargs)


def _resolve_checkpoint(setting: str | None, output_dir: str) -> str | None:
    if setting is None:
        return None
    if setting == "latest":
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is None:
            raise FileNotFoundError(f"resume_from_checkpoint='latest' but {output_dir} holds no checkpoint-N folder.")
        return last
    if not os.path.isdir(setting):
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint folder at {setting}")
    return setting


def _is_sharded(trainer) -> bool:
    """Whether the weights are sharded across ranks (FSDP or DeepSpeed ZeRO-3)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if getattr(trainer, "is_deepspeed_enabled", False):
        return trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


# ----------------------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------------------


def run_training(settings: TrainSettings, callbacks: list | None = None) -> dict[str, Any]:
    """Train as `settings` say; return a summary (`final_dir`, `global_step`, `train_loss`, `resumed_from`, ...).

    `callbacks` are extra `transformers.TrainerCallback`s. Safe to run under `accelerate launch`: every process
    calls it; only the main process writes the final model."""
    from transformers import set_seed

    from .data import AvLlmDataCollator, FavorDataCollator
    from .peft import apply_lora
    from .trainer import FavorTrainer, enable_llm_gradient_checkpointing

    has_eval = settings.eval_data is not None
    args = _training_arguments(settings, has_eval)
    resume = _resolve_checkpoint(settings.resume_from_checkpoint, settings.output_dir)

    train_data, media_root = settings.train_data, settings.media_root
    if train_data in SYNTHETIC_TASKS:
        from ..synthetic.tasks import make_match_task, make_sync_task

        make_task = make_sync_task if train_data == SYNTHETIC_SYNC_DATA else make_match_task
        root = Path(settings.output_dir) / "synthetic_data"
        with args.main_process_first(local=True, desc="writing the synthetic clips"):
            if args.local_process_index == 0 and not (root / "data.jsonl").is_file():
                make_task(root, settings.synthetic_clips, seconds=settings.synthetic_seconds, seed=settings.seed)
        train_data, media_root = str(root / "data.jsonl"), None
    train_dataset = load_training_dataset(train_data, media_root)
    eval_dataset = load_training_dataset(settings.eval_data, settings.media_root) if has_eval else None

    set_seed(settings.seed)  # the same initial weights on every rank for a from-scratch model
    model, processor = build_model_and_processor(settings)
    collator_class = AvLlmDataCollator if isinstance(model, AvLlmForConditionalGeneration) else FavorDataCollator
    if settings.lora:
        model = apply_lora(model, r=settings.lora_r, alpha=settings.lora_alpha, dropout=settings.lora_dropout,
                           target=settings.lora_target, train_connector=settings.train_connector)
    if settings.gradient_checkpointing:
        enable_llm_gradient_checkpointing(model)

    collator = collator_class(
        processor,
        padding_side="right",
        max_length=settings.max_length,
        mixed_unpaired_ratio=settings.mixed_unpaired_ratio,
        modality_augmentation=settings.modality_augmentation,
        ensure_all_modalities=settings.ensure_all_modalities,
        seed=settings.seed,
    )
    all_callbacks = list(callbacks or [])
    if settings.weights_digest:
        all_callbacks.append(WeightDigestCallback(Path(settings.output_dir) / DIGEST_DIR))
    trainer = FavorTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=RowNamingCollator(collator),
        processing_class=processor,
        callbacks=all_callbacks,
    )
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()  # output_dir/trainer_state.json: the whole loss curve (log_history)
    final_dir = Path(settings.output_dir) / FINAL_DIR
    _save_final(trainer, settings, processor, final_dir)
    if settings.hub_model_id and trainer.is_world_process_zero():
        _push_final(trainer, settings, final_dir, train_data, num_examples=len(train_dataset))
    return {
        "final_dir": str(final_dir),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "resumed_from": resume,
        "lora": settings.lora,
        "is_main_process": trainer.is_world_process_zero(),
    }


def _push_final(trainer, settings: TrainSettings, final_dir: Path, train_data: str, num_examples: int) -> None:
    """Push what `final_dir` holds (the merged model for LoRA runs) and, for LoRA runs, the adapter, with model
    cards that record the training data and hyper-parameters. Everything is validated before anything is sent."""
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    from ..hub import TrainingDetails, push_to_hub

    trained = trainer.accelerator.unwrap_model(trainer.model)  # PEFT-wrapped for LoRA runs: its settings go to the card
    dataset_name = SYNTHETIC_TASKS.get(settings.train_data, train_data)
    training = TrainingDetails.from_training_arguments(
        trainer.args, datasets=[dataset_name], model=trained, num_examples=num_examples,
        notes=f"transformers-av train, {trainer.state.global_step} optimizer steps",
    )
    base = None if settings.model in TINY_MODELS or settings.model.lower() in ALL_PRESETS else settings.model
    model = AutoModelForMultimodalLM.from_pretrained(final_dir)
    processor = AutoProcessor.from_pretrained(final_dir)
    push_to_hub(model, settings.hub_model_id, processor=processor, private=settings.hub_private, training=training,
                finetuned_from=base)
    print(f"pushed {final_dir} to {settings.hub_model_id}")
    if settings.lora and base is not None and not _is_sharded(trainer):
        # the adapter applies to the model training started from (a from-scratch tiny model has no such checkpoint)
        adapter_repo = f"{settings.hub_model_id}-adapter"
        push_to_hub(trained, adapter_repo, processor=processor, private=settings.hub_private, training=training,
                    finetuned_from=base)
        print(f"pushed the adapter to {adapter_repo}")


def _save_final(trainer, settings: TrainSettings, processor, final_dir: Path) -> None:
    """`final_dir`: a loadable model + processor (LoRA merged); `final_dir/adapter`: the adapter alone (LoRA)."""
    if not settings.lora:
        trainer.save_model(str(final_dir))  # gathers FSDP / ZeRO-3 weights; main process writes; processor too
        return
    adapter_dir = final_dir / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))  # the adapter (LoRA + connector copy) and the processor
    if _is_sharded(trainer):
        # the in-memory weights are shards: merge from the saved adapter on top of the base checkpoint
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            if settings.model in TINY_MODELS or settings.model.lower() in ALL_PRESETS:
                print(f"note: the base model is a from-scratch {settings.model!r} under FSDP/ZeRO-3; only the "
                      f"adapter is written ({adapter_dir}).")
                return
            from peft import PeftModel
            from transformers import AutoModelForMultimodalLM

            base = AutoModelForMultimodalLM.from_pretrained(settings.model, **settings.model_config_overrides)
            merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
            merged.save_pretrained(str(final_dir))
            processor.save_pretrained(str(final_dir))
        trainer.accelerator.wait_for_everyone()
        return
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        peft_model = trainer.accelerator.unwrap_model(trainer.model)
        merged = peft_model.merge_and_unload()
        merged.save_pretrained(str(final_dir))
        processor.save_pretrained(str(final_dir))
    trainer.accelerator.wait_for_everyone()

