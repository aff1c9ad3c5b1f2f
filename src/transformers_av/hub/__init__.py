"""Sharing the package's models (FAVOR / video-SALMONN, the Audio-Visual LLM) on the Hugging Face Hub.

* [`push_to_hub`] uploads a model (and its processor) in ONE commit with a model card rendered from the templates in
  `hub_cards/` (FAVOR, video-SALMONN, Audio-Visual LLM, fine-tuned derivative); a PEFT-wrapped model is pushed as a
  LoRA adapter ([`push_adapter_to_hub`]). The models' and processors' own `push_to_hub` methods call these.
* [`push_folder_to_hub`] uploads a `save_pretrained` folder (e.g. a training output); the folder is never modified.
* Everything is checked before the first network call ([`validate_model_for_upload`]): non-finite weights, a
  configuration that fails its own consistency checks, weights whose shapes disagree with the configuration, and a
  processor whose placeholder token or window settings disagree with the model. A refused upload raises
  [`UploadRefusedError`] naming what is wrong.
* [`render_model_card`] builds the card alone (metadata: base models of every sub-model, library name, pipeline tag,
  license, datasets, evaluation results as `model-index`).
* What differs between model families (which classes, sub-models, processor settings, architecture table, card
  template) is one [`ModelFamily`] entry of [`FAMILIES`], keyed by the configuration's `model_type`; every function
  here looks its family up there ([`family_of`]) and is otherwise shared.

A model card lists as `base_model` the Hub ids its sub-models were loaded from (recorded in the sub-configurations'
`_name_or_path`, which [`FavorForConditionalGeneration.from_pretrained_components`] fills) unless `base_models=` says
otherwise; local paths are left out of the metadata.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..models import FAMILIES as MODEL_FAMILIES
from ..models import count_parameters
from ..models.common.hub_uploads import set_hub_uploader

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

    from ..models import AvLlmConfig, FavorConfig

TEMPLATES_DIR = Path(__file__).parents[1] / "hub_cards"
TEMPLATES = {
    "favor": "favor.md", "video_salmonn": "video_salmonn.md", "av_llm": "av_llm.md", "finetuned": "finetuned.md",
}
LIBRARY_NAME = "transformers"
PIPELINE_TAG = "video-text-to-text"
DEFAULT_LICENSE = "apache-2.0"
DEFAULT_TAGS = ("audio-visual", "video", "speech", "transformers-av")
# role -> (sub-configuration holding the source id, how the card names it): each family record's `components`
COMPONENTS = MODEL_FAMILIES["favor"].components
AV_LLM_COMPONENTS = MODEL_FAMILIES["av_llm"].components
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MAX_LISTED = 5


class UploadRefusedError(ValueError):
    """An upload was refused before anything was sent (the message says which input is wrong and why)."""


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
    """

    datasets: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    num_examples: int | None = None
    notes: str | None = None

    HYPERPARAMETER_NAMES = (
        "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
        "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay", "optim", "seed", "bf16", "fp16",
        "max_grad_norm",
    )

    @classmethod
    def from_training_arguments(cls, args: Any, *, datasets: Iterable[str] = (), model: Any = None,
                                num_examples: int | None = None, notes: str | None = None) -> "TrainingDetails":
        """From `transformers.TrainingArguments` (or a dict of them): the usual hyper-parameters, the LoRA settings of
        a PEFT-wrapped `model`, and the effective batch size."""
        values = args if isinstance(args, Mapping) else args.to_dict()
        hyperparameters = {name: values[name] for name in cls.HYPERPARAMETER_NAMES if values.get(name) not in (None, "")}
        if "per_device_train_batch_size" in hyperparameters:
            world = int(values.get("world_size", 1) or 1)
            hyperparameters["total_train_batch_size"] = (
                hyperparameters["per_device_train_batch_size"] * hyperparameters.get("gradient_accumulation_steps", 1) * world
            )
        return cls(datasets=list(datasets), hyperparameters=hyperparameters, lora=lora_settings(model),
                   num_examples=num_examples, notes=notes)


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

    def to_eval_result(self):
        from huggingface_hub import EvalResult

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


# -- validation ---------------------------------------------------------------------------------------------------------
def _listing(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def non_finite_tensors(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """'name: n NaN, m inf of k values' for every floating tensor that holds NaN or infinite values."""
    found = []
    for name, tensor in named_tensors:
        if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.device.type == "meta":
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        found.append(f"{name}: {nan} NaN, {int((~finite).sum()) - nan} inf of {tensor.numel()} values")
    return found


def check_config(config: "FavorConfig | AvLlmConfig", *, what: str = "the configuration") -> None:
    """Re-run the configuration's own consistency checks on its current values (attributes may have been changed
    after it was built) and its dataclass validators."""
    try:
        rebuilt = type(config).from_dict(config.to_dict())
        if hasattr(rebuilt, "validate"):
            rebuilt.validate()
    except (ValueError, TypeError) as error:
        raise UploadRefusedError(f"Refusing to upload: {what} is inconsistent: {error}") from error


def _expected_shapes(config: "FavorConfig | AvLlmConfig",
                     model_class: type | None = None) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of `model_class(config)` (default: the family's generation model), built on the
    meta device (no memory, no weights)."""
    model_class = model_class or family_of(config).model_class()
    with torch.device("meta"):
        reference = model_class(config)
    return {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}


def _shape_mismatches(expected: Mapping[str, tuple[int, ...]], actual: Mapping[str, tuple[int, ...]]) -> list[str]:
    problems = [f"{name}: weights {actual[name]} but the configuration gives {shape}"
                for name, shape in expected.items() if name in actual and tuple(actual[name]) != shape]
    missing = [name for name in expected if name not in actual]
    unexpected = [name for name in actual if name not in expected]
    if missing:
        problems.append(f"missing from the weights: {_listing(missing)}")
    if unexpected:
        problems.append(f"not in the configuration's model: {_listing(unexpected)}")
    return problems


def validate_model_for_upload(model: torch.nn.Module, processor: Any = None) -> None:
    """Refuse (raise [`UploadRefusedError`]) a model that should not be shared: non-finite weights, an inconsistent
    configuration, weights whose names or shapes disagree with the configuration, or a `processor` that disagrees
    with the model. Reads no network."""
    config = model.config
    check_config(config, what="the model configuration (config.json)")
    bad = non_finite_tensors(model.state_dict().items())
    if bad:
        raise UploadRefusedError(
            f"Refusing to upload: {len(bad)} weight tensor(s) hold NaN or infinite values ({_listing(bad)}). A model "
            "with diverged weights generates nothing useful; upload an earlier checkpoint or fix the training."
        )
    actual = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = _shape_mismatches(_expected_shapes(config, type(model)), actual)
    if problems:
        raise UploadRefusedError(
            "Refusing to upload: the weights do not match the configuration, so the uploaded model would not load ("
            + _listing(problems) + "). Update the configuration (e.g. text_config.vocab_size after resizing the "
            "embeddings) or the weights."
        )
    if processor is not None:
        validate_processor_for_upload(processor, config)


def validate_processor_for_upload(processor: Any, config: "FavorConfig | AvLlmConfig | None" = None) -> None:
    """Refuse a processor whose placeholder (or modality) tokens are missing from its tokenizer, or (given the model
    `config`) that is of another family than the model or whose settings and token ids differ from the model's
    (FAVOR: placeholder id, windows, image size, mel bins; Audio-Visual LLM: T, K, P, the four token ids, image size,
    sampling rate, mel bins). Reads no network."""
    family = family_of(config) if config is not None else _processor_family(processor)
    expected_class = family.processor_class()
    if not isinstance(processor, expected_class):
        raise UploadRefusedError(
            f"Refusing to upload: the processor is a {type(processor).__name__} but the {family.name(config)} model "
            f"(model_type {family.model_type!r}) needs a {expected_class.__name__}."
        )
    vocab = processor.tokenizer.get_vocab()
    for token, role in family.processor_tokens(processor).items():
        if token not in vocab:
            raise UploadRefusedError(f"Refusing to upload: the processor's {role} {token!r} is not in its tokenizer.")
    if config is None:
        return
    problems = family.processor_problems(processor, config)
    if len(processor.tokenizer) > config.text_config.vocab_size:
        problems.append(f"the tokenizer has {len(processor.tokenizer)} tokens but the LLM only "
                        f"{config.text_config.vocab_size} embedding rows")
    if problems:
        raise UploadRefusedError("Refusing to upload: the processor does not match the model (" + _listing(problems) + ").")


def _favor_processor_problems(processor: Any, config: "FavorConfig") -> list[str]:
    token = processor.audio_visual_token
    problems = []
    if config.audio_visual_token_id is not None and processor.audio_visual_token_id != config.audio_visual_token_id:
        problems.append(f"placeholder {token!r} has id {processor.audio_visual_token_id} in the tokenizer but "
                        f"config.audio_visual_token_id is {config.audio_visual_token_id}")
    for name in ("resolutions", "frame_seconds", "audio_chunk_seconds", "max_audio_chunks", "audio_frame_mode"):
        ours, theirs = getattr(processor, name), getattr(config, name)
        if (list(map(list, ours)) if name == "resolutions" else ours) != theirs:
            problems.append(f"processor.{name}={ours!r} but config.{name}={theirs!r}")
    if processor.compute_audio_events != (config.audio_config is not None):
        problems.append(f"processor.compute_audio_events={processor.compute_audio_events} but the model "
                        f"{'has' if config.audio_config is not None else 'has no'} BEATs encoder")
    if processor.image_processor.size != config.vision_config.image_size:
        problems.append(f"image processor size {processor.image_processor.size} but vision_config.image_size "
                        f"{config.vision_config.image_size}")
    if processor.feature_extractor.feature_size != config.speech_config.num_mel_bins:
        problems.append(f"Whisper feature extractor has {processor.feature_extractor.feature_size} mel bins but "
                        f"speech_config.num_mel_bins is {config.speech_config.num_mel_bins}")
    return problems


def _av_llm_token_ids() -> dict[str, str]:
    """config attribute -> the token whose id it holds (placeholder and modality tokens of the Audio-Visual LLM)."""
    from ..models.av_llm.configuration_av_llm import MEDIA_TOKEN, MODALITY_TOKENS

    return {"media_token_id": MEDIA_TOKEN, "visual_modality_token_id": MODALITY_TOKENS["visual"],
            "audio_modality_token_id": MODALITY_TOKENS["audio"],
            "audio_visual_modality_token_id": MODALITY_TOKENS["audio_visual"]}


def _av_llm_processor_problems(processor: Any, config: "AvLlmConfig") -> list[str]:
    problems = []
    for name in ("num_frames", "num_audio_segments", "num_patches"):
        ours, theirs = getattr(processor, name), getattr(config, name)
        if ours != theirs:
            problems.append(f"processor.{name}={ours!r} but config.{name}={theirs!r}")
    for attribute, token in _av_llm_token_ids().items():
        wanted, found = getattr(config, attribute), processor.tokenizer.convert_tokens_to_ids(token)
        if wanted is not None and found != wanted:
            problems.append(f"{token!r} has id {found} in the tokenizer but config.{attribute} is {wanted}")
    image_processor, size = processor.image_processor, config.vision_config.image_size
    crop = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    crop = (_size_entry(crop, "height"), _size_entry(crop, "width")) if crop is not None else None
    if crop is not None and crop != (size, size):
        problems.append(f"image processor crops {crop[0]}x{crop[1]} px but vision_config.image_size is {size}")
    extractor = processor.feature_extractor
    if extractor.sampling_rate != config.audio_sampling_rate:
        problems.append(f"the CLAP feature extractor samples at {extractor.sampling_rate} Hz but "
                        f"config.audio_sampling_rate is {config.audio_sampling_rate}")
    if extractor.feature_size != config.audio_config.num_mel_bins:
        problems.append(f"the CLAP feature extractor has {extractor.feature_size} mel bins but "
                        f"audio_config.num_mel_bins is {config.audio_config.num_mel_bins}")
    return problems


def _size_entry(size: Any, key: str) -> Any:
    """`size["height"]` of an image processor's size (a dict or a transformers `SizeDict`)."""
    return size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)


def validate_folder_for_upload(folder: str | os.PathLike) -> "FavorConfig | AvLlmConfig":
    """Check a `save_pretrained` folder like [`validate_model_for_upload`] without building the model: config.json
    (its consistency checks), every safetensors file (finite values, names and shapes against the configuration)
    and the processor if saved. The model family is the `model_type` of config.json. Returns the configuration."""
    from safetensors import safe_open

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UploadRefusedError(f"Refusing to upload {folder}: it has no config.json (not a save_pretrained folder).")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        family = family_of(model_type)
        config = family.config_class().from_pretrained(folder)
    except (ValueError, TypeError, OSError, AttributeError) as error:
        raise UploadRefusedError(f"Refusing to upload {folder}: config.json is inconsistent: {error}") from error
    check_config(config, what=f"{folder / 'config.json'}")
    weight_files = sorted(folder.glob("*.safetensors"))
    if not weight_files:
        raise UploadRefusedError(f"Refusing to upload {folder}: no *.safetensors weights in it.")
    shapes, bad = {}, []
    for path in weight_files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                shapes[name] = tuple(tensor.shape)
                bad += [f"{path.name}:{item}" for item in non_finite_tensors([(name, tensor)])]
    if bad:
        raise UploadRefusedError(f"Refusing to upload {folder}: {len(bad)} weight tensor(s) hold NaN or infinite "
                                 f"values ({_listing(bad)}).")
    expected = _expected_shapes(config)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    problems = _shape_mismatches({k: v for k, v in expected.items() if k not in tied}, shapes)
    if problems:
        raise UploadRefusedError(f"Refusing to upload {folder}: the weights do not match config.json ({_listing(problems)}).")
    if (folder / "processor_config.json").is_file():
        validate_processor_for_upload(family.processor_class().from_pretrained(folder), config)
    return config


def validate_adapter_for_upload(model: Any) -> None:
    """Refuse a PEFT-wrapped model whose adapter (or trained connector copy) holds non-finite values."""
    from peft import get_peft_model_state_dict

    bad = non_finite_tensors(get_peft_model_state_dict(model).items())
    if bad:
        raise UploadRefusedError(f"Refusing to upload: {len(bad)} adapter tensor(s) hold NaN or infinite values "
                                 f"({_listing(bad)}).")
    check_config(model.get_base_model().config, what="the base model configuration")


# -- the model card -----------------------------------------------------------------------------------------------------
def _is_hub_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_REPO_ID.match(value)) and not Path(value).exists()


def component_sources(config: "FavorConfig | AvLlmConfig") -> dict[str, str]:
    """role -> where each sub-model was loaded from (the sub-configurations' `_name_or_path`), when recorded; the
    roles are the family's ([`ModelFamily.components`])."""
    sources = {}
    for role, (attribute, _) in family_of(config).components.items():
        sub_config = getattr(config, attribute, None)
        source = getattr(sub_config, "_name_or_path", "") if sub_config is not None else ""
        if source:
            sources[role] = str(source)
    return sources


def tokens_per_second(config: "FavorConfig") -> float:
    """LLM tokens the connector produces per second of video (in steady state, whole coarsest windows)."""
    return config.tokens_per_coarsest_window / (config.coarsest_window_frames * config.frame_seconds)


def _seconds(frames: int, frame_seconds: float) -> str:
    return f"{frames * frame_seconds:g} s"


def architecture_table(config: "FavorConfig | AvLlmConfig", *, video_fps: float | None = None) -> str:
    """One markdown table of the family's architecture (FAVOR: encoders, resolutions, queries and LLM tokens per
    second of video; Audio-Visual LLM: encoders, T / P / K and the projectors)."""
    return family_of(config).architecture_table(config, video_fps=video_fps)


def _markdown_table(rows: Iterable[tuple[str, str, str]]) -> str:
    lines = ["| part | module | configuration |", "|---|---|---|"]
    lines += [f"| {part} | {module} | {detail} |" for part, module, detail in rows]
    return "\n".join(lines)


def _favor_architecture_table(config: "FavorConfig", *, video_fps: float | None = None) -> str:
    vision, qformer, speech, audio, text = (config.vision_config, config.qformer_config, config.speech_config,
                                            config.audio_config, config.text_config)
    resolutions = ", ".join(
        f"{k} frame{'s' if k > 1 else ''} ({_seconds(k, config.frame_seconds)}) x {n} queries" for k, n in config.resolutions
    )
    rows = [
        ("visual encoder", "InstructBLIP ViT + Q-Former",
         f"{vision.num_hidden_layers} layers x {vision.hidden_size}, {vision.image_size} px, patch {vision.patch_size}; "
         f"Q-Former {qformer.num_hidden_layers} layers x {qformer.hidden_size}; {config.num_query_tokens} tokens per frame"
         + (f"; {video_fps:g} frames per second" if video_fps else "")),
        ("speech encoder", "Whisper encoder",
         f"{speech.encoder_layers} layers x {speech.d_model}, {speech.num_mel_bins} mel bins, "
         f"{config.audio_chunk_seconds:g} s chunks, 50 frames per second"),
        ("audio-event encoder", "BEATs" if audio is not None else "none",
         f"{audio.encoder_layers} layers x {audio.encoder_embed_dim}, {audio.num_mel_bins} fbank bins" if audio is not None
         else "FAVOR hears sounds through Whisper only"),
        ("synchronisation", "frame-level",
         f"one frame every {config.frame_seconds:g} s; {config.audio_frames_per_frame} audio frames per frame; "
         f"joint width {config.joint_feature_size}"),
        ("connector", "causal multi-resolution Q-Former" if len(config.resolutions) > 1 else "causal Q-Former",
         f"resolutions: {resolutions}; merge: {config.resolution_merge}; causal attention: {config.causal_attention}; "
         f"{config.connector_num_hidden_layers} layers x {config.connector_hidden_size}"),
        ("LLM", text.model_type,
         f"{text.num_hidden_layers} layers x {text.hidden_size}, vocabulary {text.vocab_size}"),
        ("tokens per second of video", "", f"{tokens_per_second(config):g} "
         f"({config.tokens_per_coarsest_window} per {_seconds(config.coarsest_window_frames, config.frame_seconds)} window)"),
    ]
    return _markdown_table(rows)


def _av_llm_architecture_table(config: "AvLlmConfig", *, video_fps: float | None = None) -> str:
    """video_fps is unused: the Audio-Visual LLM samples a fixed number of frames over the whole video."""
    vision, audio, text = config.vision_config, config.audio_config, config.text_config
    frames, patches, segments = config.num_frames, config.num_patches, config.num_audio_segments
    layer = "last layer" if config.vision_feature_layer == -1 else f"hidden state {config.vision_feature_layer}"
    width = text.hidden_size
    rows = [
        ("visual encoder", "CLIP ViT",
         f"{vision.num_hidden_layers} layers x {vision.hidden_size}, {vision.image_size} px, patch {vision.patch_size} "
         f"({layer}); {frames} frames sampled uniformly over the video -> T = {frames} temporal tokens (one [CLS] "
         f"per frame) + P = {patches} spatial tokens (patch tokens averaged over the frames)"),
        ("audio encoder", "CLAP HTSAT",
         f"{len(audio.depths)} Swin stages (depths {list(audio.depths)}), width {audio.hidden_size}, "
         f"{audio.num_mel_bins} mel bins at {config.audio_sampling_rate} Hz; the audio is cut into K = {segments} "
         f"equal segments, each last hidden state flattened into one {config.audio_token_size:,}-value token"),
        ("connector", "three linear projectors",
         f"temporal {vision.hidden_size} -> {width}, spatial {vision.hidden_size} -> {width}, audio "
         f"{config.audio_token_size:,} -> {width}; bias: {config.projector_bias}"),
        ("LLM", text.model_type, f"{text.num_hidden_layers} layers x {text.hidden_size}, vocabulary {text.vocab_size}"),
        ("media tokens per video", "T + P + K",
         f"{frames + patches + segments} at the placeholder with `<AUD_VIS>` ({frames} + {patches} + {segments}); "
         f"{frames + patches} with `<VIS>`; {segments} with `<AUD>`"),
    ]
    return _markdown_table(rows)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per part of the model's family and total ([`transformers_av.models.count_parameters`])."""
    return count_parameters(model)


def _parameter_table(model: torch.nn.Module | None) -> str:
    if model is None:
        return ""
    counts = parameter_counts(model)
    lines = ["| part | parameters |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in counts.items() if v or k == "total"]
    return "\n".join(lines)


def _base_models_table(sources: Mapping[str, str], finetuned_from: str | None, endpoint: str,
                       components: Mapping[str, tuple[str, str]] = COMPONENTS) -> str:
    lines = ["| part | from |", "|---|---|"]
    if finetuned_from:
        lines.append(f"| fine-tuned from | [`{finetuned_from}`]({endpoint}/{finetuned_from}) |")
    for role, (_, label) in components.items():
        if role in sources:
            source = sources[role]
            cell = f"[`{source}`]({endpoint}/{source})" if _is_hub_id(source) else f"`{source}` (local files)"
            lines.append(f"| {label} | {cell} |")
    if len(lines) == 2:
        lines.append("| all parts | trained or converted weights (sources not recorded) |")
    return "\n".join(lines)


def _training_section(training: TrainingDetails | None) -> str:
    if training is None:
        return ""
    lines = ["## Training", ""]
    if training.datasets:
        lines.append("Data: " + ", ".join(f"`{d}`" for d in training.datasets)
                     + (f" ({training.num_examples:,} examples)" if training.num_examples else "") + ".")
        lines.append("")
    if training.hyperparameters:
        lines += ["| hyper-parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in training.hyperparameters.items()]
        lines.append("")
    if training.lora:
        lines += ["LoRA on the LLM (the encoders stay frozen):", "", "| LoRA | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in training.lora.items()]
        lines.append("")
    if training.notes:
        lines += [training.notes, ""]
    return "\n".join(lines).rstrip("\n") + "\n\n"


def _evaluation_section(results: Sequence[EvaluationResult]) -> str:
    if not results:
        return ""
    lines = ["## Evaluation", "", "| dataset | split | metric | value |", "|---|---|---|---:|"]
    lines += [f"| {r.dataset_name} | {r.split or ''} | {r.metric_name} | {r.value:g} |" for r in results]
    return "\n".join(lines) + "\n\n"


def usage_snippet(repo_id: str, *, revision: str | None = None, adapter_base: str | None = None,
                  processor_repo: str | None = None, trust_remote_code: bool = False, model_type: str = "favor") -> str:
    """The python code block of the card: load, process a video, generate, decode (the same for every family but
    for the comment that says what `import transformers_av` registers)."""
    rev = f', revision="{revision}"' if revision and revision != "main" else ""
    remote = ", trust_remote_code=True" if trust_remote_code else ""
    processor_repo = processor_repo or repo_id
    processor_rev = rev if processor_repo == repo_id else ""
    lines = ["```python"]
    if trust_remote_code:
        lines.append("# without installing transformers-av: the repository carries the model and processor code")
    else:
        registers = family_of(model_type).registers
        lines.append(f"import transformers_av  # registers {registers} with the transformers Auto classes")
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


def render_model_card(
    model_or_config: torch.nn.Module | "FavorConfig | AvLlmConfig",
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
) -> "ModelCard":
    """The model card of a FAVOR / video-SALMONN / Audio-Visual LLM model, rendered from a `hub_cards/` template.

    Args:
        model_or_config: the model (parameter counts are added) or its configuration ([`FavorConfig`],
            [`AvLlmConfig`]); its `model_type` picks the family.
        repo_id: where the card will live (used by the usage snippet); revision: the branch it is pushed to.
        template: "favor", "video_salmonn", "av_llm", "finetuned" or a path to a template; default: "finetuned" for
            adapters or when `finetuned_from` is given, else the family's (FAVOR: BEATs -> video-SALMONN).
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
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub import constants as hub_constants

    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else None
    base = model.get_base_model() if model is not None and hasattr(model, "get_base_model") else model
    config = base.config if base is not None else model_or_config
    if is_adapter and not finetuned_from:
        raise ValueError("An adapter card needs `finetuned_from`: the Hub id of the model the adapter applies to.")
    family = family_of(config)
    sources = {**component_sources(config), **dict(base_models or {})}
    unknown = set(sources) - set(family.components)
    if unknown:
        raise ValueError(f"base_models keys must be among {sorted(family.components)}, got {sorted(unknown)}.")
    if template is None:
        template = "finetuned" if (is_adapter or finetuned_from) else family.template(config)
    template_path = TEMPLATES_DIR / TEMPLATES[template] if template in TEMPLATES else Path(template)
    if not template_path.is_file():
        raise FileNotFoundError(f"Model card template {template!r} not found (known: {sorted(TEMPLATES)}).")

    metadata_bases = ([finetuned_from] if finetuned_from else []) + [
        source for role, source in sources.items() if _is_hub_id(source) and not (finetuned_from and is_adapter)
    ]
    datasets = [d for d in (training.datasets if training else []) if _is_hub_id(d)]
    card_tags = list(dict.fromkeys([*family.tags(config), *(["lora", "peft"] if is_adapter else []), *tags]))
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
    remote_usage = "" if is_adapter or not family.remote_code else (
        "Without installing `transformers-av` (the repository carries its code):\n\n"
        + usage_snippet(repo_id, revision=revision, processor_repo=processor_repo, trust_remote_code=True,
                        model_type=family.model_type)
    )
    video_fps = getattr(processor, "video_fps", None) or 2.0
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        family=family.name(config),
        description=description,
        finetuned_from=finetuned_from,
        is_adapter=is_adapter,
        endpoint=endpoint,
        image_size=config.vision_config.image_size,
        **family.card_variables(config, video_fps),
        base_models_table=_base_models_table(sources, finetuned_from, endpoint, family.components),
        architecture_table=family.architecture_table(config, video_fps=video_fps),
        parameter_table=_parameter_table(base),
        usage=usage,
        remote_code_usage=remote_usage,
        training_section=_training_section(training),
        evaluation_section=_evaluation_section(eval_results),
    )


# -- model families -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFamily:
    """The model card and upload checks of one model family: its record ([`transformers_av.models.ModelFamily`]:
    classes, components, parameter groups) plus what only cards and checks need.

    Args:
        model_type: the configuration's `model_type` (the key in [`FAMILIES`] and in `transformers_av.models.FAMILIES`).
        name: config -> the family name the card uses; template: config -> the `TEMPLATES` key of its card.
        tags: config -> the card's tags; registers: what `import transformers_av` registers (usage snippet).
        remote_code: whether a saved model carries its own code (the card then shows a `trust_remote_code` snippet).
        processor_tokens: processor -> {token the tokenizer must hold: its role}.
        processor_problems: (processor, config) -> what disagrees between them.
        architecture_table: (config, video_fps=) -> the card's architecture table.
        card_variables: (config, video_fps) -> the family's own template variables.
    """

    model_type: str
    name: Callable[[Any], str]
    template: Callable[[Any], str]
    tags: Callable[[Any], Sequence[str]]
    registers: str
    remote_code: bool
    processor_tokens: Callable[[Any], dict[str, str]]
    processor_problems: Callable[[Any, Any], list[str]]
    architecture_table: Callable[..., str]
    card_variables: Callable[[Any, float], dict[str, Any]]

    @property
    def record(self):
        return MODEL_FAMILIES[self.model_type]

    @property
    def components(self) -> Mapping[str, tuple[str, str]]:
        return self.record.components

    def config_class(self) -> type:
        return self.record.config_class

    def model_class(self) -> type:
        return self.record.generation_class

    def processor_class(self) -> type:
        return self.record.processor_class


def _favor_name(config: Any) -> str:
    return "video-SALMONN" if getattr(config, "audio_config", None) is not None else "FAVOR"


def _av_llm_card_variables(config: "AvLlmConfig", video_fps: float) -> dict[str, Any]:
    frames, patches, segments = config.num_frames, config.num_patches, config.num_audio_segments
    return {"num_frames": frames, "num_patches": patches, "num_audio_segments": segments,
            "num_media_tokens": frames + patches + segments,
            "audio_sampling_khz": f"{config.audio_sampling_rate / 1000:g}"}


FAMILIES: dict[str, ModelFamily] = {
    "favor": ModelFamily(
        model_type="favor",
        name=_favor_name,
        template=lambda config: "video_salmonn" if config.audio_config is not None else "favor",
        tags=lambda config: [*DEFAULT_TAGS, _favor_name(config).lower()],
        registers="FAVOR / video-SALMONN",
        remote_code=True,
        processor_tokens=lambda processor: {processor.audio_visual_token: "placeholder"},
        processor_problems=_favor_processor_problems,
        architecture_table=_favor_architecture_table,
        card_variables=lambda config, video_fps: {"frame_seconds": f"{config.frame_seconds:g}",
                                                  "video_fps": f"{video_fps:g}"},
    ),
    "av_llm": ModelFamily(
        model_type="av_llm",
        name=lambda config: "Audio-Visual LLM",
        template=lambda config: "av_llm",
        tags=lambda config: ["audio-visual", "video", "audio", "transformers-av", "av-llm"],
        registers="the Audio-Visual LLM",
        remote_code=True,
        processor_tokens=lambda processor: {token: "placeholder" if name == "media_token_id" else "modality token"
                                            for name, token in _av_llm_token_ids().items()},
        processor_problems=_av_llm_processor_problems,
        architecture_table=_av_llm_architecture_table,
        card_variables=_av_llm_card_variables,
    ),
}


def family_of(config_or_model_type: Any) -> ModelFamily:
    """The [`ModelFamily`] of a configuration (by its `model_type`) or of a `model_type` string."""
    model_type = (config_or_model_type if isinstance(config_or_model_type, str) or config_or_model_type is None
                  else getattr(config_or_model_type, "model_type", None))
    if model_type not in FAMILIES:
        raise ValueError(f"transformers_av.hub knows no model family with model_type {model_type!r} "
                         f"(known: {sorted(FAMILIES)}).")
    return FAMILIES[model_type]


def _processor_family(processor: Any) -> ModelFamily:
    """The family whose processor class `processor` is an instance of."""
    for family in FAMILIES.values():
        if isinstance(processor, family.processor_class()):
            return family
    raise UploadRefusedError(f"Refusing to upload: {type(processor).__name__} is not the processor of a known model "
                             f"family ({', '.join(f.processor_class().__name__ for f in FAMILIES.values())}).")


# -- uploading ----------------------------------------------------------------------------------------------------------
def _api(token: str | bool | None):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _prepare_repo(api, repo_id: str, *, private: bool | None, revision: str | None) -> str:
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and revision != "main" and not revision.startswith("refs/pr"):
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    return repo_id


def _upload(api, folder: Path, repo_id: str, *, revision, commit_message, commit_description, create_pr,
            delete_patterns=None) -> "CommitInfo":
    return api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), revision=revision, commit_message=commit_message,
        commit_description=commit_description, create_pr=create_pr, delete_patterns=delete_patterns,
    )


_WEIGHT_PATTERNS = ["model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin"]


def push_to_hub(
    model: torch.nn.Module,
    repo_id: str,
    *,
    processor: Any = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "5GB",
    tags: Sequence[str] | None = None,
    model_card: bool = True,
    **card_kwargs,
) -> "CommitInfo":
    """Upload a model of the package (its weights, config, generation config and, for FAVOR, self-contained code),
    its `processor` if given, and a rendered model card, in one commit.

    The model (and processor) are validated first ([`validate_model_for_upload`]): a refused upload raises
    [`UploadRefusedError`] before any network call. A PEFT-wrapped model is pushed as an adapter
    ([`push_adapter_to_hub`]; pass `finetuned_from`). `revision` names a branch (created from main if missing).
    Extra keyword arguments go to [`render_model_card`] (license, base_models, finetuned_from, training,
    eval_results, description). Returns the `CommitInfo`.
    """
    if hasattr(model, "peft_config"):
        return push_adapter_to_hub(
            model, repo_id, processor=processor, commit_message=commit_message, commit_description=commit_description,
            private=private, token=token, revision=revision, create_pr=create_pr, tags=tags, **card_kwargs,
        )
    validate_model_for_upload(model, processor)
    card = render_model_card(model, repo_id, revision=revision, processor=processor, tags=tags or (), **card_kwargs) \
        if model_card else None
    api = _api(token)
    repo_id = _prepare_repo(api, repo_id, private=private, revision=revision)
    with tempfile.TemporaryDirectory(prefix="favor-push-") as staging:
        staging = Path(staging)
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        if processor is not None:
            processor.save_pretrained(staging)
        if card is not None:
            card.save(staging / "README.md")
        return _upload(api, staging, repo_id, revision=revision, create_pr=create_pr,
                       commit_message=commit_message or f"Upload {type(model).__name__}" + (" and processor" if processor else ""),
                       commit_description=commit_description, delete_patterns=_WEIGHT_PATTERNS)


def push_processor_to_hub(
    processor: Any,
    repo_id: str,
    *,
    config: "FavorConfig | AvLlmConfig | None" = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> "CommitInfo":
    """Upload a processor (`FavorProcessor` with its self-contained code, `AvLlmProcessor`). Given the model's
    `config`, the processor is checked against it first; the model card, if any, is left as it is (the model's push
    writes it)."""
    validate_processor_for_upload(processor, config)
    api = _api(token)
    repo_id = _prepare_repo(api, repo_id, private=private, revision=revision)
    with tempfile.TemporaryDirectory(prefix="favor-push-") as staging:
        processor.save_pretrained(staging)
        return _upload(api, Path(staging), repo_id, revision=revision, create_pr=create_pr,
                       commit_message=commit_message or f"Upload {type(processor).__name__}",
                       commit_description=commit_description)


def push_adapter_to_hub(
    model: Any,
    repo_id: str,
    *,
    finetuned_from: str | None = None,
    processor: Any = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: Sequence[str] | None = None,
    **card_kwargs,
) -> "CommitInfo":
    """Upload the LoRA adapter of a PEFT-wrapped FAVOR model (adapter weights, the trained connector copy, and
    `adapter_config.json` pointing at `finetuned_from`), its `processor` if given, and a fine-tuned model card.

    `finetuned_from` is the Hub id of the base model the adapter applies to (default: the base model's
    `name_or_path` when it is a Hub id); `PeftModel.from_pretrained(base, repo_id)` loads it back."""
    validate_adapter_for_upload(model)
    base = model.get_base_model()
    finetuned_from = finetuned_from or (base.name_or_path if _is_hub_id(base.name_or_path) else None)
    if not finetuned_from:
        raise UploadRefusedError(
            "Refusing to upload the adapter: pass finetuned_from='org/base-model' (the Hub id of the model the adapter "
            "applies to); the base model was loaded from local files, so its adapter_config.json would point nowhere."
        )
    if processor is not None:
        validate_processor_for_upload(processor, base.config)
    card = render_model_card(model, repo_id, revision=revision, is_adapter=True, finetuned_from=finetuned_from,
                             processor=processor, processor_repo=repo_id if processor is not None else finetuned_from,
                             tags=tags or (), **card_kwargs)
    api = _api(token)
    repo_id = _prepare_repo(api, repo_id, private=private, revision=revision)
    adapter_name = next(iter(model.peft_config))
    previous = model.peft_config[adapter_name].base_model_name_or_path
    with tempfile.TemporaryDirectory(prefix="favor-push-") as staging:
        staging = Path(staging)
        model.peft_config[adapter_name].base_model_name_or_path = finetuned_from
        try:
            model.save_pretrained(staging)
        finally:
            model.peft_config[adapter_name].base_model_name_or_path = previous
        if processor is not None:
            processor.save_pretrained(staging)
        card.save(staging / "README.md")
        return _upload(api, staging, repo_id, revision=revision, create_pr=create_pr,
                       commit_message=commit_message or "Upload LoRA adapter", commit_description=commit_description)


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    model_card: bool = True,
    **card_kwargs,
) -> "CommitInfo":
    """Upload a `save_pretrained` folder (model, and processor if saved there) after checking it
    ([`validate_folder_for_upload`]). A model card is rendered unless the folder has a README.md. The folder is not
    modified: files are staged (hard links where possible) in a temporary folder. If the upload is interrupted,
    nothing is committed (a commit is atomic) and calling this again finishes it; LFS files that already reached the
    Hub are not sent again."""
    folder = Path(folder)
    config = validate_folder_for_upload(folder)
    card = None
    if model_card and not (folder / "README.md").exists():
        card = render_model_card(config, repo_id, revision=revision, **card_kwargs)
    api = _api(token)
    repo_id = _prepare_repo(api, repo_id, private=private, revision=revision)
    with tempfile.TemporaryDirectory(prefix="favor-push-") as staging:
        staging = Path(staging)
        for source in folder.rglob("*"):
            if source.is_dir() or any(part.startswith(".") for part in source.relative_to(folder).parts):
                continue
            target = staging / source.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        if card is not None:
            card.save(staging / "README.md")
        return _upload(api, staging, repo_id, revision=revision, create_pr=create_pr,
                       commit_message=commit_message or f"Upload {folder.name}", commit_description=commit_description,
                       delete_patterns=_WEIGHT_PATTERNS)


def folder_fingerprint(folder: str | os.PathLike) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of every file under `folder` (to show that an upload left it untouched)."""
    import hashlib

    folder = Path(folder)
    return {
        str(path.relative_to(folder)): (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


# `model.push_to_hub(...)` / `processor.push_to_hub(...)` of every family go through the checked uploads above
set_hub_uploader("model", push_to_hub)
set_hub_uploader("processor", push_processor_to_hub)


__all__ = [
    "AV_LLM_COMPONENTS",
    "COMPONENTS",
    "DEFAULT_LICENSE",
    "EvaluationResult",
    "FAMILIES",
    "LIBRARY_NAME",
    "ModelFamily",
    "PIPELINE_TAG",
    "TEMPLATES",
    "TrainingDetails",
    "UploadRefusedError",
    "architecture_table",
    "check_config",
    "component_sources",
    "family_of",
    "folder_fingerprint",
    "lora_settings",
    "non_finite_tensors",
    "parameter_counts",
    "push_adapter_to_hub",
    "push_folder_to_hub",
    "push_processor_to_hub",
    "push_to_hub",
    "render_model_card",
    "tokens_per_second",
    "usage_snippet",
    "validate_adapter_for_upload",
    "validate_folder_for_upload",
    "validate_model_for_upload",
    "validate_processor_for_upload",
]
