"""lmms-eval plugin: FAVOR / video-SALMONN as an lmms-eval chat model (`--model favor`).

Declared in pyproject.toml under the `lmms_eval.models` entry-point group; lmms-eval's model registry (v0.7,
`lmms_eval/models/registry_v2.py`) loads `model_manifests()` and finds the class at `FavorChat`. Usage:

    python -m lmms_eval --model favor --model_args pretrained=path/to/video-salmonn-13b --tasks <task>

Each request's chat messages are read through lmms-eval's `ChatMessages`: the text parts become the prompt; a video
is passed as `videos=` (its sound track is heard unless the messages also carry an audio part, which is then passed
as `audio=`, i.e. a separate sound track); an image is passed as `images=`.

STATUS: written against lmms-eval 0.7's documented interface (`lmms_eval.api.model.lmms`, `ChatMessages`,
`ModelManifest`); NOT exercised by the test suite, because lmms-eval pins `av<16` and pulls torchvision, wandb,
opencv... which would conflict with this project's environment. `_messages_to_inputs` (the part that decides which
media go where) is plain Python and is tested without lmms-eval.
"""

from __future__ import annotations

from typing import Any

__all__ = ["model_manifests"]


def model_manifests() -> list[Any]:
    """Entry-point payload: the lmms-eval manifest registering `favor` as a chat model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="favor", chat_class_path="transformers_av.evaluation.lmms_eval_plugin.FavorChat",
                          aliases=("video_salmonn",))]


def _messages_to_inputs(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Turn one request's chat messages (lmms-eval protocol, as dicts) into FavorProcessor arguments."""
    texts: list[str] = []
    media: dict[str, list[Any]] = {"image": [], "video": [], "audio": []}
    for message in messages:
        if message.get("role") == "assistant":
            continue
        for part in message.get("content", []):
            kind = part.get("type")
            if kind == "text":
                texts.append(part["text"])
            elif kind in media:
                media[kind].append(part["url"])
    for kind, items in media.items():
        if len(items) > 1:
            raise ValueError(f"FAVOR takes one {kind} per request, got {len(items)}")
    inputs: dict[str, Any] = {"text": "\n".join(t.strip() for t in texts if t.strip())}
    if media["video"]:
        inputs["videos"] = media["video"][0]
    if media["audio"]:
        inputs["audio"] = media["audio"][0]  # a separate track: replaces the video's own sound
    if media["image"]:
        inputs["images"] = media["image"][0]
    return inputs


def _chat_class():
    from lmms_eval.api.model import lmms
    from lmms_eval.protocol import ChatMessages

    class FavorChat(lmms):
        """lmms-eval chat wrapper around `FavorForConditionalGeneration` + `FavorProcessor`."""

        is_simple = False

        def __init__(self, pretrained: str, device: str = "cpu", dtype: str = "auto", batch_size: int = 1,
                     max_new_tokens: int = 128, **kwargs: Any) -> None:
            super().__init__()
            import torch
            from transformers import AutoModelForMultimodalLM, AutoProcessor

            import transformers_av  # noqa: F401

            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            self.model = AutoModelForMultimodalLM.from_pretrained(pretrained, dtype=torch_dtype).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(pretrained)
            self.batch_size = int(batch_size)
            self.max_new_tokens = int(max_new_tokens)

        def generate_until(self, requests) -> list[str]:
            import torch

            answers = []
            for request in requests:
                _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
                messages = doc_to_messages(self.task_dict[task][split][doc_id])
                chat = ChatMessages(messages=messages)
                inputs = _messages_to_inputs([m.model_dump() for m in chat.messages])
                encoded = self.processor(**inputs, return_tensors="pt").to(self.model.device)
                kwargs = dict(gen_kwargs or {})
                until = kwargs.pop("until", None)
                generation = {
                    "max_new_tokens": kwargs.pop("max_new_tokens", self.max_new_tokens),
                    "do_sample": kwargs.get("temperature", 0) > 0,
                    "num_beams": kwargs.pop("num_beams", 1),
                }
                with torch.inference_mode():
                    output = self.model.generate(**encoded, **generation)
                text = self.processor.batch_decode(output[:, encoded["input_ids"].shape[1]:],
                                                   skip_special_tokens=True)[0]
                for stop in ([until] if isinstance(until, str) else until or []):
                    if stop:
                        text = text.split(stop)[0]
                answers.append(text.strip())
                self.cache_hook.add_partial("generate_until", (request.args[0], gen_kwargs), text)
            return answers

        def loglikelihood(self, requests):
            raise NotImplementedError("FavorChat supports generation tasks only (generate_until)")

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("FavorChat supports single-round generation tasks only")

    return FavorChat


def __getattr__(name: str):
    # `FavorChat` subclasses lmms-eval's base class, so it is built on first access (lmms-eval is optional).
    if name == "FavorChat":
        cls = _chat_class()
        globals()["FavorChat"] = cls
        return cls
    raise AttributeError(name)
