"""LLM judges for the open-ended tasks (AVSD, AVSSD; the Audio-Visual LLM's open-ended QA and generation scores).

A `JudgePrompt` is a judge prompt as its source prints it, placeholders included; `render` fills them in. A judge turns
the filled-in prompt (and an optional system message) into a raw text answer; `judge_verdict` reads Yes/No from it.
Two backends:

* `OpenAICompatibleJudge`: any server speaking the OpenAI chat-completions protocol (OpenAI, vLLM, TGI, llama.cpp,
  `transformers serve`...), with the standard library's HTTP client (no extra dependency).
* `TransformersJudge`: a local `transformers` causal LM (path or Hub id), greedy decoding with its chat template.

The raw answer of the judge is stored with every sample by the runner, so a verdict can always be audited.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

__all__ = ["Judge", "JudgePrompt", "OpenAICompatibleJudge", "TransformersJudge", "judge_verdict"]


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt as its source prints it.

    Args:
        template: the user message, with the source's own placeholder names (e.g. FAVOR's `QUESTION`, `HYPOTHESIS`,
            `REFERENCE`, or Video-ChatGPT's `{question}`, `{answer}`, `{pred}`).
        placeholders: which record field fills each placeholder: `{"QUESTION": "question", "HYPOTHESIS":
            "prediction", "REFERENCE": "reference"}`.
        source: paper / repository, table / file it is quoted from.
        verbatim: whether `template` (and `system`) is the source's exact wording.
        system: the system message sent before the user message, if the source has one.
    """

    template: str
    placeholders: Mapping[str, str]
    source: str
    verbatim: bool
    system: str | None = None

    def render(self, values: Mapping[str, str]) -> str:
        """The template with every placeholder replaced by `values[field]`, in one pass (a value that contains a
        placeholder name is not substituted again)."""
        missing = sorted({f for f in self.placeholders.values() if f not in values})
        if missing:
            raise KeyError(f"judge prompt needs {', '.join(missing)}")
        pattern = re.compile("|".join(re.escape(p) for p in sorted(self.placeholders, key=len, reverse=True)))
        return pattern.sub(lambda m: str(values[self.placeholders[m.group()]]), self.template)


class Judge(Protocol):
    """Anything that answers a judge prompt (with an optional system message) with text."""

    name: str

    def __call__(self, prompt: str, system: str | None = None) -> str: ...


def judge_verdict(answer: str) -> bool | None:
    """The judge's Yes/No: the first `yes` or `no` word of its answer (None when there is neither)."""
    match = re.search(r"\b(yes|no)\b", answer.lower())
    return None if match is None else match.group(1) == "yes"


class OpenAICompatibleJudge:
    """A judge behind an OpenAI-compatible `/chat/completions` endpoint.

    Args:
        base_url: the API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
        model: the model name the server expects (the papers used ChatGPT, i.e. `gpt-3.5-turbo`).
        api_key: sent as a Bearer token when given.
        timeout: seconds per request; retries: attempts on connection errors and 429/5xx answers.
    """

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0, retries: int = 3,
        temperature: float = 0.0, max_tokens: int = 64,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.name = f"{model}@{base_url}"
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(1, retries)
        self.temperature = temperature
        self.max_tokens = max_tokens

    def __call__(self, prompt: str, system: str | None = None) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        body = json.dumps(
            {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        error: Exception | None = None
        for attempt in range(self.retries):
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read())
                return payload["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as http_error:
                error = http_error
                if http_error.code != 429 and http_error.code < 500:
                    detail = http_error.read().decode(errors="replace")[:500]
                    raise RuntimeError(f"judge {self.url} answered HTTP {http_error.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as connection_error:
                error = connection_error
            except (KeyError, IndexError, json.JSONDecodeError) as format_error:
                raise RuntimeError(f"judge {self.url} gave no chat completion: {format_error!r}") from None
            time.sleep(min(2.0**attempt, 10.0) * 0.5)
        raise RuntimeError(f"judge {self.url} unreachable after {self.retries} attempts: {error}")


class TransformersJudge:
    """A local `transformers` causal LM as judge (greedy decoding, chat template when the tokenizer has one)."""

    def __init__(self, model: str, *, max_new_tokens: int = 64, device: str | None = None) -> None:
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model).eval()
        if device is not None:
            self.model.to(device)
        self.max_new_tokens = max_new_tokens

    def __call__(self, prompt: str, system: str | None = None) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:  # a plain LM: the system message, if any, is written before the prompt
            ids = self.tokenizer(f"{system}\n\n{prompt}" if system else prompt, return_tensors="pt")["input_ids"]
        ids = ids.to(self.model.device)
        with torch.inference_mode():
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
