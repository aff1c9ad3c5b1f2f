"""lmms-eval plugin: FAVOR / video-SALMONN as an lmms-eval chat model (`--model favor`).

Declared in pyproject.toml under the `lmms_eval.models` entry-point group; lmms-eval's model registry
(`lmms_eval/models/registry_v2.py`, lmms-eval 0.7) loads `model_manifests()` and finds the class at `FavorChat`.

    pip install "transformers-av[lmms]" && pip install --no-deps "lmms-eval==0.7.3"    # see the `lmms` extra
    python -m lmms_eval --model favor --model_args pretrained=path/to/video-salmonn-13b,dtype=bfloat16 \
        --tasks <task> [--include_path my_tasks/] --batch_size 4 --device cuda --output_path results/ --log_samples

model_args: `pretrained` (folder or Hub id), `dtype` (auto, float32, float16, bfloat16), `max_new_tokens` (used when
the task's generation_kwargs do not set it); `--device` and `--batch_size` are lmms-eval's own options.

Each request's chat messages (the task's `doc_to_messages`, or those lmms-eval builds from `doc_to_visual` +
`doc_to_text`) are read through lmms-eval's `ChatMessages`: the text parts become the prompt; a video is passed as
`videos=` (its own sound track is heard unless the messages also carry an audio part, which is then passed as
`audio=`, i.e. a separate sound track replacing it); an audio part alone is an audio-only sample; an image is passed
as `images=`. Audio may be a path or a `datasets` Audio value (`{"array": ..., "sampling_rate": ...}`). Requests with
the same generation settings are batched (`batch_size`), in the order lmms-eval gives them.

Generation: greedy unless the task's `temperature` > 0 (`do_sample`, `temperature`, `top_p`, `top_k`, `num_beams`,
`max_new_tokens` are honoured); the text is cut at the task's `until` strings.

Tested against lmms-eval 0.7.3 itself by tests/test_lmms_eval_plugin.py (`python -m lmms_eval` on a local task).
lmms-eval pins `av<16`; it is installed with `--no-deps` (see the `lmms` extra in pyproject.toml) because its model
path here never touches PyAV (media are decoded by transformers_av, which works with av 18).
"""

from __future__ import annotations

import json
from typing import Any

import torch
from transformers import AutoModelForMultimodalLM, AutoProcessor

from ..media import load_audio

__all__ = ["model_manifests"]

# HF `generate` arguments taken from a task's generation_kwargs as they are (besides the ones handled explicitly).
_PASSED_GENERATION_KWARGS = ("top_k", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
                             "min_new_tokens")
_SAMPLING_RATE = 16000


def model_manifests() -> list[Any]:
    """Entry-point payload: the lmms-eval manifest registering `favor` as a chat model (aliases `video_salmonn` and
    `av_llm`: the class loads any transformers-av model and its processor through the Auto classes)."""
    # lmms-eval is optional (the `lmms` extra, installed without its dependencies): imported only when it calls us
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="favor", chat_class_path="transformers_av.evaluation.lmms_eval_plugin.FavorChat",
                          aliases=("video_salmonn", "av_llm"))]


def _is_audio_array(value: Any) -> bool:
    return isinstance(value, dict) and "array" in value and "sampling_rate" in value


def _audio_value(value: Any) -> Any:
    """A path as it is; a `datasets` Audio value (`{"array", "sampling_rate"}`) as a 16 kHz mono waveform."""
    if not _is_audio_array(value):
        return value
    return load_audio(value["array"], sampling_rate=_SAMPLING_RATE,
                      source_sampling_rate=int(value["sampling_rate"])).waveform


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
                url = part["url"]
                if kind == "video" and _is_audio_array(url):
                    kind = "audio"  # lmms-eval labels a dict visual "video" unless it says otherwise
                elif kind == "video" and (isinstance(url, dict) or part.get("start_time") is not None
                                          or part.get("end_time") is not None):
                    raise ValueError("FAVOR takes whole videos (a path or frames); video segments (start/end times) "
                                     "are not supported")
                media[kind].append(url)
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


def _generation_settings(gen_kwargs: dict[str, Any] | None, default_max_new_tokens: int) -> tuple[dict, list[str]]:
    """lmms-eval generation_kwargs -> (`generate` keyword arguments, stop strings)."""
    kwargs = dict(gen_kwargs or {})
    until = kwargs.get("until")
    stops = [until] if isinstance(until, str) else [s for s in (until or []) if s]
    temperature = float(kwargs.get("temperature") or 0)
    do_sample = bool(kwargs.get("do_sample", False)) or temperature > 0
    settings: dict[str, Any] = {
        "max_new_tokens": int(kwargs.get("max_new_tokens") or default_max_new_tokens),
        "num_beams": int(kwargs.get("num_beams") or 1),
        "do_sample": do_sample,
    }
    if do_sample:
        if temperature > 0:
            settings["temperature"] = temperature
        if kwargs.get("top_p") is not None:
            settings["top_p"] = float(kwargs["top_p"])
    settings.update({k: kwargs[k] for k in _PASSED_GENERATION_KWARGS if kwargs.get(k) is not None})
    return settings, stops


def _batches(requests: list[Any], batch_size: int) -> list[list[int]]:
    """Indices of `requests` in batches of at most `batch_size` sharing the same generation_kwargs (order kept)."""
    groups: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        key = json.dumps(request.args[2] or {}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(index)
    return [indices[start:start + batch_size] for indices in groups.values()
            for start in range(0, len(indices), batch_size)]


def _chat_class():
    # lmms-eval is optional: the class that subclasses its base class is built on first use (see `__getattr__`)
    from lmms_eval.api.model import lmms
    from lmms_eval.protocol import ChatMessages

    try:  # lmms-eval >= 0.6: per-sample token counts
        from lmms_eval.api.instance import GenerationResult, TokenCounts
    except ImportError:  # pragma: no cover
        GenerationResult = TokenCounts = None

    class FavorChat(lmms):
        """lmms-eval chat wrapper around a transformers-av model and its processor (FAVOR / video-SALMONN or the
        Audio-Visual LLM), loaded with `AutoModelForMultimodalLM` / `AutoProcessor`."""

        is_simple = False

        def __init__(self, pretrained: str, device: str = "cpu", dtype: str = "auto", batch_size: int | str = 1,
                     max_new_tokens: int | str = 128, max_batch_size: Any = None, **kwargs: Any) -> None:
            super().__init__()
            if kwargs:
                raise TypeError(f"favor: unknown model_args {sorted(kwargs)} (known: pretrained, device, dtype, "
                                "batch_size, max_new_tokens)")
            if str(batch_size) == "auto":
                raise ValueError("favor: batch_size=auto is not supported; give a number")
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            self.model = AutoModelForMultimodalLM.from_pretrained(pretrained, dtype=torch_dtype).to(device).eval()
            self.processor = AutoProcessor.from_pretrained(pretrained)
            self.batch_size = int(batch_size)
            self.max_new_tokens = int(max_new_tokens)

        def _inputs(self, request) -> dict[str, Any]:
            _, doc_to_messages, _, doc_id, task, split = request.args
            messages = doc_to_messages(self.task_dict[task][split][doc_id])
            chat = ChatMessages(messages=messages)
            return _messages_to_inputs([m.model_dump() for m in chat.messages])

        def _encode(self, samples: list[dict[str, Any]]):
            """One processor call for a batch (a batch of one passes its items as they are)."""
            arguments: dict[str, Any] = {"text": [s["text"] for s in samples]}
            for name in ("videos", "audio", "images"):
                values = [_audio_value(s.get(name)) if name == "audio" else s.get(name) for s in samples]
                if any(v is not None for v in values):
                    arguments[name] = values
            if len(samples) == 1:
                arguments = {name: values[0] for name, values in arguments.items()}
            if any(_is_audio_array(s.get("audio")) for s in samples):
                arguments["sampling_rate"] = _SAMPLING_RATE
            return self.processor(**arguments, return_tensors="pt").to(self.model.device)

        def generate_until(self, requests) -> list[Any]:
            answers: list[Any] = [None] * len(requests)
            for indices in _batches(requests, self.batch_size):
                gen_kwargs = requests[indices[0]].args[2]
                settings, stops = _generation_settings(gen_kwargs, self.max_new_tokens)
                encoded = self._encode([self._inputs(requests[i]) for i in indices])
                with torch.inference_mode():
                    output = self.model.generate(**encoded, **settings)
                generated = output[:, encoded["input_ids"].shape[1]:]
                texts = self.processor.batch_decode(generated, skip_special_tokens=True)
                pad = self.processor.tokenizer.pad_token_id
                for row, (index, text) in enumerate(zip(indices, texts)):
                    for stop in stops:
                        text = text.split(stop)[0]
                    text = text.strip()
                    self.cache_hook.add_partial("generate_until", (requests[index].args[0], gen_kwargs), text)
                    if GenerationResult is None:
                        answers[index] = text
                        continue
                    n_out = int((generated[row] != pad).sum()) if pad is not None else generated.shape[1]
                    counts = TokenCounts(input_tokens=int(encoded["attention_mask"][row].sum()), output_tokens=n_out)
                    answers[index] = GenerationResult(text=text, token_counts=counts)
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
