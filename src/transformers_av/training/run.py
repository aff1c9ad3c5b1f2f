"""The run of `transformers-av train`: build the model and its processor, read the data, train with [`FavorTrainer`],
write `output_dir/final` (LoRA merged; the adapter alone in `final/adapter`) and push it to the Hub if asked.

[`run_training`] is what the command calls on every process (`accelerate launch` included); see
`transformers_av.training.cli` for the command and [`TrainSettings`] for what it reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForMultimodalLM, AutoProcessor, TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..hub import TrainingDetails, push_to_hub
from ..models import AvLlmForConditionalGeneration, family_of
from ..presets import ALL_PRESETS, TINY_MODELS, TRAINING_RECIPES, preset_config
from ..synthetic.tasks import make_match_task, make_modality_match_task, make_sync_task
from .data import ROW_FIELD, AvLlmDataCollator, FavorDataCollator, load_av_dataset, manifest_row_names
from .mixing import MixedTrainingData, MixingRules, modality_counts
from .peft import apply_lora, trainable_model_classes
from .token_rows import train_added_token_rows
from .settings import (
    DIGEST_DIR,
    SYNTHETIC_MATCH_DATA,
    SYNTHETIC_MODALITY_MATCH_DATA,
    SYNTHETIC_SYNC_DATA,
    SYNTHETIC_TASKS,
    TrainSettings,
)
from .trainer import FavorTrainer, enable_llm_gradient_checkpointing, favor_training_arguments
from .validate import checked_manifest

FINAL_DIR = "final"
ADAPTER_DIR = "adapter"

__all__ = [
    "ADAPTER_DIR",
    "FINAL_DIR",
    "ROW_FIELD",
    "RowNamingCollator",
    "WeightDigestCallback",
    "build_model_and_processor",
    "load_training_dataset",
    "mixed_training_data",
    "run_training",
    "weights_digest",
]

# ----------------------------------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------------------------------


def _from_scratch(settings: TrainSettings) -> bool:
    """Whether the model is built with random weights (a tiny model or a preset) rather than loaded."""
    return settings.model in TINY_MODELS or settings.model.lower() in ALL_PRESETS


def build_model_and_processor(settings: TrainSettings):
    """The model (`FavorForConditionalGeneration` or `AvLlmForConditionalGeneration`, encoders frozen if asked, LLM
    frozen with `train_llm: false` but for the rows of the tokens the family adds (`training.token_rows`); no LoRA
    yet) and its processor."""
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
    if not settings.lora:  # (with LoRA, apply_lora makes them PEFT trainable tokens)
        train_added_token_rows(model)  # the modality tokens' rows train with the projectors (stage 1 too)
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
    """[`load_av_dataset`] plus a `_row` column ("line N of path" for JSONL) that errors quote."""
    dataset = load_av_dataset(path, media_root=media_root)
    return dataset.add_column(ROW_FIELD, [f"{name} of {path}" for name in manifest_row_names(path)])


def mixed_training_data(dataset, settings: TrainSettings):
    """The training rows as the recipe mixes them ([`MixedTrainingData`]: video-SALMONN's mixing rules, the
    Audio-Visual LLM's modality mix), or `dataset` itself when the settings mix nothing."""
    rules = MixingRules(**settings.mixing_rules)
    if not rules.active and not settings.modality_mix:
        return dataset
    return MixedTrainingData(dataset, rules=rules, modality_mix=settings.modality_mix or None, seed=settings.seed)


def weights_digest(model) -> str:
    """SHA-256 of every parameter of `model` (names, dtypes, shapes and bytes, in name order). Parameters sharded by
    FSDP2 (DTensors) are gathered first, so every rank must call it (in the same order: it is a collective then)."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        tensor = parameter.detach()
        if hasattr(tensor, "full_tensor"):  # a DTensor shard
            tensor = tensor.full_tensor()
        tensor = tensor.cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(parameter.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class WeightDigestCallback(TrainerCallback):
    """Writes `directory/rank-R.json` on EVERY process at the end of training: the SHA-256 ([`weights_digest`]) of
    that process's copy of the weights at the start and at the end of training. Data-parallel ranks (DDP, ZeRO-1/2)
    must end with the same digest; under FSDP2 the shards are gathered first, so the ranks agree too."""

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
            "distributed_type": args.distributed_state.distributed_type.value,
            "global_step": state.global_step,
            "initial": self.initial,
            "final": weights_digest(model),
        }
        (self.directory / f"rank-{args.process_index}.json").write_text(json.dumps(record, indent=2))


def _training_arguments(settings: TrainSettings, has_eval: bool):
    kwargs: dict[str, Any] = dict(
        output_dir=settings.output_dir,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        per_device_eval_batch_size=settings.per_device_eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps or 1,  # see _apply_batch_layout
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


def _apply_batch_layout(args, settings: TrainSettings) -> tuple[int, int]:
    """Set `args.gradient_accumulation_steps` so that an optimizer step sees `total_train_batch_size` samples over
    all processes (`args.world_size`, known once the arguments exist); returns `(accumulation, total)`."""
    accumulation, total = settings.batch_layout(args.world_size)
    args.gradient_accumulation_steps = accumulation
    return accumulation, total


_SYNTHETIC_TASK_MAKERS = {SYNTHETIC_SYNC_DATA: make_sync_task, SYNTHETIC_MATCH_DATA: make_match_task,
                          SYNTHETIC_MODALITY_MATCH_DATA: make_modality_match_task}


def _resolve_checkpoint(setting: str | None, output_dir: str) -> str | None:
    if setting is None:
        return None
    if setting == "latest":
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
    has_eval = settings.eval_data is not None
    args = _training_arguments(settings, has_eval)
    accumulation, total_batch = _apply_batch_layout(args, settings)
    if args.process_index == 0:
        print(f"batch: {total_batch} samples per optimizer step = {settings.per_device_train_batch_size} per device x "
              f"{args.world_size} process(es) x {accumulation} accumulation step(s)"
              + (f" (recipe {settings.recipe})" if settings.recipe else ""))
    resume = _resolve_checkpoint(settings.resume_from_checkpoint, settings.output_dir)

    train_data, media_root = settings.train_data, settings.media_root
    if train_data in SYNTHETIC_TASKS:
        make_task = _SYNTHETIC_TASK_MAKERS[train_data]
        root = Path(settings.output_dir) / "synthetic_data"
        with args.main_process_first(local=True, desc="writing the synthetic clips"):
            if args.local_process_index == 0 and not (root / "data.jsonl").is_file():
                make_task(root, settings.synthetic_clips, seconds=settings.synthetic_seconds, seed=settings.seed)
        train_data, media_root = str(root / "data.jsonl"), None
    eval_data, eval_root = settings.eval_data, settings.media_root
    if settings.validate_data:  # every row and media file, before anything is built: all bad rows in one report
        with args.main_process_first(local=True, desc="checking the data"):
            check = dict(skip_bad_rows=settings.skip_bad_rows, write=args.local_process_index == 0,
                         progress=args.local_process_index == 0 and not settings.disable_tqdm)
            train_data, media_root = checked_manifest(
                train_data, media_root, kept_path=Path(settings.output_dir) / "kept_train.jsonl", **check)
            if has_eval:
                eval_data, eval_root = checked_manifest(
                    eval_data, eval_root, kept_path=Path(settings.output_dir) / "kept_eval.jsonl", **check)
    train_dataset = mixed_training_data(load_training_dataset(train_data, media_root), settings)
    if isinstance(train_dataset, MixedTrainingData) and args.process_index == 0:
        print(f"rows per modality: {modality_counts(train_dataset.modalities)}")
    eval_dataset = load_training_dataset(eval_data, eval_root) if has_eval else None

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
        ensure_all_modalities=settings.ensure_all_modalities,
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
        "recipe": settings.recipe,
        "total_train_batch_size": total_batch,
        "gradient_accumulation_steps": accumulation,
        "lora": settings.lora,
        "is_main_process": trainer.is_world_process_zero(),
    }


def _push_final(trainer, settings: TrainSettings, final_dir: Path, train_data: str, num_examples: int) -> None:
    """Push what `final_dir` holds (the merged model for LoRA runs) and, for LoRA runs, the adapter, with model
    cards that record the training data and hyper-parameters. Everything is validated before anything is sent."""
    trained = trainer.accelerator.unwrap_model(trainer.model)  # PEFT-wrapped for LoRA runs: its settings go to the card
    dataset_name = SYNTHETIC_TASKS.get(settings.train_data, train_data)
    training = TrainingDetails.from_training_arguments(
        trainer.args, datasets=[dataset_name], model=trained, num_examples=num_examples,
        notes=f"transformers-av train, {trainer.state.global_step} optimizer steps",
        recipe=settings.recipe, recipe_source=TRAINING_RECIPES[settings.recipe].source if settings.recipe else None,
    )
    base = None if _from_scratch(settings) else settings.model
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
            if _from_scratch(settings):
                print(f"note: the base model is a from-scratch {settings.model!r} under FSDP/ZeRO-3; only the "
                      f"adapter is written ({adapter_dir}).")
                return
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

