"""The model card of a model of the package, rendered from a template of `hub_cards/`.

The card's metadata lists the base models of every sub-model (the Hub ids recorded in the sub-configurations'
`_name_or_path`, which `from_pretrained_components` fills, unless `base_models=` says otherwise; local paths stay out
of the metadata), the library, pipeline tag, license, datasets and evaluation results (`model-index`). Its text
holds the sub-models, an architecture table, the parameter counts, usage snippets, training and evaluation.

What differs between families comes from the family record and the family's own configuration:
[`ModelFamily.card_variant`] gives the variant's name, template and tags; `config.architecture_rows()` the
architecture table; `config.card_variables()` the numbers its template quotes; [`ModelFamily.components`] the
sub-models. Nothing here names a family.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub import constants as hub_constants
from transformers import PreTrainedConfig

from ..models import FAMILIES, count_parameters, family_of
from ..models.common.modeling_common import SelfContainedSaveMixin

TEMPLATES_DIR = Path(__file__).parents[1] / "hub_cards"
FINETUNED_TEMPLATE = "finetuned.md"  # any family's fine-tuned model or LoRA adapter
LIBRARY_NAME = "transformers"
# the transformers pipeline that serves these models with video and audio chat messages (transformers has no
# "video-text-to-text" pipeline; "image-text-to-text" serves them too, but says less about what they take)
PIPELINE_TAG = "any-to-any"
DEFAULT_LICENSE = "apache-2.0"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# -- training and evaluation facts for the card -------------------------------------------------------------------------
@dataclass
class TrainingDetails:
    """What a model card says about training.

    Args:
        datasets: dataset names or Hub ids (Hub ids also go to the card metadata) or local paths.
        hyperparameters: name -> value (learning rate, epochs, batch size, ...).
        lora: LoRA settings (r, alpha, dropout, target modules) for adapter runs.
        num_examples: training examples seen per epoch.
        notes: free text (hardware, duration, ...).
        recipe: the published recipe the run followed (`transformers_av.presets.TRAINING_RECIPES` name), and
            recipe_source: where its values come from (paper, section, sentence).
    """

    datasets: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    num_examples: int | None = None
    notes: str | None = None
    recipe: str | None = None
    recipe_source: str | None = None

    HYPERPARAMETER_NAMES = (
        "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
        "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay", "optim", "seed", "bf16", "fp16",
        "max_grad_norm",
    )

    @classmethod
    def from_training_arguments(cls, args: Any, *, datasets: Iterable[str] = (), model: Any = None,
                                num_examples: int | None = None, notes: str | None = None,
                                recipe: str | None = None, recipe_source: str | None = None) -> "TrainingDetails":
        """From `transformers.TrainingArguments` (or a dict of them, with `world_size`): the usual hyper-parameters,
        the LoRA settings of a PEFT-wrapped `model`, the processes and the total batch size of an optimizer step
        (per device x processes x accumulation)."""
        values = args if isinstance(args, Mapping) else args.to_dict()
        hyperparameters = {name: values[name] for name in cls.HYPERPARAMETER_NAMES if values.get(name) not in (None, "")}
        if "per_device_train_batch_size" in hyperparameters:
            # `to_dict()` leaves out the world size (a property of the running job): read it from the arguments
            world = int(values.get("world_size") or getattr(args, "world_size", 1) or 1)
            hyperparameters["processes"] = world
            hyperparameters["total_train_batch_size"] = (
                hyperparameters["per_device_train_batch_size"] * hyperparameters.get("gradient_accumulation_steps", 1) * world
            )
        return cls(datasets=list(datasets), hyperparameters=hyperparameters, lora=lora_settings(model),
                   num_examples=num_examples, notes=notes, recipe=recipe, recipe_source=recipe_source)


@dataclass
class EvaluationResult:
    """One benchmark number for the card (also written as `model-index` metadata).

    Args:
        dataset_name: e.g. "AVQA test"; dataset_type: the Hub id or short name of the dataset.
        metric_name: e.g. "accuracy"; value: the number; split: e.g. "test".
    """

    dataset_name: str
    dataset_type: str
    metric_name: str
    value: float
    split: str | None = None
    task_type: str = PIPELINE_TAG

    def to_eval_result(self) -> EvalResult:
        return EvalResult(
            task_type=self.task_type, dataset_type=self.dataset_type, dataset_name=self.dataset_name,
            metric_type=self.metric_name, metric_name=self.metric_name, metric_value=self.value,
            dataset_split=self.split,
        )


def lora_settings(model: Any) -> dict[str, Any] | None:
    """LoRA settings of a PEFT-wrapped model (`None` for a plain model)."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        return None
    config = next(iter(peft_config.values()))
    target = config.target_modules
    return {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": target if isinstance(target, str) else sorted(target or []),
        "modules_to_save": list(config.modules_to_save or []),
    }


# -- the card's parts ---------------------------------------------------------------------------------------------------
def is_hub_id(value: Any) -> bool:
    """Whether `value` reads as an "org/name" Hub repository id (and is not a local path)."""
    return isinstance(value, str) and bool(_REPO_ID.match(value)) and not Path(value).exists()


def card_templates() -> dict[str, str]:
    """Template name -> file in `hub_cards/`: every family variant's (named after its file) and "finetuned"."""
    templates = {
        Path(variant.template).stem: variant.template
        for family in FAMILIES.values() for variant in family.card_variants
    }
    return {**templates, Path(FINETUNED_TEMPLATE).stem: FINETUNED_TEMPLATE}


def component_sources(config: PreTrainedConfig) -> dict[str, str]:
    """role -> where each sub-model was loaded from (the sub-configurations' `_name_or_path`), when recorded; the
    roles are the family's ([`ModelFamily.components`])."""
    sources = {}
    for role, (attribute, _) in family_of(config).components.items():
        sub_config = getattr(config, attribute, None)
        source = getattr(sub_config, "_name_or_path", "") if sub_config is not None else ""
        if source:
            sources[role] = str(source)
    return sources


def tokens_per_second(config: PreTrainedConfig) -> float:
    """LLM tokens a FAVOR / video-SALMONN connector produces per second of video (`FavorConfig.tokens_per_second`)."""
    return config.tokens_per_second


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric_last: bool = False) -> str:
    """A markdown table; `numeric_last` right-aligns the last column."""
    alignments = ["---"] * (len(header) - 1) + ["---:" if numeric_last else "---"]
    lines = [_markdown_row(header), "|" + "|".join(alignments) + "|"] + [_markdown_row(row) for row in rows]
    return "\n".join(lines)


def _markdown_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def architecture_table(config: PreTrainedConfig, *, video_fps: float | None = None) -> str:
    """The markdown table of the model's architecture, from its configuration's `architecture_rows` (FAVOR: encoders,
    resolutions, queries and LLM tokens per second of video; Audio-Visual LLM: encoders, T / P / K, projectors)."""
    return _markdown_table(("part", "module", "configuration"), config.architecture_rows(video_fps=video_fps))


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per part of the model's family and total ([`transformers_av.models.count_parameters`])."""
    return count_parameters(model)


def _parameter_table(model: torch.nn.Module | None) -> str:
    if model is None:
        return ""
    rows = [(part, f"{count:,}") for part, count in parameter_counts(model).items() if count or part == "total"]
    return _markdown_table(("part", "parameters"), rows, numeric_last=True)


def _base_models_table(sources: Mapping[str, str], finetuned_from: str | None, endpoint: str,
                       components: Mapping[str, tuple[str, str]]) -> str:
    rows = [("fine-tuned from", f"[`{finetuned_from}`]({endpoint}/{finetuned_from})")] if finetuned_from else []
    for role, (_, label) in components.items():
        if role in sources:
            source = sources[role]
            rows.append((label, f"[`{source}`]({endpoint}/{source})" if is_hub_id(source) else f"`{source}` (local files)"))
    return _markdown_table(("part", "from"), rows or [("all parts", "trained or converted weights (sources not recorded)")])


def _training_section(training: TrainingDetails | None) -> str:
    if training is None:
        return ""
    lines = ["## Training", ""]
    if training.recipe:
        source = f" ({training.recipe_source})" if training.recipe_source else ""
        lines += [f"Recipe: `{training.recipe}`{source}.", ""]
    if training.datasets:
        lines.append("Data: " + ", ".join(f"`{d}`" for d in training.datasets)
                     + (f" ({training.num_examples:,} examples)" if training.num_examples else "") + ".")
        lines.append("")
    if training.hyperparameters:
        lines += [_markdown_table(("hyper-parameter", "value"), training.hyperparameters.items()), ""]
    if training.lora:
        lines += ["LoRA on the LLM (the encoders stay frozen):", "",
                  _markdown_table(("LoRA", "value"), training.lora.items()), ""]
    if training.notes:
        lines += [training.notes, ""]
    return "\n".join(lines).rstrip("\n") + "\n\n"


def _evaluation_section(results: Sequence[EvaluationResult]) -> str:
    if not results:
        return ""
    rows = [(r.dataset_name, r.split or "", r.metric_name, f"{r.value:g}") for r in results]
    return "## Evaluation\n\n" + _markdown_table(("dataset", "split", "metric", "value"), rows, numeric_last=True) + "\n\n"


def usage_snippet(repo_id: str, *, revision: str | None = None, adapter_base: str | None = None,
                  processor_repo: str | None = None, trust_remote_code: bool = False,
                  model_type: str | None = None) -> str:
    """The python code block of the card: load, process a video, generate, decode (the same for every family but
    for the comment that says what `import transformers_av` registers: the classes of the family of `model_type`)."""
    rev = f', revision="{revision}"' if revision and revision != "main" else ""
    remote = ", trust_remote_code=True" if trust_remote_code else ""
    processor_repo = processor_repo or repo_id
    processor_rev = rev if processor_repo == repo_id else ""
    lines = ["```python"]
    if trust_remote_code:
        lines.append("# without installing transformers-av: the repository carries the model and processor code")
    else:
        classes = f"the {family_of(model_type).name} classes" if model_type is not None else "the package's classes"
        lines.append(f"import transformers_av  # registers {classes} with the transformers Auto classes")
    if adapter_base:
        lines += ["from peft import PeftModel", "from transformers import AutoModelForMultimodalLM, AutoProcessor", "",
                  f'base = AutoModelForMultimodalLM.from_pretrained("{adapter_base}"{remote})',
                  f'model = PeftModel.from_pretrained(base, "{repo_id}"{rev}).eval()']
    else:
        lines += ["from transformers import AutoModelForMultimodalLM, AutoProcessor", "",
                  f'model = AutoModelForMultimodalLM.from_pretrained("{repo_id}"{rev}{remote}).eval()']
    lines += [
        f'processor = AutoProcessor.from_pretrained("{processor_repo}"{processor_rev}{remote})',
        'inputs = processor(text="What is happening in this video?", videos="video.mp4")  # any video, with sound or not',
        "output = model.generate(**inputs, max_new_tokens=32)",
        'print(processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])',
        "```",
    ]
    return "\n".join(lines)


# -- the card -----------------------------------------------------------------------------------------------------------
def _template_path(template: str | os.PathLike) -> Path:
    """The file of a template given by name ([`card_templates`]) or path."""
    known = card_templates()
    path = TEMPLATES_DIR / known[template] if template in known else Path(template)
    if not path.is_file():
        raise FileNotFoundError(f"Model card template {template!r} not found (known: {sorted(known)}).")
    return path


def render_model_card(
    model_or_config: torch.nn.Module | PreTrainedConfig,
    repo_id: str,
    *,
    revision: str | None = None,
    template: str | os.PathLike | None = None,
    license: str = DEFAULT_LICENSE,
    base_models: Mapping[str, str] | None = None,
    finetuned_from: str | None = None,
    training: TrainingDetails | None = None,
    eval_results: Sequence[EvaluationResult] = (),
    description: str | None = None,
    tags: Sequence[str] = (),
    processor: Any = None,
    processor_repo: str | None = None,
    is_adapter: bool = False,
    endpoint: str | None = None,
) -> ModelCard:
    """The model card of a FAVOR / video-SALMONN / Audio-Visual LLM model, rendered from a `hub_cards/` template.

    Args:
        model_or_config: the model (parameter counts are added) or its configuration ([`FavorConfig`],
            [`AvLlmConfig`]); its `model_type` picks the family.
        repo_id: where the card will live (used by the usage snippet); revision: the branch it is pushed to.
        template: a name of [`card_templates`] ("favor", "video_salmonn", "av_llm", "finetuned") or a path to a
            template; default: "finetuned" for adapters or when `finetuned_from` is given, else the template of the
            configuration's variant ([`ModelFamily.card_variant`]; FAVOR with BEATs -> video-SALMONN).
        license: the card's license (a Hub license id); the base models' own licenses also apply.
        base_models: role -> Hub id, overriding what the configuration recorded ([`component_sources`]); the roles
            are the family's (FAVOR: "llm", "speech_encoder", "audio_encoder", "vision_encoder"; Audio-Visual LLM:
            "llm", "vision_encoder", "audio_encoder").
        finetuned_from: the model this one was fine-tuned from (first `base_model`).
        training: data and hyper-parameters ([`TrainingDetails`]); eval_results: [`EvaluationResult`] list.
        processor: the processor pushed with the model (FAVOR: its frame rate goes in the architecture table).
        processor_repo: where the snippet loads the processor from (default: `repo_id`).
        is_adapter: the repository holds a LoRA adapter on top of `finetuned_from`.
    """
    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else None
    base = model.get_base_model() if model is not None and hasattr(model, "get_base_model") else model
    config = base.config if base is not None else model_or_config
    if is_adapter and not finetuned_from:
        raise ValueError("An adapter card needs `finetuned_from`: the Hub id of the model the adapter applies to.")
    family = family_of(config)
    variant = family.card_variant(config)
    sources = {**component_sources(config), **dict(base_models or {})}
    unknown = set(sources) - set(family.components)
    if unknown:
        raise ValueError(f"base_models keys must be among {sorted(family.components)}, got {sorted(unknown)}.")
    if template is None:
        template_path = TEMPLATES_DIR / (FINETUNED_TEMPLATE if (is_adapter or finetuned_from) else variant.template)
    else:
        template_path = _template_path(template)

    metadata_bases = ([finetuned_from] if finetuned_from else []) + [
        source for source in sources.values() if is_hub_id(source) and not (finetuned_from and is_adapter)
    ]
    datasets = [d for d in (training.datasets if training else []) if is_hub_id(d)]
    card_tags = list(dict.fromkeys([*family.card_tags, *variant.tags, *(["lora", "peft"] if is_adapter else []), *tags]))
    card_data = ModelCardData(
        base_model=(metadata_bases[0] if len(metadata_bases) == 1 else metadata_bases) or None,
        library_name="peft" if is_adapter else LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        license=license,
        tags=card_tags,
        datasets=datasets or None,
        model_name=repo_id.split("/")[-1],
        eval_results=[r.to_eval_result() for r in eval_results] or None,
    )
    endpoint = endpoint or hub_constants.ENDPOINT
    usage = usage_snippet(repo_id, revision=revision, adapter_base=finetuned_from if is_adapter else None,
                          processor_repo=processor_repo, model_type=family.model_type)
    # every model of the package saves its own code next to its weights (`SelfContainedSaveMixin`)
    carries_code = issubclass(family.generation_class, SelfContainedSaveMixin)
    remote_usage = "" if is_adapter or not carries_code else (
        "Without installing `transformers-av` (the repository carries its code):\n\n"
        + usage_snippet(repo_id, revision=revision, processor_repo=processor_repo, trust_remote_code=True)
    )
    video_fps = getattr(processor, "video_fps", None) or 2.0  # frame rate of a processor that samples by time
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        family=variant.name,
        description=description,
        finetuned_from=finetuned_from,
        is_adapter=is_adapter,
        endpoint=endpoint,
        video_fps=f"{video_fps:g}",
        **config.card_variables(),
        base_models_table=_base_models_table(sources, finetuned_from, endpoint, family.components),
        architecture_table=architecture_table(config, video_fps=video_fps),
        parameter_table=_parameter_table(base),
        usage=usage,
        remote_code_usage=remote_usage,
        training_section=_training_section(training),
        evaluation_section=_evaluation_section(eval_results),
    )


__all__ = [
    "DEFAULT_LICENSE",
    "EvaluationResult",
    "LIBRARY_NAME",
    "PIPELINE_TAG",
    "TrainingDetails",
    "architecture_table",
    "card_templates",
    "component_sources",
    "lora_settings",
    "parameter_counts",
    "render_model_card",
    "tokens_per_second",
    "usage_snippet",
]
