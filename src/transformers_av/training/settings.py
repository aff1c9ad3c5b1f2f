"""[`TrainSettings`]: everything `transformers-av train` reads, from a YAML (or JSON) file and the command line.

The command-line options are built by transformers' own `HfArgumentParser` from the fields of [`TrainSettings`] and
their `help`; a file is read into a mapping of field names, the options given on the command line are laid over it,
and `HfArgumentParser.parse_dict` builds the settings. [`TrainSettings`] itself checks and converts every value (YAML
reads `1e-4` as a string, the command line gives a dictionary as JSON text) and fills the settings that a training
recipe decides (`recipe: NAME`, one of `transformers_av.presets.TRAINING_RECIPES`; `stage: 1|2` names the Audio-Visual
LLM's two): left `None`, a setting takes the recipe's value, or its plain default without a recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import HfArg, string_to_bool

from ..presets.paper import TRAINING_RECIPES

#: `stage: N` is the recipe of the Audio-Visual LLM's training stage N (Shu et al., 2023, §4.1).
STAGE_RECIPES: dict[int, str] = {1: "av-llm-stage-1", 2: "av-llm-stage-2"}
#: The value of every setting a recipe may fill, when no recipe fills it.
RECIPE_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4, "train_llm": True, "lora": False, "lora_r": 32, "lr_scheduler_type": "linear",
    "warmup_steps": 0, "adam_beta1": 0.9, "adam_beta2": 0.999, "num_train_epochs": 1.0, "max_steps": -1,
    "total_train_batch_size": None, "video_audio_ratio": 0.0, "image_audio_ratio": 0.0,
    "image_both_tasks_ratio": 0.5, "av_matching_ratio": 0.0, "av_mismatch_ratio": 0.5,
}
#: Settings of earlier releases that trained something other than the papers describe: what to use instead.
REMOVED_SETTINGS = {
    "modality_augmentation": (
        "it trained every audio-visual row three times (<VIS>, <AUD>, <AUD_VIS>) with the same prompt and answer, "
        "so the <VIS> copy learned to answer about sounds it never heard. The paper's modality-augmented training "
        "mixes rows of each modality with instructions of their own: give each row a 'modality' field "
        "(visual / audio / audio_visual) and, to set the proportions, 'modality_mix'."
    ),
    "mixed_unpaired_ratio": (
        "video-SALMONN's mixed training now follows the official rules, one setting each: video_audio_ratio, "
        "image_audio_ratio, image_both_tasks_ratio, av_matching_ratio, av_mismatch_ratio ('recipe: "
        "video-salmonn-mixed' sets the official values)."
    ),
}
SYNTHETIC_SYNC_DATA = "synthetic:sync"
SYNTHETIC_MATCH_DATA = "synthetic:match"
SYNTHETIC_MODALITY_MATCH_DATA = "synthetic:match-modalities"
SYNTHETIC_TASKS = {SYNTHETIC_SYNC_DATA: "synthetic audio-visual sync task",
                   SYNTHETIC_MATCH_DATA: "synthetic colour / tone matching task",
                   SYNTHETIC_MODALITY_MATCH_DATA: "synthetic colour / tone matching task, visual-only, audio-only and "
                                                  "audio-visual rows"}
DIGEST_DIR = "weight_digests"
#: A `bool | None` option given without a value means true (`--lora`), as for the plain `bool` options.
_FLAG = {"nargs": "?", "const": True}

__all__ = [
    "DIGEST_DIR",
    "RECIPE_DEFAULTS",
    "REMOVED_SETTINGS",
    "STAGE_RECIPES",
    "SYNTHETIC_MATCH_DATA",
    "SYNTHETIC_MODALITY_MATCH_DATA",
    "SYNTHETIC_SYNC_DATA",
    "SYNTHETIC_TASKS",
    "TrainSettings",
    "load_train_settings",
    "train_argument_parser",
    "train_overrides",
]


@dataclass
class TrainSettings:
    """Everything `transformers-av train` needs. Field names are those of the YAML file; on the command line they
    are `--field-name` (or `--field_name`). A dictionary setting may also be given as its JSON text."""

    # -- model ----------------------------------------------------------------------------------------------------
    model: str | None = HfArg(default=None, help=(
        "a save_pretrained folder or Hub id of a FAVOR / video-SALMONN / Audio-Visual LLM model; or, for a run from "
        "random weights, 'tiny-video-salmonn' / 'tiny-favor' / 'tiny-av-llm' (tiny test configs) or a preset name "
        "(favor-7b, ..., video-salmonn-13b, av-llm-7b)"))
    model_config_overrides: dict[str, Any] | str | None = HfArg(default_factory=dict, help=(
        "config keyword arguments (JSON on the command line): for a tiny model, keyword arguments of "
        "tiny_favor_config (e.g. image_size) or tiny_av_llm_config; for a preset, of FavorConfig / AvLlmConfig; for a "
        "checkpoint, of from_pretrained"))
    processor: str | None = HfArg(default=None, help=(
        "processor folder or Hub id (default: the model's folder; the tiny processor for a tiny model)"))
    # -- data -----------------------------------------------------------------------------------------------------
    train_data: str | None = HfArg(default=None, help=(
        f"training JSONL (see transformers_av.training.data), '{SYNTHETIC_MATCH_DATA}' (clips whose colour and tone "
        f"pitch both give the answer) or '{SYNTHETIC_SYNC_DATA}' to generate the synthetic "
        "colour-at-the-beep task in output_dir/synthetic_data"))
    eval_data: str | None = HfArg(default=None, help="evaluation JSONL (evaluated every eval_steps)")
    media_root: str | None = HfArg(default=None, help=(
        "folder relative media paths are resolved against (default: the JSONL's folder)"))
    validate_data: bool = HfArg(default=True, help=(
        "check every row and media file of train_data / eval_data before training starts (all bad rows reported "
        "at once; see transformers-av validate-data)"))
    skip_bad_rows: bool = HfArg(default=False, help=(
        "with validate_data: train on the good rows (written to output_dir/kept_*.jsonl) instead of stopping"))
    synthetic_clips: int = HfArg(default=8, help="number of clips of a synthetic task")
    synthetic_seconds: int = HfArg(default=2, help="length (s) of the clips of a synthetic task")
    max_length: int | None = HfArg(default=None, help="truncate answers so a sample fits this many tokens")
    modality_mix: dict[str, Any] | str | None = HfArg(default_factory=dict, help=(
        "modality-augmented training (Audio-Visual LLM, Shu et al. 3.2): share of each row modality per epoch, e.g. "
        "{\"visual\": 130, \"audio\": 45, \"audio_visual\": 85} (the paper's Table 10; also 'text'); rows carry "
        "their modality (the 'modality' field). Empty: the data's own proportions"))
    video_audio_ratio: float | None = HfArg(default=None, help=(
        "video-SALMONN mixed training: share of video-only rows given the audio of a random audio-only row and "
        "both tasks joined ('In the video, ...', ', and, ') [0; recipe video-salmonn-mixed: 0.2]"))
    image_audio_ratio: float | None = HfArg(default=None, help=(
        "video-SALMONN mixed training: share of image rows given the audio of a random audio-only row "
        "[0; recipe video-salmonn-mixed: 1]"))
    image_both_tasks_ratio: float | None = HfArg(default=None, help=(
        "of those image rows, the share asked both tasks joined with ', and ' (the rest: one of the two) [0.5]"))
    av_matching_ratio: float | None = HfArg(default=None, help=(
        "video-SALMONN mixed training: share of paired audio-video rows turned into audio-video matching questions "
        "[0; recipe video-salmonn-mixed: 0.1]"))
    av_mismatch_ratio: float | None = HfArg(default=None, help=(
        "of those matching questions, the share given another row's audio and the answer 'No.' [0.5]"))
    ensure_all_modalities: bool = HfArg(default=True, help=(
        "give every batch every modality (zero dummies, masked out): every rank runs every encoder"))
    # -- what trains ------------------------------------------------------------------------------------------------
    recipe: str | None = HfArg(default=None, help=(
        "a published training recipe whose values become the defaults of the settings it decides: "
        + "; ".join(f"{name} ({recipe.summary})" for name, recipe in TRAINING_RECIPES.items())))
    stage: int | None = HfArg(default=None, help=(
        "the Audio-Visual LLM's training stage: 1 = recipe av-llm-stage-1 (projectors only, lr 2e-3, total batch 256, "
        "3 epochs), 2 = av-llm-stage-2 (projectors + LLM, lr 2e-5, total batch 128, 1 epoch); both AdamW betas "
        "(0.9, 0.98), cosine, 3% warm-up"))
    freeze_encoders: bool = HfArg(default=True, help=(
        "freeze the pretrained encoders (ViT + visual Q-Former, Whisper, BEATs; CLIP, CLAP)"))
    train_llm: bool | None = HfArg(default=None, metadata=dict(_FLAG), help=(
        "train the LLM (fully, or its LoRA with lora: true); false: only the connector / projectors train "
        "[true; stage 1: false]"))
    lora: bool | None = HfArg(default=None, metadata=dict(_FLAG), help=(
        "LoRA on the LLM (else the LLM is fully fine-tuned) [false]"))
    lora_r: int | None = HfArg(default=None, help="LoRA rank [32]")
    lora_alpha: float = HfArg(default=32.0, help="LoRA alpha")
    lora_dropout: float = HfArg(default=0.1, help="LoRA dropout")
    lora_target: Literal["attention", "attention+mlp"] = HfArg(default="attention", help=(
        "LoRA targets in the LLM: q/k/v/o ('attention', the official video-SALMONN config) or also gate/up/down "
        "('attention+mlp', the papers' wording: q/k/v + feed-forward)"))
    train_connector: bool = HfArg(default=True, help="with LoRA, train the whole connector too (PEFT modules_to_save)")
    gradient_checkpointing: bool = HfArg(default=False, help="activation checkpointing on the LLM decoder layers only")
    # -- optimisation (TrainingArguments) ---------------------------------------------------------------------------
    output_dir: str = HfArg(default="favor-finetuned", help="checkpoints, logs and final/ go here")
    learning_rate: float | None = HfArg(default=None, help="peak learning rate [1e-4; stage 1: 2e-3, stage 2: 2e-5]")
    num_train_epochs: float | None = HfArg(default=None, help=(
        "epochs (ignored when max_steps > 0) [1; recipe av-llm-stage-1: 3]"))
    max_steps: int | None = HfArg(default=None, help=(
        "optimizer steps; > 0 overrides num_train_epochs [-1; recipe favor-storytelling: 100]"))
    total_train_batch_size: int | None = HfArg(default=None, help=(
        "samples per optimizer step over all processes: per_device_train_batch_size x processes x "
        "gradient_accumulation_steps; the accumulation is computed from it (it must divide evenly) "
        "[per device x processes x accumulation; recipe av-llm-stage-1: 256, av-llm-stage-2: 128]"))
    per_device_train_batch_size: int = HfArg(default=1, help="samples per process and micro-batch")
    per_device_eval_batch_size: int = HfArg(default=1, help="evaluation samples per process")
    gradient_accumulation_steps: int | None = HfArg(default=None, help=(
        "micro-batches per optimizer step [1; computed from total_train_batch_size when that is set]"))
    warmup_steps: float | None = HfArg(default=None, help=(
        "linear warm-up steps, or a share of all steps when < 1 [0; with a stage: 0.03]"))
    adam_beta1: float | None = HfArg(default=None, help="AdamW beta1 [0.9]")
    adam_beta2: float | None = HfArg(default=None, help="AdamW beta2 [0.999; with a stage: 0.98]")
    weight_decay: float = HfArg(default=0.0, help="AdamW weight decay")
    lr_scheduler_type: str | None = HfArg(default=None, help="transformers scheduler name [linear; with a stage: cosine]")
    max_grad_norm: float = HfArg(default=1.0, help="gradient clipping norm")
    bf16: bool = HfArg(default=False, help="bfloat16 mixed precision")
    fp16: bool = HfArg(default=False, help="float16 mixed precision")
    logging_steps: int = HfArg(default=10, help="log every N optimizer steps")
    save_steps: int = HfArg(default=500, help="write output_dir/checkpoint-N every N steps")
    save_total_limit: int | None = HfArg(default=None, help="keep at most this many checkpoints")
    eval_steps: int | None = HfArg(default=None, help="evaluate every N steps (default: save_steps)")
    seed: int = HfArg(default=42, help="seed of the initialisation, data order and dropout")
    dataloader_num_workers: int = HfArg(default=0, help="processes decoding the media")
    report_to: str = HfArg(default="none", help="'none', 'tensorboard', 'wandb', ... (comma separated)")
    disable_tqdm: bool = HfArg(default=False, help="no progress bars")
    ddp_find_unused_parameters: bool | None = HfArg(default=None, help=(
        "DDP find_unused_parameters (default: transformers' choice)"))
    resume_from_checkpoint: str | None = HfArg(default=None, help=(
        "a checkpoint-N folder, or 'latest' for the newest one in output_dir"))
    weights_digest: bool = HfArg(default=False, help=(
        f"write output_dir/{DIGEST_DIR}/rank-R.json (SHA-256 of every rank's weights before and after training), "
        "to check that data-parallel ranks end identical (DDP / ZeRO-1/2: replicated weights)"))
    hub_model_id: str | None = HfArg(default=None, help=(
        "after training, push final/ (model + processor + a model card with the training data and hyper-parameters) "
        "to this Hub repository (for LoRA runs from a checkpoint, the adapter too, to <hub_model_id>-adapter)"))
    hub_private: bool = HfArg(default=False, help="create the Hub repositories as private")
    training_args: dict[str, Any] | str | None = HfArg(default_factory=dict, help=(
        "any other TrainingArguments keyword (JSON on the command line), e.g. {\"optim\": \"adamw_torch_fused\"}"))

    def __post_init__(self):
        for name, annotation in _setting_types().items():
            setattr(self, name, _convert(name, getattr(self, name), annotation))
        self._apply_recipe()
        if not self.model:
            raise ValueError("TrainSettings: 'model' is required (a checkpoint folder or Hub id, 'tiny-video-salmonn', "
                             "'tiny-favor' or a preset name).")
        if not self.train_data:
            raise ValueError(f"TrainSettings: 'train_data' is required (a JSONL file, {SYNTHETIC_SYNC_DATA!r} or "
                             f"{SYNTHETIC_MATCH_DATA!r}).")
        for name, value in self.mixing_rules.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TrainSettings: {name} must be a probability in [0, 1], got {value!r}.")
        if self.bf16 and self.fp16:
            raise ValueError("TrainSettings: choose bf16 or fp16, not both.")
        if self.lora and not self.train_llm:
            raise ValueError("TrainSettings: lora: true trains the LLM's LoRA weights; with train_llm: false (stage 1: "
                             "projectors only) set lora: false.")
        if self.lora and not self.freeze_encoders:
            raise ValueError("TrainSettings: LoRA training keeps the encoders frozen (apply_lora freezes them); "
                             "set freeze_encoders: true, or lora: false to fine-tune everything.")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "total_train_batch_size", "logging_steps", "save_steps", "lora_r", "synthetic_clips",
                     "synthetic_seconds"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"TrainSettings: {name} must be >= 1, got {getattr(self, name)!r}.")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("TrainSettings: give max_steps > 0 or num_train_epochs > 0.")
        overlap = sorted(set(self.training_args) & set(_setting_types()))
        if overlap:
            raise ValueError(f"TrainSettings: training_args repeats settings that have their own field: {overlap}.")
        if self.training_args.get("gradient_checkpointing") or self.training_args.get("activation_checkpointing"):
            raise ValueError("TrainSettings: use 'gradient_checkpointing: true' (LLM layers only), not training_args.")


    def _apply_recipe(self) -> None:
        """Fill the settings left `None` from the recipe (`recipe`, or `stage`), else from [`RECIPE_DEFAULTS`]."""
        if self.stage is not None and self.stage not in STAGE_RECIPES:
            raise ValueError(f"TrainSettings: stage must be 1 or 2 (or null), got {self.stage!r}.")
        if self.stage is not None:
            named = STAGE_RECIPES[self.stage]
            if self.recipe is not None and self.recipe != named:
                raise ValueError(f"TrainSettings: stage: {self.stage} is recipe {named!r}, but recipe is {self.recipe!r}; "
                                 "give one of them.")
            self.recipe = named
        if self.recipe is not None and self.recipe not in TRAINING_RECIPES:
            close = difflib.get_close_matches(self.recipe, list(TRAINING_RECIPES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"TrainSettings: unknown recipe {self.recipe!r} (known: {sorted(TRAINING_RECIPES)}){hint}")
        recipe = dict(TRAINING_RECIPES[self.recipe].settings) if self.recipe else {}
        for name, default in RECIPE_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, recipe.get(name, default))

    @property
    def mixing_rules(self) -> dict[str, float]:
        """The video-SALMONN mixing rules set (`transformers_av.training.mixing.MixingRules` keyword arguments)."""
        return {name: getattr(self, name) for name in ("video_audio_ratio", "image_audio_ratio",
                                                       "image_both_tasks_ratio", "av_matching_ratio",
                                                       "av_mismatch_ratio")}

    def batch_layout(self, world_size: int) -> tuple[int, int]:
        """`(gradient_accumulation_steps, total_train_batch_size)` on `world_size` processes: the accumulation that
        makes `total_train_batch_size` when that is set (an error when it does not divide evenly, or when an explicit
        `gradient_accumulation_steps` disagrees), else the accumulation given (default 1) and its total."""
        per_step = self.per_device_train_batch_size * world_size
        if self.total_train_batch_size is None:
            accumulation = self.gradient_accumulation_steps or 1
            return accumulation, per_step * accumulation
        accumulation, remainder = divmod(self.total_train_batch_size, per_step)
        if remainder or accumulation < 1:
            raise ValueError(
                f"TrainSettings: total_train_batch_size {self.total_train_batch_size} is not a multiple of "
                f"per_device_train_batch_size {self.per_device_train_batch_size} x {world_size} process(es) = "
                f"{per_step}; change one of them."
            )
        if self.gradient_accumulation_steps is not None and self.gradient_accumulation_steps != accumulation:
            raise ValueError(
                f"TrainSettings: total_train_batch_size {self.total_train_batch_size} = "
                f"{self.per_device_train_batch_size} per device x {world_size} process(es) x {accumulation} "
                f"accumulation steps, but gradient_accumulation_steps is {self.gradient_accumulation_steps}; give one "
                "of the two."
            )
        return accumulation, self.total_train_batch_size


@functools.cache
def _setting_types() -> dict[str, Any]:
    """Field name -> its resolved annotation (read from the class: `HfArgumentParser` rewrites `Field.type`)."""
    return typing.get_type_hints(TrainSettings)


def _convert(name: str, value: Any, annotation: Any) -> Any:
    """`value` of setting `name` as `annotation` wants it: a float from YAML's `1e-4` (a string to YAML), a bool from
    "true" / "false", a dictionary from its JSON text; anything else of the wrong type is an error naming the setting."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    kind = next((option for option in options if option is not type(None)), annotation)
    origin = typing.get_origin(kind) or kind
    if value is None:
        if origin is dict:
            return {}
        if type(None) in options:
            return None
        raise ValueError(f"TrainSettings: setting {name!r} cannot be null")
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise ValueError(f"TrainSettings: {name} must be one of {list(typing.get_args(kind))}, got {value!r}")
        return value
    if origin is dict and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"TrainSettings: setting {name!r} must be a JSON object, got {value!r} ({error.msg})") from None
    elif origin is bool and isinstance(value, str):
        try:
            return string_to_bool(value)
        except argparse.ArgumentTypeError:
            raise ValueError(f"TrainSettings: setting {name!r} must be true or false, got {value!r}") from None
    elif origin is float and (isinstance(value, str) or isinstance(value, int) and not isinstance(value, bool)):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, origin) or (origin is int and isinstance(value, bool)):
        expected = "true or false" if origin is bool else "a mapping" if origin is dict else origin.__name__
        raise ValueError(f"TrainSettings: setting {name!r} must be {expected}, got {value!r}")
    return value


def _read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of settings in a YAML file (or a JSON file: `.json`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No training config at {path}")
    text = path.read_text(encoding="utf-8")
    loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a training config must be a mapping of settings, got {type(loaded).__name__}")
    return loaded


def load_train_settings(config: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> TrainSettings:
    """[`TrainSettings`] from a YAML (or JSON) file, a mapping of field names, updated with `overrides`.

    Raises:
        ValueError: an unknown field (the message suggests the closest name), a value of the wrong type, or an
            invalid combination (see [`TrainSettings`]).
    """
    values = _read_settings_file(config) if config is not None else {}
    values.update(overrides or {})
    source = str(config) if config is not None else "the overrides"
    for key in values:
        if key in REMOVED_SETTINGS:
            raise ValueError(f"{source}: the setting {key!r} was removed: {REMOVED_SETTINGS[key]}")
        if key not in _setting_types():
            close = difflib.get_close_matches(key, list(_setting_types()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown training setting {key!r}{hint}")
    (settings,) = HfArgumentParser(TrainSettings).parse_dict(values)
    return settings


def train_argument_parser(**parser_kwargs) -> HfArgumentParser:
    """`HfArgumentParser(TrainSettings)` plus `--config FILE`. An option that is not given stays out of the parsed
    namespace (instead of holding its default), so that the file's value stands; [`train_overrides`] collects the
    given ones. Keyword arguments go to `argparse.ArgumentParser` (`add_help=False` for a `parents=[...]` parser)."""
    parser = HfArgumentParser(TrainSettings, **parser_kwargs)
    parser.add_argument("--config", help="YAML (or .json) file of these settings; options given here override it")
    fields = {spec.name: spec for spec in dataclasses.fields(TrainSettings)}
    # argparse has no public way to change an existing option's default: its actions are reached through `_actions`
    for action in parser._actions:
        spec = fields.get(action.dest)
        if spec is None:
            continue
        if action.option_strings[0] == f"--no_{spec.name}":  # HfArgumentParser's negation of a flag that is on
            action.help = f"set {spec.name} to false"
        elif spec.name not in RECIPE_DEFAULTS and "(default" not in action.help and not action.help.endswith("]"):
            # (a help ending in "[...]" states its default, as the settings a recipe fills do)
            default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
            action.help = f"{action.help} (default: {default!r})"
        action.help = action.help.replace("%", "%%")  # argparse %-formats help texts ("3% warm-up")
        action.default = argparse.SUPPRESS
    return parser


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The [`TrainSettings`] fields given on the command line (parsed by a [`train_argument_parser`])."""
    return {name: value for name, value in vars(args).items() if name in _setting_types()}
