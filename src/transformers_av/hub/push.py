"""The uploads: a model (with its processor and a rendered model card), a processor, a LoRA adapter or a
`save_pretrained` folder, each in ONE commit and each checked first ([`transformers_av.hub.checks`]), so a refused
upload sends nothing. Files are staged in a temporary folder; the caller's objects and folders are not modified.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitInfo, HfApi
from transformers import PreTrainedConfig

from .card import is_hub_id, render_model_card
from .checks import (
    UploadRefusedError,
    validate_adapter_for_upload,
    validate_folder_for_upload,
    validate_model_for_upload,
    validate_processor_for_upload,
)

# the weights a new upload replaces: a model saved with other shards must not keep the old ones beside it
_WEIGHT_PATTERNS = ["model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin"]


def _api(token: str | bool | None) -> HfApi:
    """The Hub client of every upload (the one seam tests replace to prove that a refusal sends nothing)."""
    return HfApi(token=token)


def _commit_staged(
    repo_id: str,
    write: Callable[[Path], None],
    *,
    token: str | bool | None,
    private: bool | None,
    revision: str | None,
    create_pr: bool,
    commit_message: str,
    commit_description: str | None,
    delete_patterns: list[str] | None = None,
) -> CommitInfo:
    """Create the repository (and the branch `revision`) if missing, let `write` fill a temporary staging folder, and
    upload that folder as one commit (atomic: an interrupted upload commits nothing)."""
    api = _api(token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and revision != "main" and not revision.startswith("refs/pr"):
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="transformers-av-push-") as staging:
        write(Path(staging))
        return api.upload_folder(
            repo_id=repo_id, folder_path=staging, revision=revision, commit_message=commit_message,
            commit_description=commit_description, create_pr=create_pr, delete_patterns=delete_patterns,
        )


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
) -> CommitInfo:
    """Upload a model of the package (its weights, config, generation config and self-contained code), its
    `processor` if given, and a rendered model card, in one commit.

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

    def write(staging: Path) -> None:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        if processor is not None:
            processor.save_pretrained(staging)
        if card is not None:
            card.save(staging / "README.md")

    default_message = f"Upload {type(model).__name__}" + (" and processor" if processor is not None else "")
    return _commit_staged(repo_id, write, token=token, private=private, revision=revision, create_pr=create_pr,
                          commit_message=commit_message or default_message, commit_description=commit_description,
                          delete_patterns=_WEIGHT_PATTERNS)


def push_processor_to_hub(
    processor: Any,
    repo_id: str,
    *,
    config: PreTrainedConfig | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    """Upload a processor of the package (with its self-contained code). Given the model's `config`, the processor
    is checked against it first; the model card, if any, is left as it is (the model's push writes it)."""
    validate_processor_for_upload(processor, config)
    return _commit_staged(repo_id, processor.save_pretrained, token=token, private=private, revision=revision,
                          create_pr=create_pr, commit_message=commit_message or f"Upload {type(processor).__name__}",
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
) -> CommitInfo:
    """Upload the LoRA adapter of a PEFT-wrapped model (adapter weights, the trained connector copy, and
    `adapter_config.json` pointing at `finetuned_from`), its `processor` if given, and a fine-tuned model card.

    `finetuned_from` is the Hub id of the base model the adapter applies to (default: the base model's
    `name_or_path` when it is a Hub id); `PeftModel.from_pretrained(base, repo_id)` loads it back."""
    validate_adapter_for_upload(model)
    base = model.get_base_model()
    finetuned_from = finetuned_from or (base.name_or_path if is_hub_id(base.name_or_path) else None)
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

    def write(staging: Path) -> None:
        # the saved adapter_config.json points at the Hub base model; the caller's model is left as it was
        adapter_config = model.peft_config[next(iter(model.peft_config))]
        previous_base, adapter_config.base_model_name_or_path = adapter_config.base_model_name_or_path, finetuned_from
        try:
            model.save_pretrained(staging)
        finally:
            adapter_config.base_model_name_or_path = previous_base
        if processor is not None:
            processor.save_pretrained(staging)
        card.save(staging / "README.md")

    return _commit_staged(repo_id, write, token=token, private=private, revision=revision, create_pr=create_pr,
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
) -> CommitInfo:
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

    def write(staging: Path) -> None:
        _link_files(folder, staging)
        if card is not None:
            card.save(staging / "README.md")

    return _commit_staged(repo_id, write, token=token, private=private, revision=revision, create_pr=create_pr,
                          commit_message=commit_message or f"Upload {folder.name}",
                          commit_description=commit_description, delete_patterns=_WEIGHT_PATTERNS)


def _link_files(folder: Path, staging: Path) -> None:
    """Hard-link (or copy, across file systems) every file of `folder` but hidden ones into `staging`."""
    for source in folder.rglob("*"):
        if source.is_dir() or any(part.startswith(".") for part in source.relative_to(folder).parts):
            continue
        target = staging / source.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def folder_fingerprint(folder: str | os.PathLike) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of every file under `folder` (to show that an upload left it untouched)."""
    folder = Path(folder)
    return {
        str(path.relative_to(folder)): (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


__all__ = ["folder_fingerprint", "push_adapter_to_hub", "push_folder_to_hub", "push_processor_to_hub", "push_to_hub"]
