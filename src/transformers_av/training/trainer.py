"""Training a FAVOR / video-SALMONN model with `transformers.Trainer`.

`FavorForConditionalGeneration` (bare or wrapped by `apply_lora`) trains with an unmodified `transformers.Trainer`:
its forward takes `labels` and `num_items_in_batch` (so gradient accumulation normalises the LM loss over the whole
accumulated batch) and returns `loss = lm_loss + diversity_loss_weight * diversity_loss`. Two things to know:

* `remove_unused_columns=False` is required: the dataset rows (paths, prompts) are decoded by the collator, and the
  media inputs are not in the signature of a `PeftModel`'s forward (`*args, **kwargs`), so the Trainer would silently
  drop them. `FavorTrainer` and `favor_training_arguments(...)` set it.
* Activation (gradient) checkpointing belongs on the LLM layers only: the encoders are frozen and run under
  `torch.no_grad()`, so there is nothing to recompute there. Use `enable_llm_gradient_checkpointing(model)`
  rather than `TrainingArguments(gradient_checkpointing=True)`, which would flag every encoder layer of the model.

`FavorTrainer` adds the two loss terms to the training logs (`lm_loss`, `diversity_loss`), reads a
[`MixedTrainingData`] (the recipes' mixed rows) with its own [`EpochSampler`] and keeps an embedding of which only
the added tokens' rows train out of weight decay (`training.token_rows`); training itself is unchanged.

Gradient accumulation and the diversity loss: the LM loss is normalised by the answer-token count of the whole
accumulated batch (`num_items_in_batch`), and the model scales each micro-batch's diversity term by that micro-batch's
share of those tokens, so an optimizer step applies `diversity_loss_weight` once, to the token-weighted mean of the
micro-batch diversity losses (the diversity loss itself is a mean over the windows of a batch, so it is not exactly
the full batch's value).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import nested_gather
from transformers.utils import logging

from .mixing import MixedTrainingData
from .token_rows import TRAINED_ROWS_ATTRIBUTE

logger = logging.get_logger(__name__)

LOSS_TERMS = ("lm_loss", "diversity_loss")


def favor_training_arguments(**kwargs) -> TrainingArguments:
    """`TrainingArguments(**kwargs)` with `remove_unused_columns=False` (required: see the module docstring).

    Whole-model gradient checkpointing (`gradient_checkpointing` / `activation_checkpointing`) is refused: call
    `enable_llm_gradient_checkpointing(model)` instead."""
    if kwargs.get("remove_unused_columns", False):
        raise ValueError("FAVOR models need remove_unused_columns=False: the Trainer would drop the media inputs.")
    if kwargs.get("gradient_checkpointing") or kwargs.get("activation_checkpointing"):
        raise ValueError(
            "Whole-model gradient checkpointing would also wrap the frozen encoders; call "
            "enable_llm_gradient_checkpointing(model) before building the Trainer instead."
        )
    kwargs["remove_unused_columns"] = False
    return TrainingArguments(**kwargs)


def _language_model(model: nn.Module) -> nn.Module:
    """The LLM body (`FavorModel.language_model`) of a FAVOR model, bare, PEFT-wrapped or a `FavorModel`."""
    get_base_model = getattr(model, "get_base_model", None)
    base = get_base_model() if callable(get_base_model) else model
    favor_model = getattr(base, "model", base)
    language_model = getattr(favor_model, "language_model", None)
    if language_model is None:
        raise TypeError(f"{type(model).__name__} is not a FAVOR model (no model.language_model).")
    return language_model


def enable_llm_gradient_checkpointing(model: nn.Module, gradient_checkpointing_kwargs: dict | None = None) -> nn.Module:
    """Activation checkpointing on the LLM decoder layers only (non-reentrant `torch.utils.checkpoint`), never on
    the encoders (Whisper's conv front end included) or the connector. Works on a bare or PEFT-wrapped
    `FavorForConditionalGeneration` or a `FavorModel`. Returns the language model."""
    language_model = _language_model(model)
    kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
    if hasattr(language_model, "activation_checkpointing_enable"):  # transformers >= 5.23
        language_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return language_model


def disable_llm_gradient_checkpointing(model: nn.Module) -> nn.Module:
    """Undo `enable_llm_gradient_checkpointing`. Returns the language model."""
    language_model = _language_model(model)
    if hasattr(language_model, "activation_checkpointing_disable"):
        language_model.activation_checkpointing_disable()
    else:
        language_model.gradient_checkpointing_disable()
    return language_model


class FavorTrainer(Trainer):
    """`transformers.Trainer` that also logs the model's `lm_loss` and `diversity_loss`, averaged over the logging
    interval like `loss` (per optimizer step: `lm_loss` on the same scale as `loss`; `diversity_loss` as the mean of
    its micro-batch values), and keeps the raw dataset columns for the collator (`remove_unused_columns=False`).
    Training itself is unchanged."""

    def __init__(self, *args, **kwargs):
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if training_args is not None and training_args.remove_unused_columns:
            # the collator needs the raw columns (media paths, prompts): never let the Trainer drop them
            logger.info("FavorTrainer: setting remove_unused_columns=False (the collator decodes the raw rows).")
            training_args.remove_unused_columns = False
        super().__init__(*args, **kwargs)
        self._loss_term_totals: dict[str, torch.Tensor] = {}  # on-device sums since the last training log
        self._loss_term_steps: set[int] = set()  # the optimizer steps they cover

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if isinstance(dataset, MixedTrainingData):
            # its keys carry the epoch and position that seed every mixing draw (see training.mixing)
            return dataset.sampler()
        return super()._get_train_sampler(train_dataset)

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        # an embedding of which only the added tokens' rows train (training.token_rows): weight decay would move the
        # frozen rows too
        rows_only = {name for name, parameter in model.named_parameters() if hasattr(parameter, TRAINED_ROWS_ATTRIBUTE)}
        return [name for name in super().get_decay_parameter_names(model) if name not in rows_only]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            self._accumulate_loss_terms(outputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _accumulate_loss_terms(self, outputs, num_items_in_batch):
        if not isinstance(outputs, dict):  # return_dict=False: no named terms
            return
        micro_batches = getattr(self, "current_gradient_accumulation_steps", 1) or 1
        # the same scaling Trainer.training_step / compute_loss apply to `loss`
        if getattr(self, "loss_is_scaled_for_ga", None) is not None:
            lm_scaled_for_ga = self.loss_is_scaled_for_ga
        else:
            lm_scaled_for_ga = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
                self.compute_loss_func is not None
            )
        lm_scale = 1.0 if lm_scaled_for_ga else 1.0 / micro_batches
        if (
            self.args.average_tokens_across_devices
            and (self.model_accepts_loss_kwargs or self.compute_loss_func)
            and num_items_in_batch is not None
        ):
            tp_size = self.get_tp_size() if hasattr(self, "get_tp_size") else 1
            devices = self.accelerator.num_processes // tp_size if self.args.n_gpu <= 1 else self.args.n_gpu
            lm_scale *= devices
        scales = {"lm_loss": lm_scale, "diversity_loss": 1.0 / micro_batches}
        totals = self._loss_term_totals
        self._loss_term_steps.add(self.state.global_step)
        for name in LOSS_TERMS:
            value = outputs.get(name)
            if value is None:
                continue
            value = value.detach().float().mean() * scales[name]
            if name in totals:
                totals[name] = totals[name] + value.to(totals[name].device)
            else:
                totals[name] = value.to(self.args.device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the loss terms of the optimizer steps it covers
            totals, steps = self._loss_term_totals, len(self._loss_term_steps)
            self._loss_term_totals, self._loss_term_steps = {}, set()
            if steps:
                for name, total in totals.items():
                    logs[name] = nested_gather(total, self.args.parallel_mode).mean().item() / steps
        super().log(logs, start_time)


__all__ = [
    "FavorTrainer",
    "LOSS_TERMS",
    "disable_llm_gradient_checkpointing",
    "enable_llm_gradient_checkpointing",
    "favor_training_arguments",
]
